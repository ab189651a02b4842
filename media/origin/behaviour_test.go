package origin

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/mediatest"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
)

// behRep keeps the origin's events.
type behRep struct {
	mu  sync.Mutex
	evs []report.Event
}

func (r *behRep) Log(ev report.Event) { r.mu.Lock(); r.evs = append(r.evs, ev); r.mu.Unlock() }

// find returns the events of logType for which match holds.
func (r *behRep) find(logType string, match func(report.Event) bool) []report.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []report.Event
	for _, ev := range r.evs {
		if ev["log_type"] == logType && match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// liveRoom starts an origin with a 480p rung and pushes room1 to it over
// RTMP in real time (the sample: 25 fps, a keyframe every second); it
// returns once room1 and its 480p are held.
func liveRoom(t *testing.T) (*Server, *behRep, string) {
	t.Helper()
	rep := &behRep{}
	o := New(Config{RTMPListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Node: "origin-1", StatsEvery: 300 * time.Millisecond,
		Renditions: []scheduler.Rendition{{Name: "source"}, {Name: "480p", BitrateKbps: 800, Width: 854, Height: 480}}}, rep, nil)
	ra, ha, err := o.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	mediatest.PushSample(t, "rtmp://"+ra.String()+"/live/room1")
	waitStreams(t, o, []string{"room1", "room1_480p"}, nil)
	time.Sleep(time.Second) // a GOP in the caches
	return o, rep, "http://" + ha.String()
}

// waitStreams waits until the origin holds every name of have and none of
// gone.
func waitStreams(t *testing.T, o *Server, have, gone []string) {
	t.Helper()
	ok := func() bool {
		s := o.Streams()
		for _, n := range have {
			if !slices.Contains(s, n) {
				return false
			}
		}
		for _, n := range gone {
			if slices.Contains(s, n) {
				return false
			}
		}
		return true
	}
	for i := 0; i < 250 && !ok(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !ok() {
		t.Fatalf("origin holds %v, want %v and not %v", o.Streams(), have, gone)
	}
}

// pull reads name's HTTP-FLV from the origin until ctx ends or the stream
// does; it returns the arrival times of its video frames and why it ended.
func pull(ctx context.Context, t *testing.T, base, name string) (frames []time.Time, end error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/live/"+name+".flv", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("pull %s: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pull %s: %s", name, resp.Status)
	}
	rd := flv.NewReader(resp.Body)
	if _, err := rd.ReadHeader(); err != nil {
		return nil, err
	}
	for {
		tag, err := rd.ReadTag()
		if err != nil {
			return frames, err
		}
		if tag.IsVideo() && !tag.IsSequenceHeader() {
			frames = append(frames, time.Now())
		}
	}
}

// TestOriginLoseStream: LoseStream ends the room and its renditions at
// once: a pull in progress ends, new pulls get 404, origin_stream logs
// "lost" with the error.
func TestOriginLoseStream(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	o, rep, base := liveRoom(t)
	ended := make(chan time.Time, 1)
	var got []time.Time
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, _ = pull(ctx, t, base, "room1")
		ended <- time.Now()
	}()
	time.Sleep(time.Second)
	lost := time.Now()
	if !o.LoseStream("room1") {
		t.Fatal("LoseStream(room1) = false for a live room")
	}
	select {
	case at := <-ended:
		if len(got) < 10 {
			t.Errorf("the pull read %d video frames before the loss, want a second's worth", len(got))
		}
		if d := at.Sub(lost); d > 2*time.Second {
			t.Errorf("the pull ended %s after the loss, want at once", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a pull of the lost stream still runs 5 s after the loss")
	}
	waitStreams(t, o, nil, []string{"room1", "room1_480p"})
	resp, err := http.Get(base + "/live/room1.flv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a pull after the loss: %s, want 404", resp.Status)
	}
	evs := rep.find("origin_stream", func(ev report.Event) bool { return ev["state"] == "lost" && ev["room_id"] == "room1" })
	if len(evs) != 1 || evs[0]["error"] != "origin lost the stream" {
		t.Errorf("origin_stream lost events %v, want one with the error", evs)
	}
	if o.LoseStream("room9") {
		t.Error("LoseStream of a room that is not live = true")
	}
}

// TestOriginTranscodeLag: a 200 ms lag per frame on room1's 480p worker
// slows that rendition to one video frame per ≈ 200 ms (the source keeps
// 40 ms) and its transcode log says "lagging"; cleared, it is "ok" again.
func TestOriginTranscodeLag(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time stream")
	}
	const lag = 200 * time.Millisecond
	o, rep, base := liveRoom(t)
	gap := func(name string, d time.Duration) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		frames, _ := pull(ctx, t, base, name)
		// The cached GOP comes in a burst: time the frames after it.
		var gaps []time.Duration
		for i := 1; i < len(frames); i++ {
			if frames[i].Sub(frames[0]) > 500*time.Millisecond {
				gaps = append(gaps, frames[i].Sub(frames[i-1]))
			}
		}
		if len(gaps) < 5 {
			t.Fatalf("%s: %d frames in %s", name, len(frames), d)
		}
		slices.Sort(gaps)
		return gaps[len(gaps)/2]
	}
	if g := gap("room1_480p", 2*time.Second); g > 80*time.Millisecond {
		t.Fatalf("480p without the fault: median %s between video frames, want ≈ 40 ms", g)
	}
	o.SetTranscodeFault("room1", "480p", TranscodeFault{Lag: lag})
	faulted := time.Now()
	if g := gap("room1_480p", 4*time.Second); g < lag-20*time.Millisecond || g > lag+100*time.Millisecond {
		t.Errorf("480p with a %s lag: median %s between video frames, want ≈ %s", lag, g, lag)
	}
	if g := gap("room1", 2*time.Second); g > 80*time.Millisecond {
		t.Errorf("the source during the 480p fault: median %s between video frames, want ≈ 40 ms", g)
	}
	status := func(since time.Time) []any {
		time.Sleep(time.Second) // a few stats periods
		var out []any
		for _, ev := range rep.find("transcode", func(ev report.Event) bool { return ev["rendition"] == "480p" }) {
			out = append(out, ev["status"])
		}
		return out
	}
	if s := status(faulted); !slices.Contains(s, any("lagging")) {
		t.Errorf("480p transcode statuses %v during the lag, want lagging", s)
	}
	o.SetTranscodeFault("room1", "480p", TranscodeFault{})
	rep.mu.Lock()
	rep.evs = nil
	rep.mu.Unlock()
	if s := status(time.Now()); len(s) == 0 || s[len(s)-1] != "ok" {
		t.Errorf("480p transcode statuses %v after the lag cleared, want ok", s)
	}
}
