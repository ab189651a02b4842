package player

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/dns"
	"github.com/lastmile-qoe/lastmile/media/report"
)

var commonFields = []string{
	"log_type", "ts", "source", "app_id", "device_id", "user_id", "session_id", "room_id", "stream_id",
	"region", "isp", "cdn", "node_id", "protocol", "rendition", "codec", "app_version", "os", "network",
}

func TestPlayFLV(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	rep := &capture{}
	cfg := st.config(rep)
	st.edge.setFault(mainHost, edgeFault{burst: time.Second}) // a GOP cache: quick start
	res := Play(context.Background(), cfg)

	evs := rep.events()
	checkValid(t, evs)
	if res.Code != 0 || !res.FirstFrame || res.Line != LineMain || res.CDN != "cdn-a" || res.Node != "edge-a-south-1" {
		t.Fatalf("result %+v\nevents:\n%s", res, describe(evs))
	}

	// Order: play_start, first_frame, heartbeats, play_stop.
	types := rep.types()
	if len(types) < 4 || types[0] != "play_start" || types[1] != "first_frame" || types[len(types)-1] != "play_stop" {
		t.Fatalf("event order %v", types)
	}
	for _, typ := range types[2 : len(types)-1] {
		if typ != "heartbeat" {
			t.Fatalf("healthy play emitted %s: %v", typ, types)
		}
	}

	// Common fields on every event, one session id throughout.
	var lastTS int64
	for _, ev := range evs {
		for _, f := range commonFields {
			if _, ok := ev[f]; !ok {
				t.Errorf("%s lacks %s", ev["log_type"], f)
			}
		}
		want := map[string]any{
			"session_id": res.SessionID, "device_id": "d42", "user_id": "u7", "room_id": testRoom,
			"stream_id": "live/" + testRoom, "source": "client", "protocol": "http-flv", "rendition": "source",
			"cdn": "cdn-a", "node_id": "edge-a-south-1", "region": "south", "app_version": "1.2.0", "app_id": "app1",
		}
		for k, v := range want {
			if ev[k] != v {
				t.Errorf("%s.%s = %v, want %v", ev["log_type"], k, ev[k], v)
			}
		}
		if ts := num(t, ev, "ts"); ts < lastTS {
			t.Errorf("%s ts %d before the previous event's %d", ev["log_type"], ts, lastTS)
		} else {
			lastTS = ts
		}
	}
	if res.SessionID == "" {
		t.Fatal("no session id generated")
	}

	ps := rep.of("play_start")[0]
	if ps["line"] != "main" || num(t, ps, "attempt") != 0 || !strings.Contains(ps["url"].(string), "/live/r1.flv?") {
		t.Errorf("play_start %v", ps)
	}
	if _, ok := ps["schedule_ms"]; !ok {
		t.Error("play_start lacks schedule_ms")
	}

	// first_frame: every phase measured, and they add up to total_ms.
	ff := rep.of("first_frame")[0]
	var sum int64
	for _, p := range phases {
		v := num(t, ff, p+"_ms")
		if v < 0 {
			t.Errorf("%s_ms = %d", p, v)
		}
		sum += v
		if res.FirstFrameMs[p] != v {
			t.Errorf("Result.FirstFrameMs[%s] = %d, event says %d", p, res.FirstFrameMs[p], v)
		}
	}
	if total := num(t, ff, "total_ms"); total != sum || total != res.FirstFrameMs["total"] {
		t.Errorf("total_ms %d, phases sum to %d, Result says %d", total, sum, res.FirstFrameMs["total"])
	}
	if num(t, ff, "first_decode_ms") < 8 || num(t, ff, "first_render_ms") < 4 {
		t.Errorf("decode/render not modelled: %v", ff)
	}
	if ff["server_ip"] != "127.0.0.1" || ff["edge_cached"] != true || ff["codec"] != "h264" {
		t.Errorf("first_frame %v", ff)
	}

	// The edge saw the session id in CMCD, in the query and the header, on
	// a URL whose signature still holds.
	reqs := st.edge.seen()
	if len(reqs) != 1 {
		t.Fatalf("edge saw %d requests, want 1: %+v", len(reqs), reqs)
	}
	if r := reqs[0]; r.querySID != res.SessionID || r.hdrSID != res.SessionID || !r.signatureVerified || r.host != mainHost {
		t.Errorf("edge request %+v, session %s", r, res.SessionID)
	}

	// Heartbeats every second from the first frame, then one for the rest.
	hbs := rep.of("heartbeat")
	if len(hbs) < 3 {
		t.Fatalf("%d heartbeats in 3 s at 1 s", len(hbs))
	}
	var hbBytes, hbInterval int64
	firstTS := num(t, ff, "ts")
	for i, hb := range hbs {
		iv := num(t, hb, "interval_ms")
		hbInterval += iv
		hbBytes += num(t, hb, "bytes")
		if i < 3 {
			if iv < 900 || iv > 1300 {
				t.Errorf("heartbeat %d interval %d ms, want ≈1000", i, iv)
			}
			if at := num(t, hb, "ts") - firstTS; at < int64(i+1)*1000-50 || at > int64(i+1)*1000+300 {
				t.Errorf("heartbeat %d at +%d ms after first frame", i, at)
			}
			if fps := hb["fps"].(float64); fps < 5 || fps > 45 { // wide: a loaded CI machine delays frames
				t.Errorf("heartbeat %d fps %v, stream is 25", i, fps)
			}
			if kbps := hb["bitrate_kbps"].(float64); kbps < 100 || kbps > 1000 {
				t.Errorf("heartbeat %d bitrate %v kbps, stream is ≈270", i, kbps)
			}
			if lat := num(t, hb, "latency_ms"); lat < 800 || lat > 3000 {
				t.Errorf("heartbeat %d latency %d ms; the GOP burst alone puts the player 1 s behind live", i, lat)
			}
			if b := num(t, hb, "buffer_ms"); b < 200 || b > 2500 {
				t.Errorf("heartbeat %d buffer %d ms", i, b)
			}
		}
		if hb["state"] != "playing" || num(t, hb, "stall_count") != 0 || num(t, hb, "stall_ms") != 0 {
			t.Errorf("heartbeat %d %v", i, hb)
		}
	}
	if hbInterval < 2950 || hbInterval > 3300 {
		t.Errorf("heartbeats cover %d ms of a 3 s watch", hbInterval)
	}

	stop := rep.of("play_stop")[0]
	if num(t, stop, "code") != 0 || stop["first_frame_blocked"] != "" || num(t, stop, "stall_count") != 0 {
		t.Errorf("play_stop %v", stop)
	}
	if d := num(t, stop, "play_duration_ms"); d < 3000 || d > 4500 {
		t.Errorf("play_duration_ms %d for a 3 s watch", d)
	}
	if b := num(t, stop, "bytes"); b < hbBytes || b != res.Bytes {
		t.Errorf("play_stop bytes %d, heartbeats %d, Result %d", b, hbBytes, res.Bytes)
	}
	if _, ok := stop["latency_ms"]; !ok {
		t.Error("play_stop lacks latency_ms")
	}
}

func TestDNSFailureSwitchesToBackup(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.dns.SetFault(dns.Fault{Suffix: "cdn-a.lastmile.test", Fail: true})
	rep := &capture{}
	cfg := st.config(rep)
	cfg.Duration = time.Second
	res := Play(context.Background(), cfg)
	checkValid(t, rep.events())

	types := rep.types()
	if want := []string{"play_start", "play_stop", "play_start", "first_frame"}; len(types) < 5 || !slices.Equal(types[:4], want) || types[len(types)-1] != "play_stop" {
		t.Fatalf("events %v", types)
	}
	starts, stops := rep.of("play_start"), rep.of("play_stop")
	if starts[0]["line"] != "main" || starts[1]["line"] != "backup" || num(t, starts[1], "attempt") != 1 {
		t.Errorf("play_starts %v", starts)
	}
	if num(t, stops[0], "code") != CodeDNS || stops[0]["first_frame_blocked"] != "dns" || stops[0]["cdn"] != "cdn-a" {
		t.Errorf("failed attempt's play_stop %v", stops[0])
	}
	if !strings.Contains(stops[0]["reason"].(string), mainHost) {
		t.Errorf("reason %q does not name the host", stops[0]["reason"])
	}
	if num(t, stops[1], "code") != 0 || stops[1]["cdn"] != "cdn-b" {
		t.Errorf("final play_stop %v", stops[1])
	}
	if ff := rep.of("first_frame")[0]; ff["cdn"] != "cdn-b" || ff["node_id"] != "edge-b-south-1" {
		t.Errorf("first_frame %v", ff)
	}
	if res.Code != 0 || !res.FirstFrame || res.Line != LineBackup || res.Attempts != 2 {
		t.Errorf("result %+v", res)
	}
}

func TestHTTPErrorSwitchesToBackup(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.edge.setFault(mainHost, edgeFault{status: 503})
	rep := &capture{}
	cfg := st.config(rep)
	cfg.Duration = time.Second
	res := Play(context.Background(), cfg)
	checkValid(t, rep.events())

	stops := rep.of("play_stop")
	if len(stops) != 2 {
		t.Fatalf("events %v", rep.types())
	}
	// The edge answered (first packet came) but with an error, not video.
	if num(t, stops[0], "code") != CodeHTTPStatus || stops[0]["first_frame_blocked"] != "video_first_packet" ||
		!strings.Contains(stops[0]["reason"].(string), "503") {
		t.Errorf("failed attempt's play_stop %v", stops[0])
	}
	if res.Code != 0 || res.Line != LineBackup || !res.FirstFrame {
		t.Errorf("result %+v", res)
	}
	reqs := st.edge.seen()
	if len(reqs) != 2 || reqs[0].host != mainHost || reqs[1].host != backHost || reqs[1].querySID != res.SessionID {
		t.Errorf("edge requests %+v", reqs)
	}
}

// An edge that stops sending for 2 s mid-play: the buffer drains, the
// player stalls, and resumes when media flows again.
func TestStallWhenEdgeStopsSending(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	const gap = 2 * time.Second
	st.edge.setFault(mainHost, edgeFault{pauseAt: 1500 * time.Millisecond, pauseFor: gap})
	rep := &capture{}
	cfg := st.config(rep)
	cfg.Duration = 4500 * time.Millisecond
	res := Play(context.Background(), cfg)
	checkValid(t, rep.events())

	stalls := rep.of("stall")
	if len(stalls) != 1 {
		t.Fatalf("%d stalls, want 1; events %v", len(stalls), rep.types())
	}
	s := stalls[0]
	d, before := num(t, s, "duration_ms"), num(t, s, "buffer_ms_before")
	// The stall lasts the gap less what the buffer covered (the start
	// threshold, 500 ms, and a frame), and begins on an empty buffer.
	if d < 1000 || d > int64(gap/time.Millisecond) || s["cause"] != "network" || before != 0 {
		t.Errorf("stall %v for a %v gap", s, gap)
	}
	// Heartbeats and play_stop account the same stall.
	var hbStalls, hbStallMs int64
	sawStalled := false
	for _, hb := range rep.of("heartbeat") {
		hbStalls += num(t, hb, "stall_count")
		hbStallMs += num(t, hb, "stall_ms")
		sawStalled = sawStalled || hb["state"] == "stalled"
	}
	stop := rep.of("play_stop")[0]
	if hbStalls != 1 || hbStallMs != d || num(t, stop, "stall_count") != 1 || num(t, stop, "stall_total_ms") != d {
		t.Errorf("stall %d ms; heartbeats count %d stalls, %d ms; play_stop %v", d, hbStalls, hbStallMs, stop)
	}
	if !sawStalled {
		t.Error("no heartbeat during the stall said state=stalled")
	}
	if res.Code != 0 || res.Stalls != 1 || res.StallMs != d {
		t.Errorf("result %+v", res)
	}
}

// An edge cutting the connection mid-play: the player reconnects on the
// backup line and the play goes on, with one play_stop at the end.
func TestReconnectAfterReadError(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.edge.setFault(mainHost, edgeFault{abortAt: 1500 * time.Millisecond})
	st.edge.setFault(backHost, edgeFault{burst: time.Second})
	rep := &capture{}
	cfg := st.config(rep)
	cfg.Duration = 3500 * time.Millisecond
	res := Play(context.Background(), cfg)
	checkValid(t, rep.events())

	types := rep.types()
	starts := rep.of("play_start")
	if len(starts) != 2 || starts[1]["line"] != "backup" || num(t, starts[1], "attempt") != 1 {
		t.Fatalf("events %v", types)
	}
	if n := len(rep.of("play_stop")); n != 1 || len(rep.of("first_frame")) != 1 {
		t.Fatalf("a reconnect is not a new play: events %v", types)
	}
	if res.Code != 0 || res.Line != LineBackup || res.CDN != "cdn-b" {
		t.Errorf("result %+v", res)
	}
	// Reopening the stream drops the buffer: the reconnect is a stall, short
	// since the backup edge has a GOP cache.
	stalls := rep.of("stall")
	if len(stalls) != 1 || stalls[0]["cause"] != "reconnect" || num(t, stalls[0], "duration_ms") > 1000 || stalls[0]["cdn"] != "cdn-b" {
		t.Errorf("stalls while reconnecting: %s", describe(stalls))
	}
	// The play went on after the reconnect: heartbeats from cdn-b show frames.
	var after int
	for _, hb := range rep.of("heartbeat") {
		if hb["cdn"] == "cdn-b" && hb["fps"].(float64) > 10 {
			after++
		}
	}
	if after == 0 {
		t.Errorf("no playback on the backup line: %s", describe(rep.of("heartbeat")))
	}
}

// No first frame in time: play_stop names the phase the player was stuck in.
func TestFirstFrameBlocked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		fault   func(st *stack)
		code    int
		blocked string
	}{
		{"dns never answers", func(st *stack) { st.dns.SetFault(dns.Fault{Suffix: "lastmile.test", Drop: true}) }, CodeFirstFrameTimeout, "dns"},
		{"edge refuses connections", func(st *stack) {
			st.dns.SetRecord(mainHost, net.IPv4(127, 0, 0, 2)) // nothing listens there
			st.dns.SetRecord(backHost, net.IPv4(127, 0, 0, 2))
		}, CodeConnect, "tcp_connect"},
		{"edge never answers", func(st *stack) {
			st.edge.setFault(mainHost, edgeFault{hang: true})
			st.edge.setFault(backHost, edgeFault{hang: true})
		}, CodeFirstFrameTimeout, "tcp_first_packet"},
		{"edge sends headers but no video", func(st *stack) {
			st.edge.setFault(mainHost, edgeFault{noVideo: true})
			st.edge.setFault(backHost, edgeFault{noVideo: true})
		}, CodeFirstFrameTimeout, "video_first_packet"},
		{"edge sends garbage", func(st *stack) {
			st.edge.setFault(mainHost, edgeFault{garbage: true})
			st.edge.setFault(backHost, edgeFault{garbage: true})
		}, CodeReadError, "video_first_packet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStack(t)
			tc.fault(st)
			rep := &capture{}
			cfg := st.config(rep)
			cfg.FirstFrameTimeout = time.Second
			cfg.MaxLineSwitches = 1
			start := time.Now()
			res := Play(context.Background(), cfg)
			checkValid(t, rep.events())

			if want := []string{"play_start", "play_stop", "play_start", "play_stop"}; !slices.Equal(rep.types(), want) {
				t.Fatalf("events %v, want %v\n%s", rep.types(), want, describe(rep.events()))
			}
			for i, stop := range rep.of("play_stop") {
				if num(t, stop, "code") != int64(tc.code) || stop["first_frame_blocked"] != tc.blocked {
					t.Errorf("play_stop %v, want code %d blocked %s", stop, tc.code, tc.blocked)
				}
				// One view: the first stop is retried, the last ends it.
				if stop["will_retry"] != (i == 0) {
					t.Errorf("play_stop %d will_retry %v", i, stop["will_retry"])
				}
				if d := num(t, stop, "play_duration_ms"); d > 1500 {
					t.Errorf("attempt lasted %d ms with a 1 s first-frame timeout", d)
				}
			}
			if res.Code != tc.code || res.Blocked != tc.blocked || res.FirstFrame || res.Attempts != 2 {
				t.Errorf("result %+v", res)
			}
			if el := time.Since(start); el > 4*time.Second {
				t.Errorf("Play took %v", el)
			}
		})
	}
}

func TestDecodeModel(t *testing.T) {
	t.Parallel()
	t.Run("first decode fails", func(t *testing.T) {
		t.Parallel()
		st := newStack(t)
		rep := &capture{}
		cfg := st.config(rep)
		cfg.Decode.FailFirstDecode = true
		res := Play(context.Background(), cfg)
		checkValid(t, rep.events())
		// Another line would not fix the decoder: no switch.
		if !slices.Equal(rep.types(), []string{"play_start", "play_stop"}) || res.Code != CodeDecode || res.Blocked != "first_decode" {
			t.Fatalf("result %+v events %s", res, describe(rep.events()))
		}
	})
	t.Run("render stalls", func(t *testing.T) {
		t.Parallel()
		st := newStack(t)
		rep := &capture{}
		cfg := st.config(rep)
		cfg.Duration = 2500 * time.Millisecond
		cfg.Decode.RenderStallEvery = time.Second
		cfg.Decode.RenderStallFor = 400 * time.Millisecond
		var seen []Frame
		cfg.Decode.Hook = func(f Frame) Fault { seen = append(seen, f); return Fault{} }
		res := Play(context.Background(), cfg)
		checkValid(t, rep.events())
		rs := rep.of("render_stall")
		if len(rs) < 1 || res.RenderStalls != len(rs) || res.Code != 0 {
			t.Fatalf("result %+v events %v", res, rep.types())
		}
		stopTS := num(t, rep.of("play_stop")[0], "ts")
		full := 0
		for _, r := range rs {
			d := num(t, r, "duration_ms")
			if r["cause"] != "decoder" || d <= 0 || d > 400 {
				t.Errorf("render_stall %v", r)
			}
			if d < 400 { // only the end of the play may cut one short
				if end := num(t, r, "ts") + d; end < stopTS-5 {
					t.Errorf("render_stall of %d ms ended at %d, before the play did (%d)", d, end, stopTS)
				}
				continue
			}
			full++
			// 400 ms at 25 fps: about 10 frames dropped.
			if n := num(t, r, "dropped_frames"); n < 7 || n > 11 {
				t.Errorf("dropped %d frames in a 400 ms render stall at 25 fps", n)
			}
		}
		if full == 0 {
			t.Errorf("no whole render stall: %s", describe(rs))
		}
		// Heartbeats and play_stop report the same render stalls.
		var n, ms, hbN, hbMs int64
		for _, r := range rs {
			n, ms = n+1, ms+num(t, r, "duration_ms")
		}
		for _, hb := range rep.of("heartbeat") {
			hbN, hbMs = hbN+num(t, hb, "render_stall_count"), hbMs+num(t, hb, "render_stall_ms")
		}
		stop := rep.of("play_stop")[0]
		if hbN != n || hbMs != ms || num(t, stop, "render_stall_count") != n || num(t, stop, "render_stall_total_ms") != ms {
			t.Errorf("render stalls: %d of %d ms; heartbeats %d of %d ms; play_stop %v", n, ms, hbN, hbMs, stop)
		}
		if len(rep.of("stall")) != 0 {
			t.Error("a render stall is not a rebuffering stall")
		}
		if len(seen) < 40 || seen[0].Index != 0 || !seen[0].Keyframe || seen[0].Width != 426 || seen[1].Index != 1 {
			t.Errorf("hook saw %d frames, first %+v", len(seen), seen[:min(2, len(seen))])
		}
	})
}

func TestViewerLeavesBeforeFirstFrame(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.edge.setFault(mainHost, edgeFault{hang: true})
	rep := &capture{}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := Play(ctx, st.config(rep))
	checkValid(t, rep.events())
	stops := rep.of("play_stop")
	if len(stops) != 1 || num(t, stops[0], "code") != 0 || stops[0]["first_frame_blocked"] != "tcp_first_packet" || stops[0]["reason"] != "user_exit" {
		t.Fatalf("events %s", describe(rep.events()))
	}
	if res.Code != 0 || res.Blocked != "tcp_first_packet" || res.Attempts != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestScheduleFailure(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	rep := &capture{}
	cfg := st.config(rep)
	cfg.Region = "mars"
	res := Play(context.Background(), cfg)
	checkValid(t, rep.events())
	stops := rep.of("play_stop")
	if !slices.Equal(rep.types(), []string{"play_start", "play_stop"}) || num(t, stops[0], "code") != CodeSchedule ||
		!strings.Contains(stops[0]["reason"].(string), "mars") {
		t.Fatalf("events %s", describe(rep.events()))
	}
	if res.Code != CodeSchedule || res.Blocked != "dns" {
		t.Errorf("result %+v", res)
	}

	cfg = st.config(rep)
	cfg.Rendition = "8k"
	if res := Play(context.Background(), cfg); res.Code != CodeSchedule || !strings.Contains(res.Reason, `"8k" not offered`) {
		t.Errorf("unknown rendition: %+v", res)
	}
}

func TestPlayHLS(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.edge.startHLS(t)
	rep := &capture{}
	cfg := st.config(rep)
	cfg.Format = FormatHLS
	cfg.Duration = 2500 * time.Millisecond
	// The packager has just started: the first playlist waits for its
	// first segment, and the play starts three target durations behind
	// the end of the playlist, so once three segments are out.
	cfg.FirstFrameTimeout = 8 * time.Second
	res := Play(context.Background(), cfg)
	evs := rep.events()
	checkValid(t, evs)
	if res.Code != 0 || !res.FirstFrame {
		t.Fatalf("result %+v\n%s", res, describe(evs))
	}
	// The stream is live: the first attempt starts, with no stall.
	if starts := rep.of("play_start"); res.Attempts != 1 || len(starts) != 1 || starts[0]["line"] != LineMain || len(rep.of("stall")) != 0 {
		t.Errorf("a live HLS play took %d attempts (%v), want 1 on the main line and no stall", res.Attempts, rep.types())
	}
	ff := rep.of("first_frame")[0]
	var sum int64
	for _, p := range phases {
		sum += num(t, ff, p+"_ms")
	}
	if num(t, ff, "total_ms") != sum || ff["protocol"] != "hls" || ff["codec"] != "h264" || ff["edge_cached"] != true {
		t.Errorf("first_frame %v", ff)
	}
	var frames float64
	for _, hb := range rep.of("heartbeat") {
		frames += hb["fps"].(float64) * float64(num(t, hb, "interval_ms")) / 1000
	}
	if frames < 40 {
		t.Errorf("%v frames shown in 2.5 s of HLS", frames)
	}
	// Playlist and segments all carried the session.
	reqs := st.edge.seen()
	segs := 0
	for _, r := range reqs {
		if r.querySID != res.SessionID || r.hdrSID != res.SessionID {
			t.Errorf("request without the session: %+v", r)
		}
		if strings.HasSuffix(r.path, ".ts") {
			segs++
		}
	}
	if segs == 0 {
		t.Errorf("no segment fetched: %+v", reqs)
	}
}

// Result and events agree for whatever Reporter is given; nil is fine.
func TestNilReporter(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	cfg := st.config(nil)
	cfg.Duration = 500 * time.Millisecond
	if res := Play(context.Background(), cfg); res.Code != 0 || !res.FirstFrame {
		t.Errorf("result %+v", res)
	}
}

var _ Reporter = (*report.Client)(nil)
