package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// latencyRaise is how much more quick-start buffer the raised edge hands
// its HTTP-FLV viewers than its peers.
const (
	latencyRaised = "edge-a-north-1"
	latencyRaise  = 2 * time.Second
)

// TestLatencyEndToEnd: the publisher's capture stamp is read at every hop.
// A real pipeline and `lastmile media up` (one room, a source + 480p +
// audio ladder, 4 edges, mixed FLV and HLS viewers), with one edge's
// quick start raised by latencyRaise over its peers':
//   - every stream's heartbeats report a glass-to-glass latency_ms > 0;
//   - relay and transcode (video renditions) latency_ms are non-zero and
//     below a few seconds;
//   - the raised edge's HTTP-FLV viewers (median of per-session medians)
//     are later than the mean of its peers by latencyRaise ± 40 %, while
//     the peers stay within 40 % of latencyRaise of each other.
func TestLatencyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("a 55 s streaming run")
	}
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	top := mediaTopology(t, pipe.HTTP, `  count: 48
  ramp: 16s
  watch: 30s
  seed: 11
  regions: [north, south]
  weak_share: 0
`)
	// Enough GOPs cached for the raised quick start; one edge raised.
	raiseEdge(t, top, fmt.Sprintf("edge:\n  quick_start: 1s\n  cache_gops: 6\n  nodes:\n    %s: {quick_start: %s}\n",
		latencyRaised, time.Second+latencyRaise))
	_, media := startMedia(t, top, "--duration", "55s")
	select {
	case <-media.exited:
	case <-time.After(90 * time.Second):
		t.Fatal("lastmile media up --duration 55s still running after 90 s")
	}
	waitFor(t, 30*time.Second, "play_stop of most players in ClickHouse", func() (bool, string) {
		n := pipe.sqlInt(t, "SELECT uniqExact(session_id) FROM play_stop")
		return n >= 42, fmt.Sprintf("%d play_stop sessions", n)
	})

	// Glass-to-glass, per stream and protocol: every heartbeat after the
	// first frame has a latency, from the stamp.
	rows, err := pipe.sql(`SELECT stream_id, protocol, count() AS n, countIf(latency_ms > 0) AS pos,
		toInt64(quantileExact(0.5)(latency_ms)) AS p50 FROM heartbeat GROUP BY stream_id, protocol ORDER BY stream_id, protocol`)
	if err != nil {
		t.Fatal(err)
	}
	protocols := map[string]bool{}
	for _, r := range rows {
		n, pos, p50 := toInt(t, r["n"]), toInt(t, r["pos"]), toInt(t, r["p50"])
		t.Logf("glass-to-glass %v %v: %d heartbeats, %d with latency > 0, median %d ms", r["stream_id"], r["protocol"], n, pos, p50)
		protocols[fmt.Sprint(r["protocol"])] = true
		if n == 0 || pos < n*95/100 || p50 <= 0 || p50 > 30000 {
			t.Errorf("stream %v %v: %d of %d heartbeats with latency_ms > 0, median %d ms; want all but a few, a median in (0, 30 s]",
				r["stream_id"], r["protocol"], pos, n, p50)
		}
	}
	if !protocols["http-flv"] || !protocols["hls"] {
		t.Errorf("heartbeats by protocol %v, want http-flv and hls", protocols)
	}

	// Relay and transcode: measured from the stamp, non-zero and plausible.
	relay := pipe.sqlInt(t, "SELECT toInt64(quantileExact(0.5)(latency_ms)) FROM relay WHERE state = 'stats'")
	t.Logf("relay latency median %d ms", relay)
	if relay <= 0 || relay > 3000 {
		t.Errorf("relay latency_ms median %d, want in (0, 3000]", relay)
	}
	rows, err = pipe.sql(`SELECT rendition, count() AS n, toInt64(quantileExact(0.5)(latency_ms)) AS p50, toInt64(min(latency_ms)) AS lo
		FROM transcode WHERE status = 'ok' AND rendition != 'audio' AND bitrate_kbps > 0 GROUP BY rendition ORDER BY rendition`)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Error("no transcode stats of a video rendition")
	}
	for _, r := range rows {
		p50, lo := toInt(t, r["p50"]), toInt(t, r["lo"])
		t.Logf("transcode %v latency median %d ms (min %d) over %v stats", r["rendition"], p50, lo, r["n"])
		if lo <= 0 || p50 > 3000 {
			t.Errorf("transcode %v latency_ms min %d, median %d; want every one > 0, median <= 3000", r["rendition"], lo, p50)
		}
	}

	// Per edge: the median over HTTP-FLV sessions (with 3+ heartbeats) of
	// each session's median latency. Only sessions that started once the
	// stream was long enough for every edge's cache to hold its quick start
	// (the raised one needs a GOP more than it): earlier ones got less.
	rows, err = pipe.sql(fmt.Sprintf(`SELECT node_id, count() AS sessions, toInt64(quantileExact(0.5)(m)) AS p50 FROM (
		SELECT session_id, node_id, quantileExact(0.5)(latency_ms) AS m FROM heartbeat
		WHERE protocol = 'http-flv' AND latency_ms > 0 AND session_id IN (SELECT session_id FROM first_frame
			WHERE ts >= (SELECT min(ts) FROM push_start) + INTERVAL %d MILLISECOND)
		GROUP BY session_id, node_id HAVING count() >= 3)
		GROUP BY node_id ORDER BY node_id`, (2*time.Second+latencyRaise).Milliseconds()+1000))
	if err != nil {
		t.Fatal(err)
	}
	edges := map[string]int64{}
	for _, r := range rows {
		node, p50 := fmt.Sprint(r["node_id"]), toInt(t, r["p50"])
		t.Logf("edge %s: %v FLV sessions, median glass-to-glass %d ms", node, r["sessions"], p50)
		if toInt(t, r["sessions"]) >= 2 {
			edges[node] = p50
		}
	}
	raised, ok := edges[latencyRaised]
	if !ok || len(edges) < 3 {
		t.Fatalf("FLV latency by edge %v: want the raised edge and at least 2 peers with 2+ sessions each", edges)
	}
	var peers []int64
	for n, v := range edges {
		if n != latencyRaised {
			peers = append(peers, v)
		}
	}
	var sum int64
	for _, v := range peers {
		sum += v
	}
	mean := sum / int64(len(peers))
	raise := latencyRaise.Milliseconds()
	if d := raised - mean; d < raise*6/10 || d > raise*14/10 {
		t.Errorf("raised edge %d ms vs its peers' mean %d ms: +%d ms, want +%d ms ± 40 %%", raised, mean, d, raise)
	}
	if spread := slices.Max(peers) - slices.Min(peers); spread > raise*4/10 {
		t.Errorf("peer edges' medians %v spread %d ms, want within %d ms of each other", peers, spread, raise*4/10)
	}
}

// raiseEdge appends an edge: section to a mediaTopology file.
func raiseEdge(t *testing.T, path, edge string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\nedge:") {
		t.Fatal("the topology already has an edge section")
	}
	if err := os.WriteFile(path, append(b, edge...), 0o644); err != nil {
		t.Fatal(err)
	}
}
