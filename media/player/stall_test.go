package player

import (
	"context"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/hls"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
)

// arrival is one video frame reaching the player: when (after the play's
// start) and its media time.
type arrival struct {
	at time.Duration
	ts int64
}

const simFrameMs = 40 // 25 fps; a keyframe every 25 frames (1 s)

// liveFrames is a live stream as an edge delivers it: frame i (media time
// 40·i ms) becomes available at avail(ts) and is delivered then.
func liveFrames(until time.Duration, avail func(ts int64) time.Duration) []arrival {
	var out []arrival
	for ts := int64(0); durMs(ts) < until; ts += simFrameMs {
		out = append(out, arrival{at: avail(ts), ts: ts})
	}
	return out
}

// segmentAvail delivers media in segments of seg ms, each whole at
// once: segment k is available at the end of its media plus delay(k),
// minus hold (the media the play starts behind the live edge).
func segmentAvail(seg, hold int64, delay func(k int64) time.Duration) func(int64) time.Duration {
	return func(ts int64) time.Duration {
		k := ts / seg
		return max(0, durMs((k+1)*seg-hold)+delay(k))
	}
}

// simulate plays arrivals through a session on a fake clock, 5 ms a step,
// for watch after the first frame, and returns its events.
func simulate(t *testing.T, format string, arrivals []arrival, watch time.Duration) *capture {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	t0 := now
	rep := &capture{}
	cfg := Config{SessionID: "sim", Format: format, Reporter: rep, Duration: watch,
		HeartbeatEvery: time.Second, Clock: func() time.Time { return now }}.withDefaults()
	s := newSession(context.Background(), cfg)
	s.sd = &scheduler.StreamData{StreamID: "live/sim"}
	s.rend = &scheduler.RenditionLines{Name: "source", Width: 426, Height: 240}
	s.att = &attempt{line: LineMain, start: now, cancel: func() {}}
	s.attempts, s.playStart = 1, now
	next := 0
	for step := 0; !s.done; step++ {
		if step > 1_000_000 {
			t.Fatal("simulation did not end")
		}
		for next < len(arrivals) && !t0.Add(arrivals[next].at).After(now) {
			a := arrivals[next]
			key := a.ts%1000 == 0
			s.handle(msg{kind: msgFrame, at: now, f: frame{kind: kindVideo, ts: a.ts, picture: true, key: key,
				config: key, needConfig: true, codec: "h264", at: now}})
			next++
		}
		s.tick(now)
		now = now.Add(5 * time.Millisecond)
	}
	return rep
}

// TestStallModel: a stall is playback waiting on an empty buffer, whatever
// the delivery pattern; buffer level is media time ahead of the playhead;
// stall events, heartbeats and play_stop agree.
func TestStallModel(t *testing.T) {
	t.Parallel()
	onTime := func(int64) time.Duration { return 0 }
	jitter := func(k int64) time.Duration { return time.Duration(k*7919%300) * time.Millisecond }
	for _, tc := range []struct {
		name     string
		format   string
		arrivals []arrival
		stallMs  [2]int64 // the one stall's duration bounds; zero for no stall
		minBuf   int64    // lowest heartbeat buffer_ms
	}{{
		// HLS three segments behind the live edge (RFC 8216 6.3.3), each
		// segment arriving whole, late by up to 300 ms.
		name: "hls bursts, healthy buffer", format: FormatHLS,
		arrivals: liveFrames(20*time.Second, segmentAvail(2000, 6000, jitter)),
		minBuf:   3500,
	}, {
		// One segment behind the live edge, each next segment arriving
		// exactly as the last frame of the previous one is shown: the
		// buffer runs down to the last frame's duration, never out.
		name: "hls bursts at the live edge, on time", format: FormatHLS,
		arrivals: liveFrames(20*time.Second, segmentAvail(2000, 2000, onTime)),
	}, {
		// HTTP-FLV from a 1 s GOP cache, then frame by frame in real time.
		name: "flv steady", format: FormatFLV,
		arrivals: liveFrames(20*time.Second, func(ts int64) time.Duration { return max(0, durMs(ts-1000)) }),
		minBuf:   900,
	}, {
		// The edge sends nothing from 5 s to 8 s, then the backlog: the 1 s
		// buffer runs out at ~6 s, playback waits ~2 s on an empty buffer.
		name: "flv gap longer than the buffer", format: FormatFLV,
		arrivals: liveFrames(20*time.Second, func(ts int64) time.Duration {
			at := max(0, durMs(ts-1000))
			if at >= 5*time.Second && at < 8*time.Second {
				at = 8 * time.Second
			}
			return at
		}),
		stallMs: [2]int64{1950, 2010},
	}, {
		// The fourth segment comes 700 ms late to a play one segment
		// behind the live edge: one stall of about that.
		name: "hls segment later than the buffer", format: FormatHLS,
		arrivals: liveFrames(20*time.Second, segmentAvail(2000, 2000, func(k int64) time.Duration {
			if k == 3 {
				return 700 * time.Millisecond
			}
			return 0
		})),
		stallMs: [2]int64{640, 710},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := simulate(t, tc.format, tc.arrivals, 15*time.Second)
			stalls := rep.of("stall")
			var total int64
			for _, s := range stalls {
				d := num(t, s, "duration_ms")
				total += d
				if d < tc.stallMs[0] || d > tc.stallMs[1] || num(t, s, "buffer_ms_before") != 0 || s["cause"] != "network" {
					t.Errorf("stall %v, want one of %v ms with buffer_ms_before 0", s, tc.stallMs)
				}
			}
			want := 0
			if tc.stallMs[1] > 0 {
				want = 1
			}
			if len(stalls) != want {
				t.Errorf("%d stalls, want %d:\n%s", len(stalls), want, describe(stalls))
			}
			var hbCount, hbMs int64
			hbs := rep.of("heartbeat")
			if len(hbs) < 15 {
				t.Errorf("%d heartbeats in 15 s", len(hbs))
			}
			for _, hb := range hbs {
				hbCount += num(t, hb, "stall_count")
				hbMs += num(t, hb, "stall_ms")
				if b := num(t, hb, "buffer_ms"); b < tc.minBuf {
					t.Errorf("heartbeat buffer_ms %d, want ≥ %d: %v", b, tc.minBuf, hb)
				}
			}
			stop := rep.of("play_stop")
			if len(stop) != 1 || num(t, stop[0], "code") != 0 {
				t.Fatalf("play_stop %v", stop)
			}
			if n, ms := num(t, stop[0], "stall_count"), num(t, stop[0], "stall_total_ms"); n != int64(len(stalls)) || ms != total || hbCount != n || hbMs != ms {
				t.Errorf("stall events: %d, %d ms; heartbeats: %d, %d ms; play_stop: %d, %d ms", len(stalls), total, hbCount, hbMs, n, ms)
			}
		})
	}
}

// TestStartSegment: a live HLS play starts three target durations from the
// end of the playlist (RFC 8216 6.3.3), and waits while a just-started
// playlist is shorter than that.
func TestStartSegment(t *testing.T) {
	t.Parallel()
	pl := func(first uint64, durs ...time.Duration) hls.Playlist {
		p := hls.Playlist{TargetDuration: 2 * time.Second, MediaSequence: first}
		for i, d := range durs {
			p.Segments = append(p.Segments, hls.MediaSegment{Sequence: first + uint64(i), Duration: d})
		}
		return p
	}
	const s2, s1 = 2 * time.Second, time.Second
	ended := pl(0, s2)
	ended.Ended = true
	for _, tc := range []struct {
		name  string
		pl    hls.Playlist
		first uint64 // media sequence of the first playlist loaded
		seq   uint64
		ok    bool
	}{
		{"empty, still growing", pl(0), 0, 0, false},
		{"one segment, still growing", pl(0, s2), 0, 0, false},
		{"two segments, still growing", pl(0, s2, s2), 0, 0, false},
		{"three segments: the first", pl(0, s2, s2, s2), 0, 0, true},
		{"six segments: three from the end", pl(10, s2, s2, s2, s2, s2, s2), 10, 13, true},
		{"short segments: as many as three target durations", pl(0, s1, s1, s1, s1, s1, s1, s1), 0, 1, true},
		{"a short window that slides: its first segment", pl(5, s2, s2), 4, 5, true},
		{"a finished playlist: its first segment", ended, 0, 0, true},
	} {
		seq, ok := startSegment(tc.pl, tc.first)
		if seq != tc.seq || ok != tc.ok {
			t.Errorf("%s: start at %d (ok %v), want %d (ok %v)", tc.name, seq, ok, tc.seq, tc.ok)
		}
	}
}
