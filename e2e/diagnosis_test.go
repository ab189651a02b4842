package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/trace"
)

// diagnosisScenario puts faults on distinct cohorts so one short run holds
// every kind of session the diagnosis tells apart: edge-a-south-1 refuses
// (its viewers are blocked at tcp_connect, then retry on the backup line),
// then edge-b-south-1 answers 3 s late (a slow tcp_first_packet); room2's
// uplink is capped far under its bitrate (its viewers stall while the push
// side drops frames); app 5.2.0's decoder stalls rendering (render stalls
// only, for room1's viewers). Room1's 5.1.0 viewers on the other nodes are
// clean.
const diagnosisScenario = `name: diagnosis-e2e
description: one fault per cohort, for the per-session diagnosis.
duration: 75s
topology:
  rooms:
    - {name: room1, bitrate_kbps: 1000}
    - {name: room2, bitrate_kbps: 1000}
  players:
    count: 110
    ramp: 62s
    watch: 10s
    seed: 18
    weak_share: 0
faults:
  - {name: edge-a-south-1 refuses, scope: edge, kind: refuse, node: edge-a-south-1, at: 5s, for: 25s}
  - {name: edge-b-south-1 first byte 3 s late, scope: edge, kind: slow_first_byte, node: edge-b-south-1, delay: 3s, at: 35s, for: 25s}
  - {name: room2 uplink capped at 200 kbit/s, scope: push, kind: throttle, room: room2, kbps: 200, at: 5s, for: 55s}
  - {name: app 5.2.0 render stalls, scope: client, kind: decoder_render_stall, app_version: "5.2.0", at: 0s, for: 70s}
`

// slowFirstByte is the scenario's injected first-byte delay.
const slowFirstByte = 3000

// TestTraceDiagnosis runs diagnosisScenario against a real pipeline and
// checks that one session of each kind gets the right diagnosis, through
// GET /api/v1/trace and through `lastmile trace`: a clean one; one blocked
// at tcp_connect with play_stop's code; one whose tcp_first_packet was slow
// because the edge was; one that stalled while the push side did; one with
// render stalls only.
func TestTraceDiagnosis(t *testing.T) {
	if testing.Short() {
		t.Skip("a scenario run of about 90 s")
	}
	p := runScenarioFile(t, diagnosisScenario)

	// pick is a session chosen from the store by what happened to it
	// (the truth the diagnosis must find on its own).
	pick := func(what, q string) map[string]any {
		t.Helper()
		rows, err := p.sql(q)
		if err != nil || len(rows) == 0 {
			t.Fatalf("no %s session in the run (%v): %s", what, err, q)
		}
		return rows[0]
	}
	// A clean view: room1, the app version without the decoder fault, on
	// a node without a fault, a fast start, no stall of either kind.
	clean := pick("clean", `SELECT s.session_id AS session_id FROM play_stop AS s
WHERE s.room_id = 'room1' AND s.app_version = '5.1.0' AND s.node_id NOT IN ('edge-a-south-1', 'edge-b-south-1') AND s.code = 0
  AND ifNull(s.stall_count, 0) = 0 AND ifNull(s.render_stall_count, 0) = 0
  AND s.session_id IN (SELECT session_id FROM first_frame WHERE total_ms < 1000)
  AND s.session_id NOT IN (SELECT session_id FROM play_stop WHERE code != 0)
ORDER BY s.ts LIMIT 1`)
	blocked := pick("blocked at tcp_connect", `SELECT session_id, code, node_id FROM play_stop
WHERE first_frame_blocked = 'tcp_connect' AND code != 0 ORDER BY ts LIMIT 1`)
	slow := pick("slow tcp_first_packet", fmt.Sprintf(`SELECT session_id, tcp_first_packet_ms FROM first_frame
WHERE node_id = 'edge-b-south-1' AND tcp_first_packet_ms >= %d AND session_id NOT IN (SELECT session_id FROM play_stop WHERE code != 0)
ORDER BY ts LIMIT 1`, slowFirstByte-500))
	stalled := pick("stalled with the push side", `SELECT session_id FROM stall
WHERE room_id = 'room2' AND node_id NOT IN ('edge-a-south-1', 'edge-b-south-1')
  AND session_id IN (SELECT session_id FROM first_frame WHERE total_ms < 2000)
  AND session_id NOT IN (SELECT session_id FROM play_stop WHERE code != 0)
ORDER BY ts LIMIT 1`)
	render := pick("render stalls only", `SELECT session_id FROM play_stop
WHERE room_id = 'room1' AND app_version = '5.2.0' AND code = 0 AND ifNull(stall_count, 0) = 0 AND render_stall_count > 0
  AND node_id NOT IN ('edge-a-south-1', 'edge-b-south-1')
  AND session_id IN (SELECT session_id FROM first_frame WHERE total_ms < 2000)
  AND session_id NOT IN (SELECT session_id FROM play_stop WHERE code != 0 OR ifNull(stall_count, 0) > 0)
ORDER BY ts LIMIT 1`)

	diag := func(row map[string]any) (*trace.Diagnosis, string) {
		t.Helper()
		sid := fmt.Sprint(row["session_id"])
		res := getTrace(t, p, "since=1h&session_id="+sid)
		if len(res.Sessions) != 1 || res.Sessions[0].Summary.Diagnosis == nil {
			t.Fatalf("session %s: want one play session with a diagnosis, got %+v", sid, res.Sessions)
		}
		return res.Sessions[0].Summary.Diagnosis, sid
	}
	evidence := func(d *trace.Diagnosis, scope, source string) bool {
		for _, e := range d.Evidence {
			if e.Scope == scope && e.Source == source {
				return true
			}
		}
		return false
	}
	cli := map[string][]string{}

	t.Run("clean", func(t *testing.T) {
		d, sid := diag(clean)
		if d.Verdict != trace.VerdictFine || d.Scope != "" || d.Phase != "" {
			t.Errorf("clean session %s: %+v", sid, d)
		}
		cli[sid] = []string{"diagnosis: fine", "\n   push      ok ", "\n   edge      ok "}
	})
	t.Run("blocked at tcp_connect", func(t *testing.T) {
		d, sid := diag(blocked)
		code := toInt(t, blocked["code"])
		if d.Verdict != trace.VerdictFailed || d.Phase != "tcp_connect" || d.Code == nil || *d.Code != code ||
			d.NodeID != "edge-a-south-1" || d.Scope != localize.ScopeEdge || !evidence(d, localize.ScopeEdge, "edge_access") {
			t.Errorf("session %s blocked at tcp_connect with code %d on %v: %+v", sid, code, blocked["node_id"], d)
		}
		cli[sid] = []string{fmt.Sprintf("diagnosis: failed at tcp_connect · code %d · on edge-a-south-1", code), "scope edge",
			"edge-a-south-1 logged no request"}
	})
	t.Run("slow tcp_first_packet", func(t *testing.T) {
		d, sid := diag(slow)
		ms := toInt(t, slow["tcp_first_packet_ms"])
		if d.Verdict != trace.VerdictSlowFirstFrame || d.Phase != "tcp_first_packet" || d.PhaseMs == nil || *d.PhaseMs != ms ||
			*d.PhaseMs < slowFirstByte-100 || *d.PhaseMs > slowFirstByte+500 || d.MedianMs == nil || *d.MedianMs > 200 ||
			d.Scope != localize.ScopeEdge || !evidence(d, localize.ScopeEdge, "edge_access") {
			t.Errorf("session %s with tcp_first_packet %d ms behind edge-b-south-1's %d ms: %+v", sid, ms, slowFirstByte, d)
		}
		cli[sid] = []string{"diagnosis: slow first frame at tcp_first_packet " + trace.Thousands(ms) + " ms (cohort median",
			"scope edge", "edge-b-south-1 first byte took"}
	})
	t.Run("stalls while the push side stalled", func(t *testing.T) {
		d, sid := diag(stalled)
		if d.Verdict != trace.VerdictStalls || d.Scope != localize.ScopePush || !evidence(d, localize.ScopePush, "push_stats") {
			t.Errorf("room2 session %s stalled under the capped uplink: %+v", sid, d)
		}
		cli[sid] = []string{"diagnosis: stalls · scope push", "push_stats: the push side degraded meanwhile", "\n   push      ABNORMAL"}
	})
	t.Run("render stalls only", func(t *testing.T) {
		d, sid := diag(render)
		if d.Verdict != trace.VerdictRenderStallsOnly || d.Scope != localize.ScopeClient {
			t.Errorf("app 5.2.0 session %s: %+v", sid, d)
		}
		cli[sid] = []string{"diagnosis: render stalls only · scope client", "render_stall: "}
	})

	t.Run("cli", func(t *testing.T) {
		for sid, wants := range cli {
			cmd := exec.Command(lastmileBin(t), "trace", "--addr", "http://"+p.HTTP, "--token", queryToken, "--since", "1h", "--session", sid)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("lastmile trace --session %s: %v\n%s", sid, err, errb.String())
			}
			text := out.String()
			// The diagnosis comes first, right under the session's header.
			if lines := strings.SplitN(text, "\n", 5); len(lines) < 4 || !strings.HasPrefix(lines[3], "   diagnosis: ") {
				t.Errorf("session %s: the diagnosis is not the first line of the session:\n%s", sid, text)
			}
			for _, w := range wants {
				if !strings.Contains(text, w) {
					t.Errorf("session %s: output lacks %q:\n%s", sid, w, text)
				}
			}
			t.Logf("lastmile trace --session %s:\n%s", sid, text)
		}
	})
}

// runScenarioFile runs a scenario given as YAML against a fresh `lastmile
// run` and waits until what it posted is in the store.
func runScenarioFile(t *testing.T, yaml string) *proc {
	t.Helper()
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	file := filepath.Join(t.TempDir(), "scenario.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"media", "scenario", "--scenario", file, "--collector", "http://" + pipe.HTTP,
		"--app-key", testKey, "--labels", filepath.Join(t.TempDir(), "labels.json")}
	if os.Getenv("LASTMILE_E2E_FAULTS_OFF") == "1" {
		args = append(args, "--dry-faults") // labeled, not injected: the test must then fail
	}
	cmd := exec.Command(lastmileBin(t), args...)
	runBounded(t, cmd, 4*time.Minute, "lastmile media scenario")
	waitScenarioStored(t, pipe)
	return pipe
}

// waitScenarioStored waits until what a scenario posted is in the store: the
// play_stop count holds still.
func waitScenarioStored(t *testing.T, pipe *proc) {
	t.Helper()
	waitFor(t, 30*time.Second, "the scenario's play_stop events in ClickHouse", func() (bool, string) {
		n := pipe.sqlInt(t, "SELECT count() FROM play_stop")
		time.Sleep(time.Second)
		m := pipe.sqlInt(t, "SELECT count() FROM play_stop")
		return n > 0 && n == m, fmt.Sprintf("%d then %d", n, m)
	})
}

// runBounded runs cmd to its end, its output kept for the failure
// message; past timeout it is killed and the test fails.
func runBounded(t *testing.T, cmd *exec.Cmd, timeout time.Duration, what string) {
	t.Helper()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out.String())
		}
	case <-time.After(timeout):
		cmd.Process.Kill()
		t.Fatalf("%s still running after %s:\n%s", what, timeout, out.String())
	}
}
