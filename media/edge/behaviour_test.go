package edge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/mediatest"
	"github.com/lastmile-qoe/lastmile/media/origin"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/stream"
)

// behRep keeps the edge's events.
type behRep struct {
	mu  sync.Mutex
	evs []report.Event
}

func (r *behRep) Log(ev report.Event) { r.mu.Lock(); r.evs = append(r.evs, ev); r.mu.Unlock() }

// accesses are the edge_access events of path, oldest first.
func (r *behRep) accesses(path string) []report.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []report.Event
	for _, ev := range r.evs {
		if ev["log_type"] == "edge_access" && ev["path"] == path {
			out = append(out, ev)
		}
	}
	return out
}

// waitAccesses waits (up to 2 s) for n edge_access events of path: one is
// written when its viewer has left.
func (r *behRep) waitAccesses(path string, n int) []report.Event {
	var evs []report.Event
	for range 100 {
		if evs = r.accesses(path); len(evs) >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return evs
}

// liveOrigin starts a real origin holding room1, pushed over RTMP in real
// time (the sample: 25 fps, a keyframe every second), with `warm` of it
// cached before it returns. It returns the origin's HTTP base URL.
func liveOrigin(t *testing.T, warm time.Duration) string {
	t.Helper()
	o := origin.New(origin.Config{RTMPListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Node: "origin-1",
		StatsEvery: time.Hour, Stream: stream.Options{CacheGOPs: 4}}, &behRep{}, nil)
	ra, ha, err := o.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	mediatest.PushSample(t, "rtmp://"+ra.String()+"/live/room1")
	time.Sleep(warm)
	return "http://" + ha.String()
}

func startEdge(t *testing.T, cfg Config) (*Server, *behRep, string) {
	t.Helper()
	cfg.Listen, cfg.Node, cfg.CDN, cfg.Region = "127.0.0.1:0", "edge-t", "cdn-t", "north"
	rep := &behRep{}
	e := New(cfg, rep, nil)
	addr, err := e.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e, rep, "http://" + addr.String()
}

// frameAt is one video tag a viewer read: when (since the request) and its
// stream time.
type frameAt struct {
	wall   time.Duration
	media  time.Duration
	key    bool
	header bool
}

// watchFLV plays url for d and returns the response headers' delay and the
// video tags read.
func watchFLV(t *testing.T, url string, d time.Duration) (headers time.Duration, resp *http.Response, frames []frameAt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	headers = time.Since(start)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	rd := flv.NewReader(resp.Body)
	if _, err := rd.ReadHeader(); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	for {
		tag, err := rd.ReadTag()
		if err != nil {
			if ctx.Err() == nil {
				t.Fatalf("GET %s: the stream ended: %v", url, err)
			}
			return headers, resp, frames
		}
		if tag.IsVideo() {
			frames = append(frames, frameAt{wall: time.Since(start), media: time.Duration(tag.Time) * time.Millisecond,
				key: tag.IsKeyframe(), header: tag.IsSequenceHeader()})
		}
	}
}

// longestGap is the longest wait between two video tags a viewer read, and
// when (since the request) it began.
func longestGap(frames []frameAt) (gap, at time.Duration) {
	for i := 1; i < len(frames); i++ {
		if g := frames[i].wall - frames[i-1].wall; g > gap {
			gap, at = g, frames[i-1].wall
		}
	}
	return gap, at
}

func TestEdgeRefuse(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	e, _, base := startEdge(t, Config{Origin: liveOrigin(t, 1500*time.Millisecond)})
	host := base[len("http://"):]
	if err := e.SetFault(Fault{Refuse: true}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("a refusing edge accepted a connection")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial while refusing: %v, want connection refused", err)
	}
	if err := e.SetFault(Fault{}); err != nil {
		t.Fatal(err)
	}
	if _, _, frames := watchFLV(t, base+"/live/room1.flv", 2*time.Second); len(frames) < 10 {
		t.Fatalf("after the fault cleared: %d video tags in 2 s", len(frames))
	}
}

// TestEdgeFirstByteDelay: a 1.5 s first-byte delay holds FLV and HLS
// responses ≈ 1.5 s before their headers, and edge_access says so.
func TestEdgeFirstByteDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	const delay = 1500 * time.Millisecond
	e, rep, base := startEdge(t, Config{Origin: liveOrigin(t, 1500*time.Millisecond)})
	// Warm the pull and the HLS packager: the delay must not include the
	// back-to-source time.
	watchFLV(t, base+"/live/room1.flv", time.Second)
	waitPlaylist(t, base+"/live/room1/index.m3u8")
	if err := e.SetFault(Fault{FirstByteDelay: delay}); err != nil {
		t.Fatal(err)
	}
	headers, _, frames := watchFLV(t, base+"/live/room1.flv", 3*time.Second)
	if headers < delay || headers > delay+700*time.Millisecond {
		t.Errorf("FLV headers after %s, want ≈ %s", headers, delay)
	}
	if len(frames) == 0 || frames[0].wall < delay {
		t.Errorf("FLV: first video tag at %v, want ≥ %s", frames, delay)
	}
	evs := rep.waitAccesses("/live/room1.flv", 2) // the warm-up's, then the delayed one's
	if len(evs) != 2 {
		t.Fatalf("edge_access rows %v, want 2", evs)
	}
	if fb, _ := evs[1]["first_byte_ms"].(int64); fb < delay.Milliseconds() || fb > (delay+700*time.Millisecond).Milliseconds() {
		t.Errorf("edge_access first_byte_ms %d, want ≈ %d", fb, delay.Milliseconds())
	}
	start := time.Now()
	resp, err := http.Get(base + "/live/room1/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusOK || took < delay || took > delay+700*time.Millisecond {
		t.Errorf("HLS playlist: %s after %s, want 200 after ≈ %s", resp.Status, took, delay)
	}
}

// waitPlaylist polls an HLS playlist until it answers 200.
func waitPlaylist(t *testing.T, url string) {
	t.Helper()
	for range 100 {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200", url)
}

// TestEdgeStall: StallAfter 1 s, StallFor 3 s pause an FLV response once,
// for ≈ 3 s, ≈ 1 s into the stream.
func TestEdgeStall(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	const after, stall = time.Second, 3 * time.Second
	e, _, base := startEdge(t, Config{Origin: liveOrigin(t, 1500*time.Millisecond)})
	watchFLV(t, base+"/live/room1.flv", 500*time.Millisecond)
	if err := e.SetFault(Fault{StallAfter: after, StallFor: stall}); err != nil {
		t.Fatal(err)
	}
	_, _, frames := watchFLV(t, base+"/live/room1.flv", 7*time.Second)
	checkStall(t, frames, 0, after, stall)
}

// checkStall: the longest wait between video tags is ≈ stall, starting
// ≈ after into the stream (its first byte at firstByte), and it is the
// only one over a second.
func checkStall(t *testing.T, frames []frameAt, firstByte, after, stall time.Duration) {
	t.Helper()
	gap, at := longestGap(frames)
	if gap < stall-100*time.Millisecond || gap > stall+800*time.Millisecond {
		t.Errorf("longest wait between video tags %s, want ≈ %s", gap, stall)
	}
	if at < firstByte+after-100*time.Millisecond || at > firstByte+after+800*time.Millisecond {
		t.Errorf("the stall began %s after the request, want ≈ %s (first byte %s + %s)", at, firstByte+after, firstByte, after)
	}
	long := 0
	for i := 1; i < len(frames); i++ {
		if frames[i].wall-frames[i-1].wall > time.Second {
			long++
		}
	}
	if long != 1 {
		t.Errorf("%d waits over 1 s, want the one stall", long)
	}
}

// TestEdgeDegrade: the degrade mode (what scenario's edge/degrade sets:
// a slow first byte and a stall) shows both: headers after ≈ 1.5 s, then
// a ≈ 3 s stall once the response has streamed StallAfter.
func TestEdgeDegrade(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	const delay, after, stall = 1500 * time.Millisecond, 2 * time.Second, 3 * time.Second
	e, _, base := startEdge(t, Config{Origin: liveOrigin(t, 1500*time.Millisecond)})
	watchFLV(t, base+"/live/room1.flv", 500*time.Millisecond)
	if err := e.SetFault(Fault{FirstByteDelay: delay, StallAfter: after, StallFor: stall}); err != nil {
		t.Fatal(err)
	}
	headers, _, frames := watchFLV(t, base+"/live/room1.flv", 9*time.Second)
	if headers < delay || headers > delay+700*time.Millisecond {
		t.Errorf("headers after %s, want ≈ %s", headers, delay)
	}
	checkStall(t, frames, frames[0].wall, after, stall)
}

// TestEdgeQuickStartWithPullStart: the first viewer of a cold edge, who
// arrives while the edge starts pulling, gets the quick-start buffer: the
// pull asks the origin for PullStart of cached media, so the response
// opens on a keyframe with well over QuickStart of media delivered ahead
// of real time. A second viewer (cache hit) gets it too.
func TestEdgeQuickStartWithPullStart(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	const quick, pullStart = 1500 * time.Millisecond, 3 * time.Second
	_, rep, base := startEdge(t, Config{Origin: liveOrigin(t, 4*time.Second), QuickStart: quick, PullStart: pullStart,
		Stream: stream.Options{CacheGOPs: 4}})
	for i, want := range []string{"MISS", "HIT"} {
		_, resp, frames := watchFLV(t, base+"/live/room1.flv", 1500*time.Millisecond)
		if got := resp.Header.Get("X-Cache"); got != want {
			t.Errorf("viewer %d: X-Cache %s, want %s", i+1, got, want)
		}
		var first *frameAt
		for j := range frames {
			if !frames[j].header {
				first = &frames[j]
				break
			}
		}
		if first == nil || !first.key {
			t.Fatalf("viewer %d: the first video frame is not a keyframe (%d frames)", i+1, len(frames))
		}
		// The buffer the viewer got: how far the media it read ran ahead of
		// the time it took to read it.
		var ahead time.Duration
		for _, f := range frames {
			if !f.header {
				ahead = max(ahead, (f.media-first.media)-(f.wall-first.wall))
			}
		}
		if ahead < quick-100*time.Millisecond {
			t.Errorf("viewer %d (%s): started %s ahead of real time, want ≥ the quick start %s", i+1, want, ahead, quick)
		}
		t.Logf("viewer %d (%s): %s of media ahead at start", i+1, want, ahead.Round(time.Millisecond))
	}
	evs := rep.waitAccesses("/live/room1.flv", 2)
	if len(evs) != 2 || evs[0]["cache_hit"] != false || evs[1]["cache_hit"] != true {
		t.Fatalf("edge_access rows %v, want a miss then a hit", evs)
	}
	miss := evs[0]
	if _, ok := miss["back_to_source_ms"]; !ok {
		t.Errorf("first viewer's edge_access has no back_to_source_ms: %v", miss)
	}
}
