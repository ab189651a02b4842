package player

import (
	"context"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/clock"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

// keyStamper stamps keyframes with a capture time, as the publisher does.
type keyStamper struct{ tr clock.Tracker }

func (k *keyStamper) stamp(t *flv.Tag, capture time.Time) {
	k.tr.Capture(t)
	if t.IsFrame() && t.IsKeyframe() && k.tr.LenSize() > 0 {
		if out, ok := clock.Stamp(nil, t.Data, k.tr.LenSize(), capture.UnixMilli()); ok {
			t.Data = out
		}
	}
}

// TestLatencyFromStamp: with capture stamps 3 s older than the edge's live
// point (delay upstream of the edge, which the player cannot see by
// arrival times), every heartbeat's latency_ms is that delay plus the
// buffer. The live-edge estimate alone would report about the buffer.
func TestLatencyFromStamp(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	rep := &capture{}
	const upstream = 3 * time.Second
	st.edge.setFault(mainHost, edgeFault{burst: time.Second, stampAge: upstream})
	res := Play(context.Background(), st.config(rep))
	if res.Code != 0 || !res.FirstFrame {
		t.Fatalf("result %+v\n%s", res, describe(rep.events()))
	}
	hbs := rep.of("heartbeat")
	if len(hbs) < 2 {
		t.Fatalf("%d heartbeats", len(hbs))
	}
	for i, hb := range append(hbs, rep.of("play_stop")...) {
		src := hb
		if hb["log_type"] == "play_stop" {
			src = hbs[len(hbs)-1] // play_stop comes right after the last heartbeat
		}
		lat, buf := num(t, hb, "latency_ms"), num(t, src, "buffer_ms")
		// A margin for the event loop and the last frame's duration.
		if d := lat - buf - upstream.Milliseconds(); d < -300 || d > 300 {
			t.Errorf("%s %d: latency_ms %d, buffer %d ms: want buffer + %d ms ± 300", hb["log_type"], i, lat, buf, upstream.Milliseconds())
		}
	}
}
