package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/trace"
)

// TestEdgeLogsWithoutSession: a real edge's logs of requests without a
// CMCD sid (as curl, ffplay or VLC send them) and of refused requests (403
// unsigned, 404 unknown path) reach the edge_access table; a node-level
// metric counts them; a session's trace shows its own edge row only, and a
// trace of the empty session is refused.
func TestEdgeLogsWithoutSession(t *testing.T) {
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	top := mediaTopology(t, pipe.HTTP, "")
	sched, _ := startMedia(t, top)

	var sd struct {
		Renditions []struct {
			Name string
			Main struct {
				Node string
				URLs map[string]string
			}
		}
	}
	getJSON(t, sched+"/v1/schedule?room=room1&region=north&device_id=curl-dev&isp=isp-a&app_version=5.2.0", &sd)
	main := sd.Renditions[0].Main
	signed, _ := url.Parse(main.URLs["flv"])
	signed.Host = "127.0.0.1:" + signed.Port() // curl resolves with the system resolver, not the stack's DNS
	node := main.Node

	// fetch GETs a URL as curl does (no CMCD), reading at most n bytes.
	fetch := func(u string, n int64) (int, int64) {
		t.Helper()
		var status int
		var got int64
		for i := 0; i < 20; i++ { // the push takes a moment to reach the origin
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, n))
			resp.Body.Close()
			if status = resp.StatusCode; status != http.StatusBadGateway {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		return status, got
	}
	if st, n := fetch(signed.String(), 64<<10); st != 200 || n < 64<<10 {
		t.Fatalf("signed FLV without sid: status %d, %d bytes", st, n)
	}
	withSid := *signed
	q := withSid.Query()
	q.Set("CMCD", `sid="e2e-sid-1"`)
	withSid.RawQuery = q.Encode()
	if st, _ := fetch(withSid.String(), 16<<10); st != 200 {
		t.Fatalf("signed FLV with sid: status %d", st)
	}
	unsigned := *signed
	unsigned.RawQuery = ""
	if st, _ := fetch(unsigned.String(), 1<<10); st != 403 {
		t.Fatalf("unsigned FLV: status %d, want 403", st)
	}
	other := *signed
	other.Path, other.RawQuery = "/favicon.ico", ""
	if st, _ := fetch(other.String(), 1<<10); st != 404 {
		t.Fatalf("/favicon.ico: status %d, want 404", st)
	}
	// The player side of e2e-sid-1, so that it has a trace.
	ts := time.Now().UnixMilli()
	body := fmt.Appendf(nil, `{"log_type":"play_start","ts":%d,"device_id":"curl-dev","session_id":"e2e-sid-1","stream_id":"live/room1"}`+"\n"+
		`{"log_type":"play_stop","ts":%d,"device_id":"curl-dev","session_id":"e2e-sid-1","stream_id":"live/room1","code":0}`+"\n", ts, ts+1000)
	if r, err := pipe.post(body, false, testKey); err != nil || r.Accepted != 2 {
		t.Fatalf("post: %v %+v", err, r)
	}

	cond := "node_id = '" + node + "' AND session_id = ''"
	waitFor(t, 30*time.Second, "the edge's sid-less rows in edge_access", func() (bool, string) {
		ok := pipe.sqlInt(t, "SELECT count() FROM edge_access WHERE "+cond+" AND http_status = 200 AND bytes >= 65536 AND stream_id = 'live/room1'")
		forbidden := pipe.sqlInt(t, "SELECT count() FROM edge_access WHERE "+cond+" AND http_status = 403 AND stream_id = 'live/room1'")
		missing := pipe.sqlInt(t, "SELECT count() FROM edge_access WHERE "+cond+" AND http_status = 404 AND path = '/favicon.ico' AND stream_id = ''")
		return ok == 1 && forbidden == 1 && missing == 1, fmt.Sprintf("200: %d, 403: %d, 404: %d", ok, forbidden, missing)
	})
	if n := pipe.sqlInt(t, "SELECT count() FROM rejected WHERE log_type = 'edge_access'"); n != 0 {
		t.Errorf("%d edge_access events rejected", n)
	}

	// The node-level view counts them, whatever their session: its error
	// rate is over all its responses (4, and any 502 while the stream came
	// up).
	all := pipe.sqlInt(t, "SELECT count() FROM edge_access WHERE node_id = '"+node+"'")
	bad := pipe.sqlInt(t, "SELECT countIf(http_status >= 400) FROM edge_access WHERE node_id = '"+node+"'")
	waitFor(t, 30*time.Second, "edge_error_rate of the node", func() (bool, string) {
		code, a, msg := pipe.getMetrics(t, url.Values{"metric": {"edge_error_rate"}, "group_by": {"node_id"}, "since": {"15m"}, "read": {"raw"}})
		if code != 200 {
			return false, msg
		}
		want := 100 * float64(bad) / float64(all)
		for _, s := range a.Series {
			if s.Group["node_id"] == node && s.Total != nil {
				return s.Samples == all && math.Abs(*s.Total-want) < 0.01,
					fmt.Sprintf("%v%% over %d responses, want %v%% over %d", *s.Total, s.Samples, want, all)
			}
		}
		return false, fmt.Sprintf("no series for %s: %+v", node, a.Series)
	})
	if all < 4 || bad < 2 {
		t.Errorf("node %s: %d responses, %d errors; want at least 4 and 2", node, all, bad)
	}

	// The session's trace shows its edge row, and none of the sid-less ones.
	tr := getTrace(t, pipe, "session_id=e2e-sid-1&since=1h")
	if len(tr.Sessions) != 1 {
		t.Fatalf("trace of e2e-sid-1: %d sessions", len(tr.Sessions))
	}
	var edge []string
	for _, e := range tr.Sessions[0].ServerEvents {
		status, _ := e.Int("http_status")
		edge = append(edge, fmt.Sprintf("%s/%s/%d", e.LogType, e.Str("session_id"), status))
	}
	if fmt.Sprint(edge) != "[edge_access/e2e-sid-1/200]" {
		t.Errorf("server events of e2e-sid-1: %v, want its one edge_access", edge)
	}
	if code, _ := getTraceStatus(t, pipe, "session_id=&since=1h"); code != http.StatusBadRequest {
		t.Errorf("trace of the empty session: status %d, want 400", code)
	}
}

// TestSamplingKeepsSessionsWhole is issue 17's sampling acceptance: a real
// pipeline sampling at 10% and a real streaming stack with 150 players.
// Every session kept by its draw has its client events and its edges'
// edge_access rows; every other session has no edge_access row (a dropped
// session's failures are kept alone, by design); the kept fraction is
// about 10%.
func TestSamplingKeepsSessionsWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s streaming run")
	}
	const players, rate = 150, 0.1
	dir := t.TempDir()
	sf := filepath.Join(dir, "sampling.yaml")
	os.WriteFile(sf, []byte(fmt.Sprintf("seed: 11\ndefault_rate: %v\n", rate)), 0o644)
	pipe := start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0", "--sampling", sf)
	top := lightTopology(t, mediaTopology(t, pipe.HTTP, fmt.Sprintf(`  count: %d
  ramp: 20s
  watch: 15s
  seed: 17
  regions: [north, south]
`, players)))
	out := runMediaUp(t, top, "55s", 2*time.Minute)
	m := regexp.MustCompile(`audience done: (\d+) plays`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the audience did not finish:\n%s", out)
	}
	plays, _ := strconv.Atoi(m[1])
	if plays != players {
		t.Fatalf("%d plays, want %d", plays, players)
	}

	// Everything sent has been processed.
	waitFor(t, 60*time.Second, "the run's events in ClickHouse", func() (bool, string) {
		q := "SELECT count() FROM events"
		n := pipe.sqlInt(t, q)
		time.Sleep(2 * time.Second)
		m := pipe.sqlInt(t, q)
		return n > 0 && n == m, fmt.Sprintf("%d then %d", n, m)
	})
	ids := func(q string) []string {
		t.Helper()
		rows, err := pipe.sql(q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, fmt.Sprint(r["s"]))
		}
		slices.Sort(out)
		return out
	}
	play := "('play_start', 'first_frame', 'stall', 'render_stall', 'play_stop', 'heartbeat')"
	// Kept by the session's draw: client events at the sampled rate.
	kept := ids("SELECT DISTINCT session_id AS s FROM events WHERE log_type IN " + play + " AND sample_rate < 1")
	// Dropped sessions whose failures were kept (at rate 1).
	stubs := ids("SELECT DISTINCT session_id AS s FROM events WHERE log_type IN " + play +
		" AND session_id NOT IN (SELECT session_id FROM events WHERE log_type IN " + play + " AND sample_rate < 1)")
	edge := ids("SELECT DISTINCT session_id AS s FROM edge_access WHERE session_id != ''")
	t.Logf("%d plays: %d sessions kept, %d dropped sessions' failures kept alone, %d sessions in edge_access",
		plays, len(kept), len(stubs), len(edge))

	if !slices.Equal(kept, edge) {
		t.Errorf("sessions in edge_access differ from the kept sessions:\n  kept without edge rows: %v\n  edge rows of dropped sessions: %v",
			minus(kept, edge), minus(edge, kept))
	}
	if both := minus(stubs, minus(stubs, edge)); len(both) > 0 {
		t.Errorf("dropped sessions whose failure was kept have edge rows: %v", both)
	}
	// A kept session is whole on the client side too: its start and stop.
	if n := pipe.sqlInt(t, "SELECT count() FROM (SELECT session_id FROM events WHERE log_type IN "+play+" AND sample_rate < 1 GROUP BY session_id HAVING countIf(log_type = 'play_start') = 0 OR countIf(log_type = 'play_stop') = 0)"); n != 0 {
		t.Errorf("%d kept sessions lack their play_start or play_stop", n)
	}
	// The kept fraction of the sessions played: within the 99.9% binomial
	// interval of 10%.
	sd := math.Sqrt(float64(plays) * rate * (1 - rate))
	lo, hi := float64(plays)*rate-3.29*sd, float64(plays)*rate+3.29*sd
	if k := float64(len(kept)); k < max(lo, 1) || k > hi {
		t.Errorf("kept %d of %d sessions, outside [%.1f, %.1f]", len(kept), plays, lo, hi)
	}
	// GET /v1/config says what the collector did: its seed, unit and rates
	// reproduce the decision of every kept session.
	var cfg struct {
		Seed  uint64
		Unit  []string
		Rates map[string]float64
	}
	getJSON(t, "http://"+pipe.HTTP+"/v1/config", &cfg)
	if cfg.Seed != 11 || len(cfg.Unit) == 0 || cfg.Unit[0] != "session_id" || cfg.Rates["edge_access"] != rate || cfg.Rates["heartbeat"] != rate {
		t.Errorf("GET /v1/config: %+v", cfg)
	}
	for _, sid := range kept {
		if u := sampling.Unit(cfg.Seed, []byte(sid)); u >= rate {
			t.Errorf("session %s kept with draw %v ≥ %v", sid, u, rate)
		}
	}
	// The edges really served the dropped sessions too: the collector
	// sampled their edge_access out.
	if n := pipe.metric(t, "lastmile_collector_events_sampled_out_total", `log_type="edge_access"`); n == 0 {
		t.Error("no edge_access sampled out: the edges' logs of dropped sessions did not reach the collector")
	}
}

// getTraceStatus asks the read API for a trace: status and body.
func getTraceStatus(t *testing.T, p *proc, q string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/trace?"+q, nil)
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// getTrace asks the read API for a trace and decodes it.
func getTrace(t *testing.T, p *proc, q string) *trace.Response {
	t.Helper()
	code, b := getTraceStatus(t, p, q)
	if code != http.StatusOK {
		t.Fatalf("trace?%s: %d %s", q, code, b)
	}
	var r trace.Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("trace?%s: %v\n%s", q, err, b)
	}
	return &r
}

// lightTopology lowers mediaTopology's bitrates so that 150 players fit on
// a loaded test machine.
func lightTopology(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("bitrate_kbps: 2000", "bitrate_kbps: 500", "bitrate_kbps: 800", "bitrate_kbps: 250").Replace(string(b))
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runMediaUp runs `lastmile media up` for a duration and returns its stdout.
func runMediaUp(t *testing.T, top, duration string, timeout time.Duration) string {
	t.Helper()
	cmd := exec.Command(lastmileBin(t), "media", "up", "--config", top, "--duration", duration, "--log-level", "warn")
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lastmile media up: %v\n%s\n%s", err, out.String(), errOut.String())
		}
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("lastmile media up --duration %s still running after %s:\n%s\n%s", duration, timeout, out.String(), errOut.String())
	}
	return out.String()
}

// minus returns the elements of a (sorted) not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}
