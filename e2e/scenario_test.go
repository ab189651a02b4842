package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/scenario"
	"github.com/lastmile-qoe/lastmile/media/scenarios"
)

// playScenario runs a built-in scenario with `lastmile media scenario`
// against a real pipeline and returns the pipeline and the labels file,
// after checking the labels against the scenario's configured timeline.
func playScenario(t *testing.T, name string) (*proc, scenario.Labels) {
	t.Helper()
	if testing.Short() {
		t.Skip("a 80 s scenario run")
	}
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	labelsPath := filepath.Join(t.TempDir(), "labels.json")
	cmd := exec.Command(lastmileBin(t), "media", "scenario", "--scenario", name, "--collector", "http://"+pipe.HTTP,
		"--app-key", testKey, "--labels", labelsPath)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lastmile media scenario %s: %v\n%s", name, err, out.String())
		}
	case <-time.After(4 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("lastmile media scenario %s still running after 4 minutes:\n%s", name, out.String())
	}
	t.Logf("scenario %s ran in %s", name, time.Since(t0).Round(time.Second))

	b, err := os.ReadFile(labelsPath)
	if err != nil {
		t.Fatal(err)
	}
	var labels scenario.Labels
	if err := json.Unmarshal(b, &labels); err != nil {
		t.Fatalf("labels file: %v\n%s", err, b)
	}
	// The labels file matches the configured timeline.
	raw, _ := scenarios.Read(name)
	sc, err := scenario.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := sc.Plan(labels.Start)
	if labels.Scenario != sc.Name || !labels.End.Equal(want.End) || len(labels.Faults) != len(sc.Faults) {
		t.Fatalf("labels %+v do not match the scenario's timeline %+v", labels, want)
	}
	for i, l := range labels.Faults {
		w := want.Faults[i]
		if l.Scope != w.Scope || l.Kind != w.Kind || !l.Start.Equal(w.Start) || !l.End.Equal(w.End) || fmt.Sprint(l.Dims) != fmt.Sprint(w.Dims) {
			t.Errorf("label %d = %+v, want %+v", i, l, w)
		}
	}
	// Everything posted has been processed before the checks.
	waitFor(t, 30*time.Second, "the scenario's play_stop events in ClickHouse", func() (bool, string) {
		n := pipe.sqlInt(t, "SELECT count() FROM play_stop")
		time.Sleep(time.Second)
		m := pipe.sqlInt(t, "SELECT count() FROM play_stop")
		return n > 0 && n == m, fmt.Sprintf("%d then %d", n, m)
	})
	return pipe, labels
}

// window is the SQL condition for events inside a fault's window, with a
// few seconds' grace at the end for in-flight plays to fail.
func window(l scenario.Label) string {
	return fmt.Sprintf("ts >= fromUnixTimestamp64Milli(%d, 'UTC') AND ts < fromUnixTimestamp64Milli(%d, 'UTC')",
		l.Start.UnixMilli(), l.End.Add(5*time.Second).UnixMilli())
}

// rates returns, per group, the failure rate of play attempts (play_stop
// with a non-zero code) in the window, and the attempts counted.
func rates(t *testing.T, p *proc, group, cond string) map[string][2]float64 {
	t.Helper()
	rows, err := p.sql(fmt.Sprintf(`SELECT %s AS g, countIf(code != 0) AS bad, count() AS n FROM play_stop WHERE %s GROUP BY g ORDER BY g`, group, cond))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, r := range rows {
		bad, n := num(r["bad"]), num(r["n"])
		out[fmt.Sprint(r["g"])] = [2]float64{bad / math.Max(n, 1), n}
	}
	return out
}

func num(v any) float64 {
	var f float64
	if _, err := fmt.Sscan(fmt.Sprint(v), &f); err != nil {
		return math.NaN()
	}
	return f
}

// checkIsolated asserts the faulty group fails at least 5× as often as
// each peer, with enough attempts to mean something, and that peers stay
// near baseline.
func checkIsolated(t *testing.T, r map[string][2]float64, faulty string, peerMax float64) {
	t.Helper()
	f, ok := r[faulty]
	if !ok || !(f[1] >= 3) {
		t.Fatalf("the faulty %s has %v attempts in the window: %v", faulty, f[1], r)
	}
	for g, p := range r {
		if g == faulty {
			continue
		}
		if !(f[0] >= 5*p[0]) || !(p[0] <= peerMax) {
			t.Errorf("failure rate of %s %.2f (%v attempts) vs peer %s %.2f (%v attempts): want ≥ 5× and the peer ≤ %.2f; all: %v",
				faulty, f[0], f[1], g, p[0], p[1], peerMax, r)
		}
	}
	t.Logf("failure rates in the window: %v", r)
}

// TestScenarioEdge: the refusing node's plays fail; its peers' do not.
func TestScenarioEdge(t *testing.T) {
	p, l := playScenario(t, "edge")
	r := rates(t, p, "node_id", window(l.Faults[0]))
	checkIsolated(t, r, "edge-b-south-1", 0.1)
}

// TestScenarioTranscode: only viewers of room1's 480p fail; the other
// renditions of room1 and every rendition of room2 play.
func TestScenarioTranscode(t *testing.T) {
	p, l := playScenario(t, "transcode")
	r := rates(t, p, "concat(room_id, '/', rendition)", window(l.Faults[0]))
	checkIsolated(t, r, "room1/480p", 0.1)
}

// TestScenarioSource: with the origin unreachable for room2, room2's plays
// fail on every CDN; room1 plays.
func TestScenarioSource(t *testing.T) {
	p, l := playScenario(t, "source")
	w := window(l.Faults[0])
	checkIsolated(t, rates(t, p, "room_id", w), "room2", 0.1)
	for cdn, v := range rates(t, p, "cdn", w+" AND room_id = 'room2'") {
		if !(v[0] >= 0.5) {
			t.Errorf("room2 on %s failed %.2f of %v plays; the source fault hits every CDN", cdn, v[0], v[1])
		}
	}
}

// TestScenarioClient: isp-c's DNS failure fails only isp-c's plays, blocked
// at dns; app 5.3.0's decoder fails only 5.3.0's plays, blocked at
// first_decode.
func TestScenarioClient(t *testing.T) {
	p, l := playScenario(t, "client")
	dnsW := window(l.Faults[0])
	checkIsolated(t, rates(t, p, "isp", dnsW+" AND app_version != '5.3.0'"), "isp-c", 0.1)
	if n := p.sqlInt(t, "SELECT countIf(first_frame_blocked != 'dns') FROM play_stop WHERE isp = 'isp-c' AND code != 0 AND app_version != '5.3.0' AND "+dnsW); n != 0 {
		t.Errorf("%d isp-c failures not blocked at dns", n)
	}
	decW := window(l.Faults[1])
	// Outside the DNS window, so isp-c's failures do not mix in.
	cond := decW + " AND NOT (" + dnsW + ")"
	checkIsolated(t, rates(t, p, "app_version", cond), "5.3.0", 0.1)
	if n := p.sqlInt(t, "SELECT countIf(first_frame_blocked = 'first_decode') FROM play_stop WHERE app_version = '5.3.0' AND code = 1007 AND "+cond); n == 0 {
		t.Error("no 5.3.0 play stopped with a decode failure blocked at first_decode")
	}
}

// TestScenarioRollout: render stalls come from the rolled-out version only,
// and its share of plays grows over the window.
func TestScenarioRollout(t *testing.T) {
	p, l := playScenario(t, "rollout")
	w := window(l.Faults[0])
	if n := p.sqlInt(t, "SELECT count() FROM render_stall WHERE app_version = '6.0.0' AND "+w); n == 0 {
		t.Error("no render stall from 6.0.0")
	}
	if n := p.sqlInt(t, "SELECT count() FROM render_stall WHERE app_version != '6.0.0'"); n != 0 {
		t.Errorf("%d render stalls from other versions", n)
	}
	mid := l.Faults[0].Start.Add(l.Faults[0].End.Sub(l.Faults[0].Start) / 2).UnixMilli()
	first := p.sqlInt(t, fmt.Sprintf("SELECT countIf(app_version = '6.0.0') * 1000 / count() FROM play_start WHERE attempt = 0 AND %s AND ts < fromUnixTimestamp64Milli(%d, 'UTC')", w, mid))
	second := p.sqlInt(t, fmt.Sprintf("SELECT countIf(app_version = '6.0.0') * 1000 / count() FROM play_start WHERE attempt = 0 AND %s AND ts >= fromUnixTimestamp64Milli(%d, 'UTC')", w, mid))
	if !(second > first) {
		t.Errorf("6.0.0's share of new plays: %d‰ in the first half, %d‰ in the second; a ramp grows", first, second)
	}
}

// TestScenarioBaseline: with no fault nearly every play starts and none
// render-stalls.
func TestScenarioBaseline(t *testing.T) {
	p, l := playScenario(t, "baseline")
	if len(l.Faults) != 0 {
		t.Fatalf("baseline has faults: %v", l.Faults)
	}
	bad := p.sqlInt(t, "SELECT countIf(code != 0) * 1000 / count() FROM play_stop")
	if bad > 50 {
		t.Errorf("%d‰ of baseline plays failed, want under 5%%", bad)
	}
	if n := p.sqlInt(t, "SELECT count() FROM render_stall"); n != 0 {
		t.Errorf("%d render stalls without a fault", n)
	}
	checkProtocolRebuffer(t, p) // e2e/stalls_test.go
}
