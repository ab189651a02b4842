package trace

import (
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/localize"
)

// TestDiagnose: the verdict, phase, code and scope of each kind of session,
// from its events and its stream context, as seed 002's method reads them.
func TestDiagnose(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ff := func(ms, tcpFirstPacket int) Event {
		return tev("first_frame", at(ms), "total_ms", tcpFirstPacket+30, "dns_ms", 0, "tcp_connect_ms", 1,
			"tcp_first_packet_ms", tcpFirstPacket, "video_first_packet_ms", 2, "first_decode_ms", 20, "first_render_ms", 5,
			"protocol", "http-flv", "cdn", "cdn-b", "node_id", "edge-b-south-1")
	}
	start := tev("play_start", at(0), "node_id", "edge-a-south-1")
	stop := func(ms, code int, kv ...any) Event {
		return tev("play_stop", at(ms), append([]any{"code", code}, kv...)...)
	}
	push := func(ms int, fps float64, dropped int) Event {
		return tev("push_stats", at(ms), "bitrate_kbps", 1560.4, "fps", fps, "dropped_frames", dropped)
	}
	edge := func(ms, status, firstByte int) Event {
		return tev("edge_access", at(ms), "node_id", "edge-b-south-1", "http_status", status, "first_byte_ms", firstByte, "path", "/live/room1.flv")
	}
	cohort := &phaseMedians{Cohort: "protocol=http-flv cdn=cdn-b", Ms: map[string]int64{"dns": 0, "tcp_connect": 1, "tcp_first_packet": 1, "video_first_packet": 1, "first_decode": 20, "first_render": 5}}
	for _, c := range []struct {
		name                  string
		events, server, strm  []Event
		med                   *phaseMedians
		verdict, phase, scope string
		code                  int64 // -1: none
		recovered             bool
		evidence              string // a substring of the evidence texts
	}{
		{name: "clean", events: []Event{start, ff(30, 1), stop(8000, 0)}, strm: []Event{push(5000, 25, 0)},
			verdict: VerdictFine, code: -1},
		{name: "refused, recovered on the backup line",
			events:  []Event{start, stop(1, 1002, "first_frame_blocked", "tcp_connect", "node_id", "edge-a-south-1", "reason", "connection refused"), tev("play_start", at(2)), ff(20, 0), stop(8000, 0)},
			server:  []Event{edge(10, 200, 1)},   // the retry's, on edge-b-south-1
			strm:    []Event{push(1000, 2, 120)}, // the push side's trouble does not refuse connections
			verdict: VerdictFailed, phase: "tcp_connect", code: 1002, scope: localize.ScopeEdge, recovered: true, evidence: "edge-a-south-1 logged no request"},
		{name: "refused, the retry's play_start sorted before the failed attempt's stop",
			events:  []Event{tev("play_start", at(0), "node_id", "edge-b-south-1", "attempt", 1), start, stop(0, 1002, "first_frame_blocked", "tcp_connect", "node_id", "edge-a-south-1"), ff(20, 0), stop(8000, 0)},
			server:  []Event{edge(10, 200, 1)},
			verdict: VerdictFailed, phase: "tcp_connect", code: 1002, scope: localize.ScopeEdge, recovered: true, evidence: "edge-a-south-1 logged no request"},
		{name: "gave up waiting (code 0, blocked)",
			events:  []Event{start, stop(10000, 0, "first_frame_blocked", "video_first_packet")},
			verdict: VerdictSlowFirstFrame, phase: "video_first_packet", code: -1, scope: localize.ScopeEdge},
		{name: "left before the first frame (code 0, nothing blocked)", events: []Event{start, stop(9000, 0)},
			verdict: VerdictSlowFirstFrame, code: -1, scope: localize.ScopeUnknown},
		{name: "a first frame under SlowFirstFrameMs is not slow", events: []Event{start, ff(1999, 1969), stop(8000, 0)},
			verdict: VerdictFine, code: -1},
		{name: "slow edge first byte", events: []Event{start, ff(2030, 2001), stop(8000, 0)}, server: []Event{edge(10, 200, 2000)}, med: cohort,
			verdict: VerdictSlowFirstFrame, phase: "tcp_first_packet", code: -1, scope: localize.ScopeEdge, evidence: "first byte took 2,000 ms"},
		{name: "slow edge first byte, logged when the FLV response ended", events: []Event{start, ff(3030, 3001), stop(13000, 0)},
			server: []Event{edge(13000, 200, 3000)}, med: cohort,
			verdict: VerdictSlowFirstFrame, phase: "tcp_first_packet", code: -1, scope: localize.ScopeEdge, evidence: "edge-b-south-1 first byte took 3,000 ms"},
		{name: "slow first frame judged without a cohort: the longest phase", events: []Event{start, ff(2030, 2001), stop(8000, 0)},
			verdict: VerdictSlowFirstFrame, phase: "tcp_first_packet", code: -1, scope: localize.ScopeEdge},
		{name: "a phase normal for its cohort is not blamed",
			events:  []Event{start, tev("first_frame", at(2500), "total_ms", 2500, "tcp_first_packet_ms", 2000, "video_first_packet_ms", 480), stop(8000, 0)},
			med:     &phaseMedians{Ms: map[string]int64{"tcp_first_packet": 1900, "video_first_packet": 10}},
			verdict: VerdictSlowFirstFrame, phase: "video_first_packet", code: -1, scope: localize.ScopeEdge},
		{name: "stalls while the push side dropped frames",
			events:  []Event{start, ff(30, 1), tev("stall", at(20000), "duration_ms", 3000), stop(30000, 0, "stall_count", 1)},
			strm:    []Event{push(5000, 25, 0), push(15000, 7.6, 82), push(20000, 25, 0)},
			verdict: VerdictStalls, code: -1, scope: localize.ScopePush, evidence: "82 dropped frames, fps down to 7.6 (best 25)"},
		{name: "stalls while the push stopped",
			events:  []Event{start, ff(30, 1), tev("stall", at(20000), "duration_ms", 3000), stop(30000, 0)},
			strm:    []Event{push(5000, 25, 0), tev("push_stop", at(16000), "code", 2004, "reason", "disconnected (fault)")},
			verdict: VerdictStalls, code: -1, scope: localize.ScopePush, evidence: "code 2004"},
		{name: "stalls with a clean stream but a slow edge",
			events:  []Event{start, ff(30, 1), tev("stall", at(20000), "duration_ms", 3000), stop(30000, 0)},
			server:  []Event{edge(19000, 200, 3000)},
			strm:    []Event{push(5000, 25, 0), push(20000, 25, 0)},
			verdict: VerdictStalls, code: -1, scope: localize.ScopeEdge},
		{name: "stalls, everything clean: the viewer's side",
			events:  []Event{start, ff(30, 1), tev("stall", at(20000), "duration_ms", 3000), stop(30000, 0)},
			strm:    []Event{push(5000, 25, 0), push(20000, 25, 0)},
			verdict: VerdictStalls, code: -1, scope: localize.ScopeClient},
		{name: "push stall long before the viewer's stall does not count",
			events:  []Event{start, ff(30, 1), tev("stall", at(60000), "duration_ms", 1000), stop(70000, 0)},
			strm:    []Event{push(5000, 7, 80), push(60000, 25, 0)},
			verdict: VerdictStalls, code: -1, scope: localize.ScopeClient},
		{name: "render stalls only", events: []Event{start, ff(30, 1), tev("render_stall", at(3000), "duration_ms", 500), tev("render_stall", at(6000), "duration_ms", 500), stop(8000, 0)},
			verdict: VerdictRenderStallsOnly, code: -1, scope: localize.ScopeClient, evidence: "2 render stalls (1,000 ms)"},
		{name: "stalls beat render stalls", events: []Event{start, ff(30, 1), tev("render_stall", at(3000), "duration_ms", 500), tev("stall", at(6000), "duration_ms", 500), stop(8000, 0)},
			verdict: VerdictStalls, code: -1, scope: localize.ScopeClient},
		{name: "dns blocked", events: []Event{start, stop(3000, 1001, "first_frame_blocked", "dns")},
			verdict: VerdictFailed, phase: "dns", code: 1001, scope: localize.ScopeClient},
		{name: "first decode failed", events: []Event{start, stop(3000, 1005, "first_frame_blocked", "first_decode")},
			verdict: VerdictFailed, phase: "first_decode", code: 1005, scope: localize.ScopeClient},
		{name: "video_first_packet blocked while transcode failed",
			events:  []Event{start, stop(10000, 1004, "first_frame_blocked", "video_first_packet")},
			strm:    []Event{tev("transcode", at(5000), "rendition", "480p", "status", "error")},
			verdict: VerdictFailed, phase: "video_first_packet", code: 1004, scope: localize.ScopeTranscode, evidence: "transcode 480p error at 22:00:05"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Session{Kind: "play", AppID: "a", SessionID: "s", Events: c.events, ServerEvents: c.server, StreamEvents: c.strm}
			s.Start, s.End = c.events[0].TS, c.events[len(c.events)-1].TS
			s.Summary = summarizeSession(s)
			d := DefaultDiagnosisPlan.diagnose(s, c.med)
			code := int64(-1)
			if d.Code != nil {
				code = *d.Code
			}
			var texts []string
			for _, e := range d.Evidence {
				texts = append(texts, e.Text)
			}
			all := strings.Join(texts, " | ")
			if d.Verdict != c.verdict || d.Phase != c.phase || code != c.code || d.Scope != c.scope || d.Recovered != c.recovered ||
				!strings.Contains(all, c.evidence) {
				t.Errorf("got %s phase %q code %d scope %q recovered %v evidence %q\nwant %s phase %q code %d scope %q recovered %v evidence …%s…",
					d.Verdict, d.Phase, code, d.Scope, d.Recovered, all, c.verdict, c.phase, c.code, c.scope, c.recovered, c.evidence)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Thousands(0), "0"}, {Thousands(999), "999"}, {Thousands(1560), "1,560"}, {Thousands(-1234567), "-1,234,567"},
		{Round1(24.99997), "25"}, {Round1(1559.19), "1,559"}, {Round1(7.6000001), "7.6"}, {Round1(0.04), "0"}, {Round1(9.96), "10"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
