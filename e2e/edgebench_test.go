package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/sign"
)

var benchEdge = flag.Bool("bench-edge", false, "run TestBenchEdge: one edge process, N HTTP-FLV viewers of one 2 Mbit/s stream")

// TestBenchEdge measures one `lastmile media edge` process serving N
// concurrent HTTP-FLV viewers of one 2 Mbit/s stream on loopback: for each
// N, viewers join over 2 s and watch for 10 s; it reports the first-packet
// p95 (request sent → first FLV byte) and the tags the edge dropped from
// viewer queues, and the largest N with p95 < 100 ms and no drops. It
// asserts nothing about speed.
//
//	LASTMILE_BIN=$PWD/bin/lastmile go test -run '^TestBenchEdge$' -v -timeout 30m ./e2e -bench-edge
func TestBenchEdge(t *testing.T) {
	if !*benchEdge {
		t.Skip("edge benchmark: pass -bench-edge (make bench runs it)")
	}
	// A sink for the stack's logs, so reporting costs what it costs without
	// a pipeline competing for the 2 cores.
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"accepted":0,"rejected":[]}`))
	}))
	defer sink.Close()
	top := mediaTopology(t, strings.TrimPrefix(sink.URL, "http://"), "")
	originRTMP, originHTTP, edgeAddr := benchTopologyAddrs(t, top)

	origin := startRole(t, "origin", top)
	_ = origin
	// The edge's metrics are on its admin listener, not its play port.
	ready, edge := startMediaRole(t, regexp.MustCompile(`is up: .*admin http://(\S+)`), "edge", "--config", top, "--node", "edge-a-north-1")
	edgeAdmin := ready[1]
	pub := exec.Command(lastmileBin(t), "media", "publish", "--config", top, "--log-level", "warn",
		"--url", "rtmp://"+originRTMP+"/live/bench", "--room", "room1")
	pub.Stderr = &lockedBuffer{}
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer pub.Process.Kill()
	_ = originHTTP
	// Play URLs are signed as the scheduler would sign them.
	u := &url.URL{Scheme: "http", Host: edgeAddr, Path: "/live/bench.flv"}
	sign.SignURL("e2e-secret", u, time.Hour, time.Now())
	playURL := u.String()
	waitFor(t, 20*time.Second, "the stream live at the edge", func() (bool, string) {
		resp, err := http.Get(playURL)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		buf := make([]byte, 1024)
		_, err = io.ReadFull(resp.Body, buf)
		return resp.StatusCode == 200 && err == nil, resp.Status
	})

	best := 0
	var lines []string
	for _, n := range []int{250, 500, 1000, 1500, 2000, 2500, 3000, 4000} {
		r := edgeRound(t, edgeAdmin, playURL, n)
		// A viewer receiving less than 90% of the stream's rate is falling
		// behind even if its queue has not overflowed yet.
		ok := r.p95 < 100*time.Millisecond && r.dropped == 0 && r.failed == 0 && r.slow == 0
		line := fmt.Sprintf("N=%-5d first packet p50 %-7s p95 %-7s failed %-3d dropped tags %-5d per-viewer kbit/s p5 %-5.0f p50 %-5.0f below 90%%: %-4d %s",
			n, r.p50.Round(time.Millisecond), r.p95.Round(time.Millisecond), r.failed, r.dropped, r.kbpsP5, r.kbpsP50, r.slow,
			map[bool]string{true: "ok", false: "OVER"}[ok])
		t.Log(line)
		lines = append(lines, line)
		if !ok {
			break
		}
		best = n
	}
	fmt.Printf("\nedge benchmark: one edge process, HTTP-FLV viewers of one 2 Mbit/s stream on loopback\n%s\nlargest N with first-packet p95 < 100 ms and no drops: %d (target ≥ 2,000)\n",
		strings.Join(lines, "\n"), best)
	_ = edge
}

type edgeResult struct {
	p95, p50        time.Duration
	failed          int
	dropped         int64
	kbpsP5, kbpsP50 float64
	slow            int // viewers under 90% of the stream's rate
}

// edgeRound runs n viewers for 10 s and measures first packet (request
// sent → first FLV bytes), the rate each viewer received after its first
// packet, and the tags the edge dropped meanwhile.
func edgeRound(t *testing.T, edgeAdmin, playURL string, n int) edgeResult {
	const watch = 10 * time.Second
	const streamKbps = 2000 + 64 // video + audio of the bench room
	before := edgeDropped(t, edgeAdmin)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var r edgeResult
	var lat []time.Duration
	var kbps []float64
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	client := &http.Client{Transport: tr}
	fail := func() { mu.Lock(); r.failed++; mu.Unlock() }
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(2 * time.Second / time.Duration(n))
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, playURL, nil)
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				fail()
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 32<<10)
			k, err := resp.Body.Read(buf)
			if err != nil || k == 0 || resp.StatusCode != 200 {
				fail()
				return
			}
			first := time.Now()
			var got int64
			for {
				m, err := resp.Body.Read(buf)
				got += int64(m)
				if err != nil {
					break
				}
			}
			// The quick-start burst is about a second of media; the rate
			// counts from the first packet on, less that burst.
			secs := time.Since(first).Seconds()
			mu.Lock()
			lat = append(lat, first.Sub(t0))
			if secs > 3 {
				kbps = append(kbps, float64(got)*8/1000/secs)
			}
			mu.Unlock()
		})
	}
	time.Sleep(time.Until(start.Add(2*time.Second + watch)))
	cancel()
	wg.Wait()
	tr.CloseIdleConnections()
	time.Sleep(300 * time.Millisecond)
	slices.Sort(lat)
	slices.Sort(kbps)
	if len(lat) > 0 {
		r.p95, r.p50 = lat[len(lat)*95/100], lat[len(lat)/2]
	}
	if len(kbps) > 0 {
		r.kbpsP5, r.kbpsP50 = kbps[len(kbps)*5/100], kbps[len(kbps)/2]
		for _, k := range kbps {
			if k < 0.9*streamKbps {
				r.slow++
			}
		}
	}
	r.dropped = edgeDropped(t, edgeAdmin) - before
	return r
}

var droppedMetric = regexp.MustCompile(`(?m)^lastmile_edge_viewer_dropped_tags_total\{[^}]*\} (\S+)$`)

func edgeDropped(t *testing.T, edgeAdmin string) int64 {
	resp, err := http.Get("http://" + edgeAdmin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := droppedMetric.FindSubmatch(b)
	if m == nil {
		t.Fatalf("edge /metrics lacks lastmile_edge_viewer_dropped_tags_total")
	}
	f, _ := strconv.ParseFloat(string(m[1]), 64)
	return int64(f)
}

// benchTopologyAddrs reads back the origin's and edge-a-north-1's addresses.
func benchTopologyAddrs(t *testing.T, path string) (originRTMP, originHTTP, edge string) {
	b, _ := exec.Command("cat", path).Output()
	s := string(b)
	find := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("topology lacks %s", re)
		}
		return m[1]
	}
	originRTMP = find(`origin: \{rtmp: (\S+),`)
	originHTTP = find(`origin: \{rtmp: \S+, http: (\S+),`)
	edge = "127.0.0.1:" + find(`edge-a-north-1.cdn-a.lastmile.test, port: (\d+)`)
	return
}

// startRole runs `lastmile media <role> --config top` and waits for "is up".
func startRole(t *testing.T, role, top string, extra ...string) *proc {
	t.Helper()
	_, p := startMediaRole(t, regexp.MustCompile(`is up`), append([]string{role, "--config", top}, extra...)...)
	return p
}
