package publisher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/rtmp"
)

// tagSpec is a compact tag for the table tests: kind k (key), p (P-frame),
// a (audio), h (video sequence header), at ts ms, of n bytes; or kind s:
// the link sent the front tag.
type tagSpec struct {
	kind byte
	ts   uint32
	n    int
}

func mkTag(s tagSpec) flv.Tag {
	d := make([]byte, max(s.n, 2))
	switch s.kind {
	case 'k':
		d[0], d[1] = 0x17, 1
		return flv.Tag{Type: flv.TagVideo, Time: s.ts, Data: d}
	case 'p':
		d[0], d[1] = 0x27, 1
		return flv.Tag{Type: flv.TagVideo, Time: s.ts, Data: d}
	case 'h':
		d[0], d[1] = 0x17, 0
		return flv.Tag{Type: flv.TagVideo, Time: s.ts, Data: d}
	}
	d[0], d[1] = 0xaf, 1
	return flv.Tag{Type: flv.TagAudio, Time: s.ts, Data: d}
}

func describe(b *sendBuffer) string {
	s := ""
	for _, e := range b.q {
		k := byte('a')
		switch {
		case e.key:
			k = 'k'
		case e.video:
			k = 'p'
		case e.tag.IsVideo():
			k = 'h'
		}
		s += fmt.Sprintf("%c%d ", k, e.tag.Time)
	}
	return s
}

// TestSendBuffer: the buffer keeps everything while its video spans at most
// DropAfter; past it, queued P-frames (not the one in flight, not
// keyframes, not audio) go and new P-frames are dropped until a keyframe;
// past MaxBytes new tags are refused.
func TestSendBuffer(t *testing.T) {
	plan := UplinkPlan{DropAfter: 100 * time.Millisecond, MaxBytes: 1000, Quantum: 100}
	cases := []struct {
		name        string
		offer       []tagSpec
		wantQueue   string
		wantDropped int
		wantLevel   time.Duration
	}{
		{"under the bound keeps all", []tagSpec{{'h', 0, 10}, {'k', 0, 50}, {'a', 10, 5}, {'p', 40, 20}, {'p', 80, 20}},
			"h0 k0 a10 p40 p80 ", 0, 80 * time.Millisecond},
		{"at the bound keeps all", []tagSpec{{'k', 0, 50}, {'p', 40, 20}, {'p', 80, 20}, {'p', 100, 20}},
			"k0 p40 p80 p100 ", 0, 100 * time.Millisecond},
		{"past the bound drops queued P-frames, keeps in-flight, keyframes, audio", []tagSpec{
			{'p', 0, 20}, {'p', 40, 20}, {'a', 50, 5}, {'k', 80, 50}, {'p', 120, 20}, {'p', 160, 20}},
			"p0 a50 k80 ", 3, 80 * time.Millisecond},
		{"drops new P-frames until the next keyframe", []tagSpec{
			{'p', 0, 20}, {'p', 40, 20}, {'p', 80, 20}, {'p', 120, 20}, {'p', 160, 20}, {kind: 's'}, {'a', 170, 5}, {'p', 200, 20}, {'k', 240, 50}, {'p', 280, 20}},
			"a170 k240 p280 ", 5, 40 * time.Millisecond},
		{"a stale frame in flight keeps the level up", []tagSpec{
			{'p', 0, 20}, {'p', 40, 20}, {'p', 80, 20}, {'p', 120, 20}, {'p', 160, 20}, {'k', 200, 50}, {'p', 240, 20}},
			"p0 k200 ", 5, 200 * time.Millisecond},
		{"sent frames no longer count", []tagSpec{{'k', 0, 50}, {'p', 40, 20}, {'p', 80, 20}, {'p', 120, 20}, {kind: 's'}, {kind: 's'}, {kind: 's'}, {'p', 160, 20}},
			"p120 p160 ", 0, 40 * time.Millisecond},
		{"MaxBytes refuses new tags", []tagSpec{{'k', 0, 600}, {'a', 10, 300}, {'a', 20, 200}, {'p', 40, 200}, {'p', 60, 20}},
			"k0 a10 ", 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &sendBuffer{plan: plan}
			dropped := 0
			for _, s := range c.offer {
				if s.kind == 's' {
					b.sent()
					continue
				}
				dropped += b.offer(mkTag(s))
			}
			if got := describe(b); got != c.wantQueue || dropped != c.wantDropped || b.level() != c.wantLevel {
				t.Errorf("queue %q dropped %d level %v; want %q, %d, %v", got, dropped, b.level(), c.wantQueue, c.wantDropped, c.wantLevel)
			}
			sum := 0
			for _, e := range b.q {
				sum += len(e.tag.Data)
			}
			if sum != b.bytes {
				t.Errorf("bytes %d, queue holds %d", b.bytes, sum)
			}
		})
	}
}

// TestLinkPace: a capped link lets bytes through at the cap from the
// moment the cap is set, whatever idle time came before (no credit for
// the past), with a burst of at most one quantum; a pause holds it.
func TestLinkPace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := &link{quantum: 1000, rate: 100000, last: t0} // 800 kbit/s, set at t0
	// 10 s idle earns one quantum of credit, not 10 s of it.
	at := t0.Add(10 * time.Second)
	var total time.Duration
	for range 100 { // 100 kB
		d := l.reserve(1000, at.Add(total))
		total += d
	}
	if want := 990 * time.Millisecond; total < want-time.Millisecond || total > want+time.Millisecond {
		t.Errorf("100 kB at 100 kB/s after 10 s idle took %v, want %v (1 s less one quantum)", total, want)
	}
	l2 := &link{quantum: 1000}
	if d := l2.reserve(1<<20, t0); d != 0 {
		t.Errorf("uncapped link waited %v", d)
	}
	l2.pausedTo = t0.Add(2 * time.Second)
	if d := l2.reserve(10, t0.Add(500*time.Millisecond)); d != 1500*time.Millisecond {
		t.Errorf("paused link waited %v, want 1.5s", d)
	}
}

// events collects the publisher's log events with their arrival time.
type events struct {
	mu  sync.Mutex
	evs []report.Event
	at  []time.Time
}

func (e *events) Log(ev report.Event) {
	e.mu.Lock()
	e.evs, e.at = append(e.evs, ev), append(e.at, time.Now())
	e.mu.Unlock()
}

// stats returns push_stats logged in (from, to].
func (e *events) stats(from, to time.Time) []report.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []report.Event
	for i, ev := range e.evs {
		if ev["log_type"] == "push_stats" && e.at[i].After(from) && !e.at[i].After(to) {
			out = append(out, ev)
		}
	}
	return out
}

// wire records what the server received: each tag's arrival and the
// connection's byte count sampled every 100 ms.
type wire struct {
	mu      sync.Mutex
	arrive  []time.Time
	video   []time.Time
	samples []wireSample // bytes in, over time
	stats   func() rtmp.Stats
	done    chan struct{}
}

type wireSample struct {
	at    time.Time
	bytes int64
}

func (w *wire) Publish(ctx context.Context, info rtmp.PublishInfo) (rtmp.Sink, error) {
	w.mu.Lock()
	w.stats = info.Stats
	w.mu.Unlock()
	go func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.done:
				return
			case now := <-tk.C:
				b := info.Stats().BytesIn
				w.mu.Lock()
				w.samples = append(w.samples, wireSample{now, b})
				w.mu.Unlock()
			}
		}
	}()
	return w, nil
}

func (w *wire) WriteTag(t *flv.Tag) error {
	now := time.Now()
	w.mu.Lock()
	w.arrive = append(w.arrive, now)
	if t.IsVideo() && !t.IsSequenceHeader() {
		w.video = append(w.video, now)
	}
	w.mu.Unlock()
	return nil
}

func (w *wire) Close(error) {}

// bytesAt is the byte count of the last sample at or before at.
func (w *wire) bytesAt(at time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b int64
	for _, s := range w.samples {
		if s.at.After(at) {
			break
		}
		b = s.bytes
	}
	return b
}

// kbps is the wire rate between two times, from the samples.
func (w *wire) kbps(from, to time.Time) float64 {
	return float64(w.bytesAt(to)-w.bytesAt(from)) * 8 / 1000 / to.Sub(from).Seconds()
}

// maxGap is the longest time without an arrival in [from, to].
func maxGap(ts []time.Time, from, to time.Time) time.Duration {
	var g time.Duration
	prev := from
	for _, t := range ts {
		if t.Before(from) || t.After(to) {
			continue
		}
		g = max(g, t.Sub(prev))
		prev = t
	}
	return max(g, to.Sub(prev))
}

func avg(evs []report.Event, key string) float64 {
	s := 0.0
	for _, e := range evs {
		s += toFloat(e[key])
	}
	return s / float64(max(len(evs), 1))
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return 0
}

// TestThrottleAgainstServer pushes a 1500 kbit/s stream to a real RTMP
// server, caps the uplink at 700 kbit/s for 12 s, then lifts the cap: the
// server receives ~700 kbit/s with no long silence, push_stats agree and
// count dropped frames, and after the cap the rate returns to the stream's
// without a burst beyond what was queued.
func TestThrottleAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("a 24 s real-time push")
	}
	const nominal, capKbps = 1500, 700
	w := &wire{done: make(chan struct{})}
	defer close(w.done)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &rtmp.Server{Handler: w}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, rtmp.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()

	evs := &events{}
	p := New(Config{Room: "room2", PushURL: "rtmp://" + l.Addr().String() + "/live/room2", BitrateKbps: nominal, StatsEvery: time.Second}, evs, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan int, 1)
	go func() { ran <- p.Run(ctx) }()

	sleep := func(d time.Duration) time.Time {
		select {
		case <-time.After(d):
		case code := <-ran:
			t.Fatalf("push ended early with code %d: %v", code, evs.evs)
		}
		return time.Now()
	}
	t0 := sleep(4 * time.Second)
	p.SetDegrade(Degrade{ThrottleKbps: capKbps})
	sleep(12 * time.Second)
	p.SetDegrade(Degrade{})
	t1 := time.Now()
	t2 := sleep(8 * time.Second)
	cancel()
	if code := <-ran; code != CodeOK {
		t.Errorf("push stopped with %d", code)
	}

	// The wire under the cap, skipping the first second (the switch).
	capped := w.kbps(t0.Add(time.Second), t1)
	stats := evs.stats(t0.Add(1500*time.Millisecond), t1)
	got := avg(stats, "bitrate_kbps")
	dropped := 0.0
	for _, e := range stats {
		dropped += toFloat(e["dropped_frames"])
	}
	w.mu.Lock()
	gap, vgap := maxGap(w.arrive, t0, t1), maxGap(w.video, t0, t1)
	w.mu.Unlock()
	t.Logf("capped at %d: wire %.0f kbit/s; push_stats bitrate %.0f, fps %.1f, dropped %.0f, send_buffer_ms %.0f (%d stats); longest silence %v, longest without video %v",
		capKbps, capped, got, avg(stats, "fps"), dropped, avg(stats, "send_buffer_ms"), len(stats), gap.Round(time.Millisecond), vgap.Round(time.Millisecond))
	if capped < 0.85*capKbps || capped > 1.15*capKbps {
		t.Errorf("the server received %.0f kbit/s under a %d kbit/s cap, want within 15%%", capped, capKbps)
	}
	if len(stats) < 8 || got < 0.85*capKbps || got > 1.15*capKbps {
		t.Errorf("push_stats bitrate %.0f kbit/s over %d stats under a %d kbit/s cap, want within 15%%", got, len(stats), capKbps)
	}
	if dropped == 0 {
		t.Error("no dropped frames with a 1500 kbit/s stream on a 700 kbit/s link")
	}
	if gap > 1200*time.Millisecond {
		t.Errorf("the server received nothing for %v under the cap: the link froze", gap)
	}

	// After the cap: the stream's rate again, and no burst beyond the
	// queued buffer (at most DropAfter of video plus a keyframe).
	after := w.kbps(t1.Add(2*time.Second), t2)
	astats := evs.stats(t1.Add(2500*time.Millisecond), t2)
	arate := avg(astats, "bitrate_kbps")
	peak := 0.0
	for at := t1; !at.Add(time.Second).After(t2); at = at.Add(100 * time.Millisecond) {
		peak = max(peak, w.kbps(at, at.Add(time.Second)))
	}
	t.Logf("after the cap: wire %.0f kbit/s, push_stats bitrate %.0f, fps %.1f, dropped %.0f; peak 1 s wire rate %.0f kbit/s",
		after, arate, avg(astats, "fps"), avg(astats, "dropped_frames"), peak)
	if after < 0.85*nominal || after > 1.15*nominal || arate < 0.85*nominal || arate > 1.15*nominal {
		t.Errorf("after the cap the rate is %.0f kbit/s on the wire, %.0f in push_stats; want within 15%% of %d", after, arate, nominal)
	}
	if peak > 2.5*nominal {
		t.Errorf("a %.0f kbit/s burst after the cap was lifted", peak)
	}
}
