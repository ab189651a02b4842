package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
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
		t.Skip("a scenario run of 80 to 135 s")
	}
	pipe, _ := startAlertPipeline(t) // with Alertmanager: checkAlerts (e2e/alert_scenarios_test.go)
	var extra []string
	if os.Getenv("LASTMILE_E2E_FAULTS_OFF") == "1" {
		// Labeled but not injected: every scenario test must then fail.
		extra = append(extra, "--dry-faults")
	}
	t0 := time.Now()
	labels := runScenario(t, pipe, name, 4*time.Minute, extra...)
	t.Logf("scenario %s ran in %s", name, time.Since(t0).Round(time.Second))
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
	waitScenarioStored(t, pipe)
	if dir := os.Getenv("LASTMILE_E2E_DUMP"); dir != "" {
		dumpEvents(t, pipe, labels, filepath.Join(dir, name))
	}
	return pipe, labels
}

// dumpEvents writes the run's events (JSONEachRow) and labels under prefix,
// for developing the localizer on real scenario data without replaying it.
func dumpEvents(t *testing.T, p *proc, labels scenario.Labels, prefix string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(prefix), 0o755)
	f, err := os.Create(prefix + ".events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off := 0; ; off += 50000 {
		rows, err := p.sql(fmt.Sprintf("SELECT * FROM events ORDER BY event_id LIMIT 50000 OFFSET %d", off))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			b, _ := json.Marshal(r)
			f.Write(append(b, '\n'))
		}
		if len(rows) < 50000 {
			break
		}
	}
	b, _ := json.MarshalIndent(labels, "", "  ")
	os.WriteFile(prefix+".labels.json", b, 0o644)
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

// isolation is what checkIsolated demands: the faulty group fails at
// least min of at least minN attempts, and at least 5× as often as each
// peer; every peer has at least peerMinN attempts and fails at most peerMax.
type isolation struct {
	min, peerMax   float64
	minN, peerMinN float64
	skipPeers      []string // groups another fault hits at the time
}

// checkIsolated asserts the faulty group fails at least half of ≥ 10
// attempts and 5× as often as each peer, and peers (≥ 5 attempts each)
// stay at or under peerMax.
func checkIsolated(t *testing.T, r map[string][2]float64, faulty string, peerMax float64) {
	t.Helper()
	checkIsolation(t, r, faulty, isolation{min: 0.5, peerMax: peerMax, minN: 10, peerMinN: 5})
}

func checkIsolation(t *testing.T, r map[string][2]float64, faulty string, iso isolation) {
	t.Helper()
	f, ok := r[faulty]
	if !ok || !(f[1] >= iso.minN) || !(f[0] >= iso.min) {
		t.Errorf("the faulty %s failed %.2f of %v attempts in the window, want ≥ %.2f of ≥ %v: %v", faulty, f[0], f[1], iso.min, iso.minN, r)
	}
	peers := 0
	for g, p := range r {
		if g == faulty || slices.Contains(iso.skipPeers, g) {
			continue
		}
		peers++
		if !(p[1] >= iso.peerMinN) || !(p[0] <= iso.peerMax) || !(f[0] >= 5*p[0]) {
			t.Errorf("failure rate of %s %.2f (%v attempts) vs peer %s %.2f (%v attempts): want ≥ 5× and the peer ≤ %.2f over ≥ %v attempts; all: %v",
				faulty, f[0], f[1], g, p[0], p[1], iso.peerMax, iso.peerMinN, r)
		}
	}
	if peers == 0 {
		t.Errorf("no peer of %s to compare with: %v", faulty, r)
	}
	t.Logf("failure rates in the window: %v", r)
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
	checkLocalizeQuiet(t, p, l) // e2e/localize_test.go

	checkAlerts(t, alertHook(p), l, alertWant{})
}
