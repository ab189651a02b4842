package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/processor"
	"github.com/lastmile-qoe/lastmile/schemas"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// sharedStore returns the test binary's embedded store, migrated.
func sharedStore(tb testing.TB) *store.Embedded { return storetest.Embedded(tb) }

// tev builds a Event from a log_type, a time and fields given as Go
// values.
func tev(logType string, ts time.Time, kv ...any) Event {
	e := Event{TS: ts, LogType: logType}
	for i := 0; i < len(kv); i += 2 {
		b, _ := json.Marshal(kv[i+1])
		e.Fields = append(e.Fields, Field{Name: kv[i].(string), Value: b})
	}
	return e
}

func ptrI64(n int64) *int64 { return &n }
func ptrBool(b bool) *bool  { return &b }

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, c := range []struct {
		name   string
		events []Event
		server []Event
		want   Summary
	}{
		{
			name: "clean play",
			events: []Event{
				tev("play_start", at(0), "cdn", "cdn-a", "region", "north", "rendition", "720p", "protocol", "http-flv", "node_id", "client-says"),
				tev("first_frame", at(800), "total_ms", 800, "dns_ms", 10, "tcp_connect_ms", 20, "tcp_first_packet_ms", 30, "video_first_packet_ms", 400, "first_decode_ms", 300, "first_render_ms", 40),
				tev("play_stop", at(60_000), "code", 0, "play_duration_ms", 59_000, "stall_count", 0, "stall_total_ms", 0),
			},
			server: []Event{tev("edge_access", at(50), "node_id", "edge-7", "http_status", 200, "cache_hit", true)},
			want: Summary{ReachedFirstFrame: true, FirstFrameTotalMs: ptrI64(800), DNSMs: ptrI64(10), TCPConnectMs: ptrI64(20),
				TCPFirstPacketMs: ptrI64(30), VideoFirstPacketMs: ptrI64(400), FirstDecodeMs: ptrI64(300), FirstRenderMs: ptrI64(40),
				StopCode: ptrI64(0), ReportedStallCount: ptrI64(0), ReportedStallTotalMs: ptrI64(0),
				NodeID: "edge-7", CDN: "cdn-a", Region: "north", Rendition: "720p", Protocol: "http-flv",
				EdgeHTTPStatus: ptrI64(200), BackToSource: ptrBool(false), PlayDurationMs: 59_000},
		},
		{
			name: "three stalls, play_stop reports four",
			events: []Event{
				tev("play_start", at(0)),
				tev("first_frame", at(500), "total_ms", 500),
				tev("stall", at(10_000), "duration_ms", 500),
				tev("stall", at(20_000), "duration_ms", 700),
				tev("render_stall", at(25_000), "duration_ms", 90),
				tev("stall", at(30_000), "duration_ms", 900),
				tev("first_frame", at(40_000), "total_ms", 9999), // a second one does not count
				tev("play_stop", at(50_000), "code", 0, "stall_count", 4, "stall_total_ms", 2500),
			},
			want: Summary{ReachedFirstFrame: true, FirstFrameTotalMs: ptrI64(500), StopCode: ptrI64(0),
				StallCount: 3, StallTotalMs: 2100, ReportedStallCount: ptrI64(4), ReportedStallTotalMs: ptrI64(2500),
				RenderStallCount: 1, RenderStallTotalMs: 90, PlayDurationMs: 50_000},
		},
		{
			name: "blocked at tcp_connect",
			events: []Event{
				tev("play_start", at(0)),
				tev("play_stop", at(3000), "code", 1002, "first_frame_blocked", "tcp_connect", "reason", "connect timeout", "play_duration_ms", 3000),
			},
			want: Summary{StopCode: ptrI64(1002), StopReason: "connect timeout", FirstFrameBlocked: "tcp_connect", PlayDurationMs: 3000},
		},
		{
			name:   "back to source, cdn from the edge, one hit one miss",
			events: []Event{tev("play_start", at(0)), tev("first_frame", at(900), "total_ms", 900)},
			server: []Event{
				tev("edge_access", at(50), "node_id", "edge-1", "cdn", "cdn-b", "region", "south", "http_status", 200, "cache_hit", false, "back_to_source_ms", 180),
				tev("edge_access", at(5000), "node_id", "edge-2", "http_status", 502, "cache_hit", true),
			},
			want: Summary{ReachedFirstFrame: true, FirstFrameTotalMs: ptrI64(900), NodeID: "edge-1", CDN: "cdn-b", Region: "south",
				EdgeHTTPStatus: ptrI64(200), BackToSource: ptrBool(true), BackToSourceMs: ptrI64(180), PlayDurationMs: 900},
		},
		{
			name:   "push session",
			events: []Event{tev("push_start", at(0)), tev("push_stop", at(9000), "code", 3, "reason", "network", "duration_ms", 8800)},
			want:   Summary{StopCode: ptrI64(3), StopReason: "network", PlayDurationMs: 8800},
		},
		{name: "nothing", want: Summary{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := summarizeSession(&Session{Events: c.events, ServerEvents: c.server})
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(c.want)
			if !bytes.Equal(gb, wb) {
				t.Errorf("summary\n got %s\nwant %s", gb, wb)
			}
		})
	}
}

func TestTraceEventJSON(t *testing.T) {
	e := tev("stall", time.Date(2026, 11, 21, 10, 0, 0, 5e6, time.UTC), "app_id", "demo", "device_id", "d\"1", "duration_ms", 1200,
		"sample_rate", 1, "received_at", 1, "bitrate_kbps", 12.5, "cache_hit", false)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ts":"2026-11-21T10:00:00.005Z","log_type":"stall","device_id":"d\"1","duration_ms":1200,"bitrate_kbps":12.5,"cache_hit":false}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.TS.Equal(e.TS) || back.LogType != "stall" || back.Str("device_id") != `d"1` {
		t.Fatalf("round trip: %+v", back)
	}
	if n, ok := back.Int("duration_ms"); !ok || n != 1200 {
		t.Fatalf("duration_ms = %d, %v", n, ok)
	}
	if f, ok := back.Float("bitrate_kbps"); !ok || f != 12.5 {
		t.Fatalf("bitrate = %v", f)
	}
	if v, ok := back.Bool("cache_hit"); !ok || v {
		t.Fatal("cache_hit")
	}
	if _, ok := back.Int("missing"); ok {
		t.Fatal("missing field reads as present")
	}
}

// trow is one event to insert: the catalog fields by name, ts as time.
type trow map[string]any

var traceSeq int

// insertTraceRows inserts events as the processor would store them: trace_key
// from the catalog, received_at and sample_rate set.
func insertTraceRows(t testing.TB, st *store.Embedded, rows ...trow) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range rows {
		lt := schemas.Lookup(r["log_type"].(string))
		if lt == nil {
			t.Fatalf("unknown log_type %v", r["log_type"])
		}
		m := map[string]any{"source": lt.Source, "sample_rate": 1, schemas.ColTraceKey: r[lt.TraceKey]}
		for k, v := range r {
			if tv, ok := v.(time.Time); ok {
				v = tv.UnixMilli()
			}
			m[k] = v
		}
		if _, ok := m["event_id"]; !ok {
			traceSeq++
			m["event_id"] = "t-" + strconv.Itoa(traceSeq)
		}
		m["received_at"] = m["ts"]
		line, _ := json.Marshal(m)
		b.Write(line)
		b.WriteByte('\n')
	}
	indexTraceRows(t, st, b.Bytes())
	insertTraceNDJSON(t, st, schemas.EventsTable, b.Bytes())
}

// indexTraceRows writes the trace_sessions rows of NDJSON events as the
// processor does: each event cleaned by the catalog's Cleaner, then through
// its SessionIndex (the quantum included).
func indexTraceRows(t testing.TB, st *store.Embedded, ndjson []byte) {
	t.Helper()
	x := processor.NewSessionIndex(1 << 16)
	var c schemas.Cleaner
	var ev schemas.Event
	var fields []flatjson.Field
	for line := range bytes.Lines(ndjson) {
		var err error
		if fields, err = flatjson.ParseObject(fields, bytes.TrimSpace(line)); err != nil {
			t.Fatal(err)
		}
		if rej := c.Clean(fields, &ev); rej != nil {
			t.Fatalf("event %s rejected: %v", line, rej)
		}
		x.Observe(&ev)
	}
	if rec := x.Build(); rec != nil {
		defer rec.Release()
		if err := st.InsertArrow(context.Background(), schemas.TraceSessionsTable, rec, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// indexTraceSQL writes the trace_sessions rows of the events that cond
// selects with the backfill of migration 0005 (exact spans).
func indexTraceSQL(st *store.Embedded, cond string) error {
	ms, err := schemas.Migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		for _, q := range m.Statements {
			if strings.HasPrefix(q, "INSERT INTO trace_sessions") {
				return st.Exec(context.Background(), strings.Replace(q, "(SELECT count() FROM trace_sessions) = 0", cond, 1))
			}
		}
	}
	return fmt.Errorf("no backfill of trace_sessions in the migrations")
}

func insertTraceNDJSON(t testing.TB, st *store.Embedded, table string, data []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rows.ndjson")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertJSONEachRowFile(context.Background(), st, table, path); err != nil {
		t.Fatal(err)
	}
}

// traceScenario is a small, exact data set: one viewer's three plays, a second
// viewer whose edge went back to source, the broadcaster of their stream,
// the stream's server events, and a look-alike device in another app.
type traceScenario struct {
	base time.Time
	st   Store
}

var traceScenarioOnce struct {
	sync.Once
	s *traceScenario
}

func loadTraceScenario(t *testing.T) *traceScenario {
	st := sharedStore(t)
	traceScenarioOnce.Do(func() {
		base := time.Now().Add(-2 * time.Hour).Truncate(time.Second).UTC()
		at := func(d time.Duration) time.Time { return base.Add(d) }
		viewer := func(dev, user, sess string) trow {
			return trow{"app_id": "ua", "device_id": dev, "user_id": user, "session_id": sess, "room_id": "r1",
				"stream_id": "live/r1", "cdn": "cdn-a", "region": "north", "rendition": "720p"}
		}
		with := func(base trow, kv ...any) trow {
			r := trow{}
			for k, v := range base {
				r[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				r[kv[i].(string)] = kv[i+1]
			}
			return r
		}
		s1, s2, s3 := viewer("d1", "u1", "s1"), viewer("d1", "u1", "s2"), viewer("d1", "u1", "s3")
		s4 := viewer("d2", "u1", "s4")
		push := trow{"app_id": "ua", "device_id": "pub", "session_id": "p1", "room_id": "r1", "stream_id": "live/r1"}
		server := trow{"app_id": "ua", "stream_id": "live/r1", "room_id": "r1"}
		insertTraceRows(t, st,
			// s1: clean
			with(s1, "log_type", "play_start", "ts", at(0)),
			trow{"app_id": "ua", "log_type": "edge_access", "ts": at(50 * time.Millisecond), "session_id": "s1", "node_id": "edge-1", "http_status": 200, "cache_hit": true},
			with(s1, "log_type", "first_frame", "ts", at(800*time.Millisecond), "total_ms", 800, "dns_ms", 10),
			with(s1, "log_type", "heartbeat", "ts", at(30*time.Second), "buffer_ms", 2000),
			with(s1, "log_type", "play_stop", "ts", at(60*time.Second), "code", 0),
			// s2: three stalls
			with(s2, "log_type", "play_start", "ts", at(10*time.Minute)),
			with(s2, "log_type", "first_frame", "ts", at(10*time.Minute+time.Second), "total_ms", 1000),
			with(s2, "log_type", "stall", "ts", at(10*time.Minute+10*time.Second), "duration_ms", 500),
			with(s2, "log_type", "stall", "ts", at(10*time.Minute+20*time.Second), "duration_ms", 700),
			with(s2, "log_type", "stall", "ts", at(10*time.Minute+30*time.Second), "duration_ms", 900),
			with(s2, "log_type", "play_stop", "ts", at(10*time.Minute+40*time.Second), "code", 0, "stall_count", 3),
			// s3: blocked at tcp_connect
			with(s3, "log_type", "play_start", "ts", at(20*time.Minute)),
			with(s3, "log_type", "play_stop", "ts", at(20*time.Minute+5*time.Second), "code", 1002, "first_frame_blocked", "tcp_connect"),
			// the broadcaster and the stream around s4
			with(push, "log_type", "push_start", "ts", at(25*time.Minute)),
			with(push, "log_type", "push_stats", "ts", at(30*time.Minute+time.Second), "bitrate_kbps", 3000.5),
			with(server, "log_type", "transcode", "ts", at(30*time.Minute+2*time.Second), "rendition", "720p", "status", "ok"),
			with(server, "log_type", "transcode", "ts", at(30*time.Minute+2*time.Second), "rendition", "480p", "status", "lagging"),
			with(server, "log_type", "origin_stream", "ts", at(30*time.Minute+3*time.Second), "state", "stats"),
			with(push, "log_type", "push_stop", "ts", at(31*time.Minute), "code", 0),
			with(server, "log_type", "transcode", "ts", at(90*time.Minute), "rendition", "720p", "status", "ok"),
			// s4: back to source
			with(s4, "log_type", "play_start", "ts", at(30*time.Minute)),
			trow{"app_id": "ua", "log_type": "edge_access", "ts": at(30*time.Minute + 100*time.Millisecond), "session_id": "s4", "node_id": "edge-2",
				"http_status": 200, "cache_hit": false, "back_to_source_ms": 180},
			with(s4, "log_type", "first_frame", "ts", at(30*time.Minute+time.Second), "total_ms", 1000),
			with(s4, "log_type", "play_stop", "ts", at(30*time.Minute+40*time.Second), "code", 0),
			// s9: the player logs in while playing (no user_id before)
			trow{"app_id": "ua", "log_type": "play_start", "ts": at(40 * time.Minute), "device_id": "d9", "session_id": "s9", "stream_id": "live/r9"},
			trow{"app_id": "ua", "log_type": "first_frame", "ts": at(40*time.Minute + time.Second), "device_id": "d9", "session_id": "s9", "stream_id": "live/r9", "total_ms": 1000},
			trow{"app_id": "ua", "log_type": "heartbeat", "ts": at(41 * time.Minute), "device_id": "d9", "user_id": "u9", "session_id": "s9", "stream_id": "live/r9"},
			trow{"app_id": "ua", "log_type": "play_stop", "ts": at(52 * time.Minute), "device_id": "d9", "session_id": "s9", "stream_id": "live/r9", "code": 0},
			// the same device id in another app
			trow{"app_id": "ub", "log_type": "play_start", "ts": at(5 * time.Minute), "device_id": "d1", "user_id": "ux", "session_id": "sx"},
		)
		rej := func(sess string, code string, ts time.Time) string {
			b, _ := json.Marshal(map[string]any{"received_at": ts.UnixMilli(), "app_id": "ua", "log_type": "stall", "device_id": "d1",
				"user_id": "u1", "session_id": sess, "stage": "collector", "code": code, "field": "duration_ms",
				"reason": "duration_ms -5 ms is out of range", "raw": `{"log_type":"stall","duration_ms":-5}`, "event_index": 1, "event_id": "rej-" + code + sess})
			return string(b) + "\n"
		}
		insertTraceNDJSON(t, st, schemas.RejectedTable, []byte(rej("s2", "out_of_range", at(10*time.Minute+15*time.Second))+rej("", "invalid_json", at(11*time.Minute))))
		traceScenarioOnce.s = &traceScenario{base: base, st: st}
	})
	if traceScenarioOnce.s == nil {
		t.Fatal("scenario failed to load")
	}
	return traceScenarioOnce.s
}

func (s *traceScenario) get(t *testing.T, query string) *Response {
	t.Helper()
	body, status := s.getRaw(t, query, "")
	if status != 200 {
		t.Fatalf("%s: %d %s", query, status, body)
	}
	var res Response
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("%s: %v: %s", query, err, body)
	}
	return &res
}

// getRaw looks query up as the API would and answers its body as JSON, or
// as Arrow when accept asks for it.
func (s *traceScenario) getRaw(t *testing.T, query, accept string) ([]byte, int) {
	v, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	res, err := DefaultPlan.Search(context.Background(), s.st, testRequest(t, v, time.Now()))
	if err != nil {
		return []byte(err.Error()), 500
	}
	var b bytes.Buffer
	if accept == ArrowMedia {
		err = WriteArrow(&b, res)
	} else {
		err = json.NewEncoder(&b).Encode(res)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), 200
}

// testRequest reads the parameters the tests use as the API does: one id,
// app_id, limit, cursor, and the window as since (a Go duration) or from and
// to (ms since the epoch).
func testRequest(t testing.TB, v url.Values, now time.Time) *Request {
	t.Helper()
	req := &Request{AppID: v.Get("app_id"), To: now, Limit: DefaultLimit}
	for _, n := range IDParams {
		if id := v.Get(n); id != "" {
			req.By, req.ID = n, id
		}
	}
	ms := func(name string, def time.Time) time.Time {
		if s := v.Get(name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("%s=%q: %v", name, s, err)
			}
			return time.UnixMilli(n)
		}
		return def
	}
	since := DefaultWindow
	if s := v.Get("since"); s != "" {
		var err error
		if since, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	req.To = ms("to", now)
	req.From = ms("from", req.To.Add(-since))
	if s := v.Get("limit"); s != "" {
		req.Limit, _ = strconv.Atoi(s)
	}
	if s := v.Get("cursor"); s != "" {
		c, err := DecodeCursor(s)
		if err != nil {
			t.Fatal(err)
		}
		req.After, req.From, req.To = c, time.UnixMilli(c.From), time.UnixMilli(c.To)
	}
	req.From, req.To = req.From.UTC().Truncate(time.Millisecond), req.To.UTC().Truncate(time.Millisecond)
	return req
}

// traceTimeline renders a session's lists as "log_type …" for exact comparison.
func traceTimeline(evs []Event) string {
	var parts []string
	for _, e := range evs {
		p := e.LogType
		if r := e.Str("rendition"); e.LogType == "transcode" {
			p += "/" + r
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func traceSessionIDs(res *Response) string {
	var ids []string
	for _, s := range res.Sessions {
		ids = append(ids, s.Kind+":"+s.SessionID)
	}
	return strings.Join(ids, " ")
}

func TestTraceLookups(t *testing.T) {
	s := loadTraceScenario(t)
	ms := func(d time.Duration) string { return strconv.FormatInt(s.base.Add(d).UnixMilli(), 10) }
	for _, c := range []struct {
		q, want string
	}{
		{"device_id=d1&app_id=ua", "play:s1 play:s2 play:s3"},
		{"device_id=d1", "play:s1 play:sx play:s2 play:s3"},
		{"user_id=u1", "play:s1 play:s2 play:s3 play:s4"},
		{"session_id=s4", "play:s4"},
		{"session_id=p1", "push:p1"},
		{"stream_id=live/r1", "play:s1 play:s2 play:s3 push:p1 play:s4"},
		{"room_id=r1&app_id=ua", "play:s1 play:s2 play:s3 push:p1 play:s4"},
		{"device_id=d1&app_id=nope", ""},
		{"user_id=u9", "play:s9"},     // logged in while playing
		{"device_id=d1&since=1h", ""}, // everything is 2 h old
		// trace_sessions' spans end 5 minutes after their last_ts: a session
		// that ended just before the window is not in the answer, one
		// whose last events are in it is.
		{"device_id=d1&app_id=ua&from=" + ms(61*time.Second), "play:s2 play:s3"},
		{"user_id=u1&from=" + ms(10*time.Minute+25*time.Second), "play:s2 play:s3 play:s4"},
		{"device_id=d1&app_id=ua&from=" + ms(30*time.Second) + "&to=" + ms(10*time.Minute), "play:s1"},
	} {
		res := s.get(t, c.q)
		if got := traceSessionIDs(res); got != c.want {
			t.Errorf("%s: sessions %q, want %q", c.q, got, c.want)
		}
	}

	if res := s.get(t, "user_id=u9"); len(res.Sessions) != 1 || traceTimeline(res.Sessions[0].Events) != "play_start first_frame heartbeat play_stop" {
		t.Errorf("user_id=u9: a session logged into while playing shows from its start: %+v", res.Sessions)
	}

	res := s.get(t, "user_id=u1")
	want := map[string][3]string{ // events, server events, stream events
		"s1": {"play_start first_frame heartbeat play_stop", "edge_access", ""},
		"s2": {"play_start first_frame stall stall stall play_stop", "", ""},
		"s3": {"play_start play_stop", "", ""},
		"s4": {"play_start first_frame play_stop", "edge_access", "push_stats transcode/720p origin_stream push_stop"},
	}
	for _, ss := range res.Sessions {
		w := want[ss.SessionID]
		got := [3]string{traceTimeline(ss.Events), traceTimeline(ss.ServerEvents), traceTimeline(ss.StreamEvents)}
		if got != w {
			t.Errorf("%s: timelines\n got %q\nwant %q", ss.SessionID, got, w)
		}
		if ss.DeviceID == "" || ss.UserID != "u1" || ss.RoomID != "r1" || ss.StreamID != "live/r1" || ss.AppID != "ua" {
			t.Errorf("%s: ids %+v", ss.SessionID, ss)
		}
	}
	sum := func(id string) Summary {
		for _, ss := range res.Sessions {
			if ss.SessionID == id {
				return ss.Summary
			}
		}
		t.Fatalf("no session %s", id)
		return Summary{}
	}
	if s2 := sum("s2"); s2.StallCount != 3 || s2.StallTotalMs != 2100 || *s2.ReportedStallCount != 3 || !s2.ReachedFirstFrame {
		t.Errorf("s2 summary %+v", s2)
	}
	if s3 := sum("s3"); s3.ReachedFirstFrame || s3.FirstFrameBlocked != "tcp_connect" || *s3.StopCode != 1002 || s3.FirstFrameTotalMs != nil {
		t.Errorf("s3 summary %+v", s3)
	}
	if s4 := sum("s4"); s4.BackToSource == nil || !*s4.BackToSource || *s4.BackToSourceMs != 180 || s4.NodeID != "edge-2" || s4.Rendition != "720p" {
		t.Errorf("s4 summary %+v", s4)
	}
	if s1 := sum("s1"); s1.BackToSource == nil || *s1.BackToSource || s1.NodeID != "edge-1" || *s1.FirstFrameTotalMs != 800 || *s1.DNSMs != 10 || s1.PlayDurationMs != 60_000 {
		t.Errorf("s1 summary %+v", s1)
	}

	// The broadcaster's session sees every rendition, not the push events
	// (they are its own).
	res = s.get(t, "session_id=p1")
	p1 := res.Sessions[0]
	if got := [3]string{traceTimeline(p1.Events), traceTimeline(p1.ServerEvents), traceTimeline(p1.StreamEvents)}; got != [3]string{
		"push_start push_stats push_stop", "", "transcode/720p transcode/480p origin_stream"} {
		t.Errorf("p1 timelines %q", got)
	}
	if p1.Summary.StopCode == nil || *p1.Summary.StopCode != 0 {
		t.Errorf("p1 summary %+v", p1.Summary)
	}

	// Rejected: the device's, on the first page only.
	res = s.get(t, "device_id=d1&app_id=ua&limit=1")
	if len(res.Rejected) != 2 || res.Rejected[0].Code != "out_of_range" || res.Rejected[1].Code != "invalid_json" || res.Rejected[0].Raw == "" {
		t.Errorf("rejected %+v", res.Rejected)
	}
	// A session's: its own and its device's without a session id.
	if res := s.get(t, "session_id=s2"); len(res.Rejected) != 2 {
		t.Errorf("session rejected %+v", res.Rejected)
	}
	if res := s.get(t, "session_id=s1"); len(res.Rejected) != 1 || res.Rejected[0].Code != "invalid_json" {
		t.Errorf("s1 rejected %+v", res.Rejected)
	}
}

// TestPlanBranches: a plan whose thresholds are all 0 takes the other branch
// of every choice (the sessions query for a session, the store's grouping of
// trace_sessions, the keys over the window for client events, the streams
// over the spans' hull) and must answer the same as DefaultPlan.
func TestPlanBranches(t *testing.T) {
	s := loadTraceScenario(t)
	other := DefaultPlan
	other.DirectRows, other.IndexRows, other.MaxSpanTerms, other.MaxStreamBuckets = 0, 0, 0, 0
	for _, q := range []string{"device_id=d1", "user_id=u1", "session_id=s4", "session_id=p1", "stream_id=live/r1", "room_id=r1&app_id=ua",
		"user_id=u1&limit=2", "device_id=d1&app_id=ua&from=" + strconv.FormatInt(s.base.Add(61*time.Second).UnixMilli(), 10)} {
		v, _ := url.ParseQuery(q)
		req := testRequest(t, v, time.Now())
		var answers [2]string
		for i, p := range []Plan{DefaultPlan, other} {
			res, err := p.Search(context.Background(), s.st, req)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			b, _ := json.Marshal(res)
			answers[i] = string(b)
		}
		if answers[0] != answers[1] {
			t.Errorf("%s: the plans answer differently:\ndefault %s\nother   %s", q, answers[0], answers[1])
		}
		if !strings.Contains(answers[0], `"session_id"`) {
			t.Errorf("%s: no session found: %s", q, answers[0])
		}
	}
}

func TestTracePaging(t *testing.T) {
	s := loadTraceScenario(t)
	var got []string
	q := "stream_id=live/r1&limit=2&since=3h"
	pages := 0
	for cursor := ""; ; pages++ {
		qq := q
		if cursor != "" {
			qq += "&cursor=" + cursor
		}
		res := s.get(t, qq)
		if cursor != "" && len(res.Rejected) != 0 {
			t.Errorf("page %d repeats the rejected events", pages)
		}
		for _, ss := range res.Sessions {
			got = append(got, ss.SessionID)
		}
		if cursor = res.NextCursor; cursor == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(got, " ") != "s1 s2 s3 p1 s4" || pages != 2 {
		t.Errorf("paged %v in %d pages", got, pages+1)
	}
}

func TestTraceArrow(t *testing.T) {
	s := loadTraceScenario(t)
	res := s.get(t, "user_id=u1")
	want := 0
	for _, ss := range res.Sessions {
		want += len(ss.Events) + len(ss.ServerEvents) + len(ss.StreamEvents)
	}
	body, status := s.getRaw(t, "user_id=u1", ArrowMedia)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	if !rd.Schema().Equal(ArrowSchema) {
		t.Fatalf("schema %v", rd.Schema())
	}
	rows := 0
	var kinds []string
	for rd.Next() {
		rec := rd.RecordBatch()
		sess := rec.Column(0)
		kind := rec.Column(1)
		lt := rec.Column(2 + schemas.EventColumnIndex["log_type"])
		for i := 0; i < int(rec.NumRows()); i++ {
			if sess.ValueStr(i) == "s4" {
				kinds = append(kinds, kind.ValueStr(i)+":"+lt.ValueStr(i))
			}
		}
		rows += int(rec.NumRows())
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	if rows != want {
		t.Errorf("arrow rows %d, want %d", rows, want)
	}
	if got := strings.Join(kinds, " "); got != "client:play_start server:edge_access client:first_frame stream:push_stats stream:transcode stream:origin_stream client:play_stop stream:push_stop" {
		t.Errorf("s4 in arrow: %s", got)
	}
}

// traceBulk is a generated data set for measuring what the trace queries read:
// devices in three apps, each with sessions of play events (trace_key =
// device), one edge_access per session (trace_key = session), and the
// periodic server events of their streams (trace_key = stream).
type traceBulk struct {
	devices, sessions, streams int
	rows                       int64
}

var traceBulkOnce struct {
	sync.Once
	b   *traceBulk
	err error
}

// bulkEventStep is the time between a device's events in the bulk data.
const bulkEventStep = 300 * time.Second

// bulkDeviceStart places the bulk's device events (an hour of start offsets
// and perDevice events a step apart) in one day, the events table's
// partition: a device's rows in two parts take twice the granules, and the
// granule limits of TestTraceReadsFewGranules are for one. The span (under
// 11 h) ends 5 minutes before now when today has room for it, else 5 minutes
// before midnight, so that it always falls in the last 24 h and in part in the
// last 12 h.
func bulkDeviceStart(now time.Time, perDevice int) time.Time {
	span := time.Hour + time.Duration(perDevice)*bulkEventStep
	end := now.Add(-5 * time.Minute)
	y, m, d := now.Date() // the store's days are the process's (chDB's) time zone
	if day := time.Date(y, m, d, 0, 0, 0, 0, now.Location()); end.Add(-span).Before(day) {
		end = day.Add(-5 * time.Minute)
	}
	return end.Add(-span)
}

// TestBulkDeviceStart: at every time of day the bulk's device events fall in
// one day, in the last 24 h, and in part in the last 12 h.
func TestBulkDeviceStart(t *testing.T) {
	day := time.Date(2026, 11, 22, 0, 0, 0, 0, time.Local)
	for _, perDevice := range []int{60, 120} {
		span := time.Hour + time.Duration(perDevice)*bulkEventStep
		for now := day; now.Before(day.Add(24 * time.Hour)); now = now.Add(10 * time.Minute) {
			start := bulkDeviceStart(now, perDevice)
			end := start.Add(span)
			if start.YearDay() != end.YearDay() || start.Before(now.Add(-24*time.Hour)) || end.After(now) || end.Before(now.Add(-12*time.Hour)) {
				t.Errorf("now %s, %d events: %s to %s", now.Format(time.TimeOnly), perDevice, start, end)
			}
		}
	}
}

func loadTraceBulk(tb testing.TB) *traceBulk {
	st := sharedStore(tb)
	traceBulkOnce.Do(func() {
		b := &traceBulk{devices: 5000, streams: 200}
		perDevice := 120 // events: 20 sessions of 6
		if testing.Short() {
			perDevice = 60
		}
		n := b.devices * perDevice
		b.sessions = n / 6
		ctx := context.Background()
		now := time.Now()
		start := now.Add(-23 * time.Hour).UnixMilli() // the streams' events
		devStart := bulkDeviceStart(now, perDevice).UnixMilli()
		// k is the device's event number: session k/6, the 6 log types in turn.
		play := fmt.Sprintf(`INSERT INTO events (event_id, log_type, ts, source, app_id, device_id, user_id, session_id,
  room_id, stream_id, rendition, cdn, region, received_at, sample_rate, trace_key, total_ms, duration_ms, code, buffer_ms)
SELECT 'b' || toString(number), ['play_start','first_frame','heartbeat','stall','heartbeat','play_stop'][k %% 6 + 1],
  fromUnixTimestamp64Milli(toInt64(%d + (d * 7919 %% 3600) * 1000 + k * %d), 'UTC') AS t, 'client',
  'bulk-' || toString(d %% 3), 'bd-' || toString(d), 'bu-' || toString(intDiv(d, 2)), 'bs-' || toString(d) || '-' || toString(intDiv(k, 6)),
  'br-' || toString(d %% %d), 'live/br-' || toString(d %% %d), ['720p','480p'][d %% 2 + 1], 'cdn-a', 'north', t, 1, 'bd-' || toString(d),
  if(k %% 6 = 1, 900, NULL), if(k %% 6 = 3, 700, NULL), if(k %% 6 = 5, 0, NULL), if(k %% 6 IN (2, 4), 1500, NULL)
FROM (SELECT number, number %% %d AS d, intDiv(number, %d) AS k FROM numbers(%d))`,
			devStart, bulkEventStep.Milliseconds(), b.streams, b.streams, b.devices, b.devices, n)
		edge := fmt.Sprintf(`INSERT INTO events (event_id, log_type, ts, source, app_id, session_id, node_id, received_at, sample_rate, trace_key, http_status, cache_hit)
SELECT 'be' || toString(number), 'edge_access', fromUnixTimestamp64Milli(toInt64(%d + (d * 7919 %% 3600) * 1000 + s * 6 * %d + 50), 'UTC') AS t,
  'server', 'bulk-' || toString(d %% 3), 'bs-' || toString(d) || '-' || toString(s), 'edge-' || toString(d %% 40), t, 1,
  'bs-' || toString(d) || '-' || toString(s), 200, d %% 10 != 0
FROM (SELECT number, number %% %d AS d, intDiv(number, %d) AS s FROM numbers(%d))`,
			devStart, bulkEventStep.Milliseconds(), b.devices, b.devices, b.sessions)
		// Every stream, every 2 minutes: origin_stream and two transcode
		// workers, in each app.
		ticks := int(23 * time.Hour / (2 * time.Minute))
		stream := fmt.Sprintf(`INSERT INTO events (event_id, log_type, ts, source, app_id, stream_id, room_id, rendition, state, status, received_at, sample_rate, trace_key)
SELECT 'bx' || toString(number), ['origin_stream','transcode','transcode'][w + 1],
  fromUnixTimestamp64Milli(toInt64(%d + tick * 120000), 'UTC') AS t, 'server', 'bulk-' || toString(sid %% 3),
  'live/br-' || toString(sid), 'br-' || toString(sid), ['', '720p', '480p'][w + 1], if(w = 0, 'stats', ''), if(w = 0, '', 'ok'), t, 1,
  'live/br-' || toString(sid)
FROM (SELECT number, number %% 3 AS w, intDiv(number, 3) %% %d AS sid, intDiv(number, %d) AS tick FROM numbers(%d))`,
			start, b.streams, 3*b.streams, 3*b.streams*ticks)
		for _, q := range []string{play, edge, stream, "OPTIMIZE TABLE events FINAL"} {
			if err := st.Exec(ctx, q); err != nil {
				traceBulkOnce.err = fmt.Errorf("%w\n%s", err, q)
				return
			}
		}
		if err := indexTraceSQL(st, "app_id LIKE 'bulk-%'"); err != nil {
			traceBulkOnce.err = err
			return
		}
		out, err := st.QueryJSON(ctx, "SELECT count() AS n FROM events WHERE app_id LIKE 'bulk-%'")
		if err != nil {
			traceBulkOnce.err = err
			return
		}
		var r struct{ N int64 }
		json.Unmarshal(out, &r)
		b.rows = r.N
		traceBulkOnce.b = b
	})
	if traceBulkOnce.err != nil {
		tb.Fatal(traceBulkOnce.err)
	}
	return traceBulkOnce.b
}

var explainGranulesRE = regexp.MustCompile(`Granules: (\d+)/(\d+)`)

// explainGranules runs EXPLAIN indexes = 1 and returns, summed over the
// tables it reads, the granules left after every index and the granules
// there are.
func explainGranules(tb testing.TB, st *store.Embedded, q string) (read, total int) {
	tb.Helper()
	out, err := st.QueryJSON(context.Background(), "EXPLAIN indexes = 1 "+q)
	if err != nil {
		tb.Fatalf("%v\n%s", err, q)
	}
	var lines []string
	traceLines(out, func(l []byte) error {
		var r struct{ Explain string }
		json.Unmarshal(l, &r)
		lines = append(lines, r.Explain)
		return nil
	})
	// Each ReadFromMergeTree lists its indexes in order; the first
	// Granules line is the whole table, the last what is left to read.
	last := -1
	for _, l := range lines {
		if strings.Contains(l, "ReadFromMergeTree") {
			if last >= 0 {
				read += last
			}
			last = -1
			continue
		}
		if m := explainGranulesRE.FindStringSubmatch(l); m != nil {
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			if last < 0 {
				total += b
			}
			last = a
		}
	}
	if last >= 0 {
		read += last
	}
	return read, total
}

// TestTraceReadsFewGranules checks, with EXPLAIN, that each query of a
// lookup reads a handful of granules of the events table, with and without
// app_id (app_id leads the sort key), and logs what a lookup costs.
func TestTraceReadsFewGranules(t *testing.T) {
	st := sharedStore(t)
	b := loadTraceBulk(t)
	srv := &searcher{Plan: DefaultPlan, store: st}
	ctx := context.Background()
	for _, c := range []struct{ by, id string }{
		{"device_id", "bd-1234"},
		{"user_id", "bu-617"},
		{"session_id", "bs-1234-3"},
		{"room_id", "br-34"},
		{"stream_id", "live/br-34"},
	} {
		for _, app := range []string{"bulk-1", ""} {
			v := url.Values{c.by: {c.id}}
			if app != "" {
				v.Set("app_id", app)
			}
			if c.by == "room_id" || c.by == "stream_id" {
				v.Set("limit", "20")
			}
			req, err := testRequest(t, v, time.Now()), error(nil)
			if err != nil {
				t.Fatal(err)
			}
			page, client, err := srv.tracePage(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				t.Fatalf("%v: no sessions in the generated data", v)
			}
			if len(page) > req.Limit {
				page = page[:req.Limit]
			}
			// The first query: the client events (a device or a session)
			// or the list of sessions (the others).
			first := sessionsSQL(req)
			switch {
			case c.by == "device_id" || c.by == "user_id":
				first = indexSQL(req, DefaultPlan.IndexRows) // trace_sessions' granules
			case client != nil:
				first = DefaultPlan.directSQL(req)
			}
			sr, total := explainGranules(t, st, first)
			var fr [fetchKinds]int
			for _, f := range DefaultPlan.traceFetches(req, page, client == nil) {
				fr[f.kind], _ = explainGranules(t, st, f.sql)
			}
			rr, _ := explainGranules(t, st, DefaultPlan.rejectedSQL(req, rejectedCond(req, page)))
			t0 := time.Now()
			const reps = 20
			var res *Response
			for range reps {
				if res, err = srv.trace(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			per := time.Since(t0) / reps
			evs := 0
			for _, s := range res.Sessions {
				evs += len(s.Events) + len(s.ServerEvents) + len(s.StreamEvents)
			}
			t.Logf("%-10s %-7s granules of %d: first %2d, client %2d, edge %2d, stream %2d, rejected %d; %2d sessions, %4d events, %s per lookup",
				c.by, app, total, sr, fr[fetchClient], fr[fetchEdge], fr[fetchStream], rr, len(res.Sessions), evs, per.Round(100*time.Microsecond))
			// A device's, session's or stream's rows sit in one or two
			// granules; the bloom filters (each over 8 granules) let a few
			// false positives and the boundaries between apps through. A
			// full scan would be total. Limits are in rows (granules of
			// schemas.EventsGranularity rows).
			const g = 8192
			limit, firstLimit := 12*g, 12*g
			if c.by == "room_id" || c.by == "stream_id" {
				// A room's viewers are spread over the table: one or two
				// granules each (all of them for the list of sessions,
				// the page's for the events).
				limit, firstLimit = 2*req.Limit*g, 2*b.devices/b.streams*g
			}
			rows := func(granules int) int { return granules * schemas.EventsGranularity }
			if rows(sr) > firstLimit || rows(slices.Max(fr[:])) > limit {
				t.Errorf("%s=%s app=%q reads too much: first query %d rows (want ≤ %d), fetches %v granules of %d rows (want ≤ %d rows each); the table has %d granules",
					c.by, c.id, app, rows(sr), firstLimit, fr, schemas.EventsGranularity, limit, total)
			}
		}
	}
	t.Logf("generated rows: %d", b.rows)
}

// TestTraceContextTable: trace_context (migration 0007) holds, for every
// stream-level and edge event, the document the stream or edge query would
// have printed of its columns in the events table (streamCols, edgeCols),
// byte for byte, in its 10-minute bucket; and its view copies exactly the log
// types of a session's stream and edge: a column or type added to the
// catalog later needs a migration for it too.
func TestTraceContextTable(t *testing.T) {
	loadTraceScenario(t)
	st := sharedStore(t)
	ctx := context.Background()
	width := schemas.TraceContextBucket.Milliseconds()
	for _, c := range []struct {
		cols  string
		types []string
	}{{streamCols, traceStreamish}, {edgeCols, traceEdgeTypes}} {
		// The scenario's app: other tests' bulk loads may be there too.
		want, err := st.QueryJSON(ctx, fmt.Sprintf("SELECT %s FROM events WHERE app_id = 'ua' AND log_type IN %s ORDER BY event_id", c.cols, traceIn(c.types)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := st.QueryJSON(ctx, fmt.Sprintf("SELECT bucket, doc FROM %s WHERE app_id = 'ua' AND log_type IN %s", schemas.TraceContextTable, traceIn(c.types)))
		if err != nil {
			t.Fatal(err)
		}
		type doc struct {
			Bucket int64
			Doc    string
			id     string
		}
		var docs []doc
		traceLines(out, func(l []byte) error {
			var d doc
			var e struct {
				EventID string `json:"event_id"`
			}
			if err := json.Unmarshal(l, &d); err != nil || json.Unmarshal([]byte(d.Doc), &e) != nil {
				t.Errorf("not a document: %s", l)
			}
			d.id = e.EventID
			docs = append(docs, d)
			return nil
		})
		slices.SortFunc(docs, func(a, b doc) int { return strings.Compare(a.id, b.id) })
		var got strings.Builder
		for _, d := range docs {
			got.WriteString(d.Doc + "\n")
			var e struct {
				TsMs int64 `json:"ts_ms"`
			}
			if json.Unmarshal([]byte(d.Doc), &e); d.Bucket != e.TsMs/width {
				t.Errorf("bucket %d of %s, want %d", d.Bucket, d.Doc, e.TsMs/width)
			}
		}
		if len(want) == 0 || got.String() != string(want) {
			t.Errorf("%v: the documents in %s are\n%s\nwant what the events table prints of %s:\n%s", c.types, schemas.TraceContextTable, got.String(), c.cols, want)
		}
	}
	out, err := st.QueryJSON(ctx, "SELECT as_select AS q FROM system.tables WHERE database = currentDatabase() AND name = "+sqlString(schemas.TraceContextTable+"_mv"))
	if err != nil {
		t.Fatal(err)
	}
	var mv struct{ Q string }
	json.Unmarshal(out, &mv)
	_, in, ok := strings.Cut(mv.Q, "log_type IN ")
	got := strings.Split(strings.Trim(strings.TrimSpace(in), "()"), ", ")
	want := append(slices.Clone(traceStreamish), traceEdgeTypes...)
	for i := range got {
		got[i] = strings.Trim(got[i], "'")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !ok || !slices.Equal(got, want) {
		t.Errorf("the view copies %q, want the log types %v", mv.Q, want)
	}
}

// TestTraceSpans: the client query names each trace key's sessions as one
// range of the sort key, from the first start to the last end, up to
// DefaultPlan.MaxSpanTerms ranges, past that the keys over the window; and the
// stream query names the trace_context buckets each session's span
// (±DefaultPlan.Margin) of its stream meets, up to DefaultPlan.MaxStreamBuckets, past that
// the streams over the spans' hull. Either way every session and stream is
// there.
func TestTraceSpans(t *testing.T) {
	// Sessions start mid-bucket, so a span of 12 h ± DefaultPlan.Margin meets 73.
	now := time.Now().Truncate(schemas.TraceContextBucket).Add(schemas.TraceContextBucket / 2)
	req := &Request{By: "device_id", ID: "d", From: now.Add(-24 * time.Hour), To: now, Limit: 50}
	// n sessions an hour apart, each dur long, on keys cycling through the
	// first keys ones, each on its own stream or all on one.
	page := func(n, keys int, dur time.Duration, oneStream bool) []*tracePageSession {
		var out []*tracePageSession
		for i := range n {
			start := now.Add(-time.Duration(i+1) * time.Hour).UnixMilli()
			stream := fmt.Sprintf("live/r%d", i)
			if oneStream {
				stream = "live/r0"
			}
			out = append(out, &tracePageSession{AppID: "a", SessionID: fmt.Sprintf("s%d", i), StartMs: start, EndMs: start + dur.Milliseconds(),
				Keys: []string{fmt.Sprintf("d%d", i%keys)}, Streams: []string{stream}, Renditions: []string{"720p"}})
		}
		return out
	}
	for _, c := range []struct {
		sessions, keys int
		dur            time.Duration
		oneStream      bool
		clientRanges   bool // the client query by ranges, not by keys and window
		streamBuckets  bool // the stream query by buckets, not by streams and hull
	}{
		{1, 1, time.Minute, false, true, true},
		{DefaultPlan.MaxSpanTerms, 1, time.Minute, false, true, true},
		{DefaultPlan.MaxSpanTerms + 1, 1, time.Minute, false, true, true},
		{DefaultPlan.MaxSpanTerms, DefaultPlan.MaxSpanTerms, time.Minute, false, true, true},
		{DefaultPlan.MaxSpanTerms + 1, DefaultPlan.MaxSpanTerms + 1, time.Minute, false, false, true},
		// plays of 12 hours: 73 buckets each
		{DefaultPlan.MaxStreamBuckets / 73, 1, 12 * time.Hour, false, true, true},
		{DefaultPlan.MaxStreamBuckets/73 + 1, 1, 12 * time.Hour, false, true, false},
		// ... of one stream, overlapping: ~300 distinct buckets
		{40, 1, 12 * time.Hour, true, true, true},
	} {
		name := fmt.Sprintf("%d sessions of %s on %d keys (one stream %v)", c.sessions, c.dur, c.keys, c.oneStream)
		ps := page(c.sessions, c.keys, c.dur, c.oneStream)
		var client, stream string
		for _, f := range DefaultPlan.traceFetches(req, ps, true) {
			switch f.kind {
			case fetchClient:
				client = f.sql
			case fetchStream:
				stream = f.sql
			}
		}
		if got := strings.Count(client, "(trace_key = '"); c.clientRanges && got != c.keys {
			t.Errorf("%s: %d key ranges in the client query, want one per key:\n%s", name, got, client)
		}
		if c.clientRanges {
			// Key d0 has sessions 0, keys, 2·keys, …: its range runs from the
			// last one's start (the earliest) to session 0's end.
			last := (c.sessions - 1) / c.keys * c.keys
			want := fmt.Sprintf("(trace_key = 'd0' AND ts >= %s AND ts <= %s)", sqlTime(time.UnixMilli(ps[last].StartMs)), sqlTime(time.UnixMilli(ps[0].EndMs)))
			if !strings.Contains(client, want) {
				t.Errorf("%s: the client query has no %s:\n%s", name, want, client)
			}
		}
		if got := strings.Contains(client, "trace_key IN ('d0'"); got == c.clientRanges {
			t.Errorf("%s: client by keys and window %v, want %v:\n%s", name, got, !c.clientRanges, client)
		}
		if got := strings.Contains(stream, "(app_id, trace_key, bucket) IN"); got != c.streamBuckets {
			t.Errorf("%s: stream by buckets %v, want %v:\n%s", name, got, c.streamBuckets, stream)
		}
		width, margin := schemas.TraceContextBucket.Milliseconds(), DefaultPlan.Margin.Milliseconds()
		for _, p := range ps {
			first, last := (p.StartMs-margin)/width, (p.EndMs+margin)/width
			if c.streamBuckets {
				for b := first; b <= last; b++ {
					if want := fmt.Sprintf("('a', '%s', %d)", p.Streams[0], b); !strings.Contains(stream, want) {
						t.Errorf("%s: the stream query has no %s:\n%.2000s", name, want, stream)
					}
				}
				for _, b := range []int64{first - 1, last + 1} {
					if c.oneStream {
						break // the other sessions' spans cover them
					}
					if extra := fmt.Sprintf("('a', '%s', %d)", p.Streams[0], b); strings.Contains(stream, extra) {
						t.Errorf("%s: the stream query has %s, past the span:\n%.2000s", name, extra, stream)
					}
				}
			}
		}
		if !c.streamBuckets {
			lo, hi := ps[len(ps)-1].StartMs-margin, ps[0].EndMs+margin
			if want := fmt.Sprintf("ts >= %s AND ts <= %s", sqlTime(time.UnixMilli(lo)), sqlTime(time.UnixMilli(hi))); !strings.Contains(stream, want) {
				t.Errorf("%s: the stream query has no %s:\n%.2000s", name, want, stream)
			}
		}
		for i, p := range ps {
			if !strings.Contains(stream, "'"+p.Streams[0]+"'") || !strings.Contains(client, fmt.Sprintf("'s%d'", i)) {
				t.Errorf("%s: session s%d or stream %s missing", name, i, p.Streams[0])
			}
		}
	}
}

// TestTraceIndexPage: a device's or user's page is the same whether trace_sessions' rows
// are grouped in Go or, for a busier id, in the store, page after page; and each session
// is the one the events hold: its span in the window and its keys, streams and renditions.
func TestTraceIndexPage(t *testing.T) {
	st := sharedStore(t)
	loadTraceBulk(t)
	srv := &searcher{Plan: DefaultPlan, store: st}
	ctx := context.Background()
	for _, v := range []url.Values{
		{"device_id": {"bd-1234"}, "limit": {"7"}},
		{"user_id": {"bu-617"}, "limit": {"7"}},
		{"user_id": {"bu-617"}, "app_id": {"bulk-1"}, "limit": {"7"}, "since": {"12h"}},
	} {
		req, err := testRequest(t, v, time.Now()), error(nil)
		if err != nil {
			t.Fatal(err)
		}
		var sessions []string
		for page := 0; ; page++ {
			inGo, err := srv.traceIndex(ctx, req, DefaultPlan.IndexRows)
			if err != nil {
				t.Fatal(err)
			}
			inStore, err := srv.traceIndex(ctx, req, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range [][]*tracePageSession{inGo, inStore} {
				for _, ps := range p {
					slices.Sort(ps.Keys)
					slices.Sort(ps.Streams)
					slices.Sort(ps.Renditions)
					slices.Sort(ps.Devices)
				}
			}
			g, _ := json.Marshal(inGo)
			s, _ := json.Marshal(inStore)
			if string(g) != string(s) {
				t.Fatalf("%v page %d: grouped in Go\n%s\nin the store\n%s", v, page, g, s)
			}
			if len(inGo) == 0 || page > 10 {
				t.Fatalf("%v page %d: %d sessions", v, page, len(inGo))
			}
			for _, ps := range inGo[:min(len(inGo), req.Limit)] {
				sessions = append(sessions, ps.SessionID)
				// The session as the events hold it.
				// (Its end as far as the index knows: the last_ts plus
				// the quantum the events may run past it.)
				out, err := st.QueryJSON(ctx, fmt.Sprintf(`SELECT greatest(toUnixTimestamp64Milli(min(ts)), %d) AS start_ms,
  least(toUnixTimestamp64Milli(max(ts)) + %d, %d) AS end_ms, groupUniqArray(trace_key) AS keys, groupUniqArray(stream_id) AS streams
FROM events WHERE session_id = %s AND app_id = %s AND log_type IN %s`, req.From.UnixMilli(), schemas.TraceSessionQuantum.Milliseconds(), req.To.UnixMilli()-1,
					sqlString(ps.SessionID), sqlString(ps.AppID), traceIn(tracePlayTypes)))
				if err != nil {
					t.Fatal(err)
				}
				var want tracePageSession
				json.Unmarshal(out, &want)
				if want.StartMs != ps.StartMs || want.EndMs != ps.EndMs || !slices.Equal(want.Keys, ps.Keys) || !slices.Equal(want.Streams, ps.Streams) || len(ps.Renditions) != 1 {
					t.Errorf("%v: session %+v, the events say %s", v, ps, out)
				}
			}
			if len(inGo) <= req.Limit {
				break
			}
			last := inGo[req.Limit-1]
			req.After = &Cursor{Start: last.StartMs, AppID: last.AppID, SessionID: last.SessionID}
		}
		// Every session of the id that may be in the window (it is when it
		// has events there; the others, which ended less than the quantum
		// before the window, the answer leaves out), once, in order of
		// start. A session that began before the window starts at its start.
		where := fmt.Sprintf("%s = %s AND log_type IN %s%s", req.By, sqlString(req.ID), traceIn(tracePlayTypes), traceAppCond(req))
		out, err := st.QueryJSON(ctx, fmt.Sprintf(`SELECT session_id FROM events
WHERE session_id IN (SELECT session_id FROM events WHERE %s) AND log_type IN %s
GROUP BY app_id, session_id
HAVING min(ts) < %s AND toUnixTimestamp64Milli(max(ts)) + %d >= %d
ORDER BY greatest(toUnixTimestamp64Milli(min(ts)), %d), app_id, session_id`, where, traceIn(tracePlayTypes),
			sqlTime(req.To), schemas.TraceSessionQuantum.Milliseconds(), req.From.UnixMilli(), req.From.UnixMilli()))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		traceLines(out, func(l []byte) error {
			var r struct {
				SessionID string `json:"session_id"`
			}
			json.Unmarshal(l, &r)
			want = append(want, r.SessionID)
			return nil
		})
		if !slices.Equal(sessions, want) {
			t.Errorf("%v: paged sessions\n%v\nwant\n%v", v, sessions, want)
		}
	}
}

// TestTraceSessionsIndex: trace_sessions holds the play sessions as traceClass
// counts them: the processor's SessionIndex writes rows for exactly the play
// log types, and migration 0005's backfill reads the same ones that existed
// then (a later play type, like request, had no rows to backfill).
func TestTraceSessionsIndex(t *testing.T) {
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var then []string
	for _, n := range tracePlayTypes {
		if schemas.Lookup(n).Since <= 5 {
			then = append(then, n)
		}
	}
	want := "log_type IN " + traceIn(then)
	backfills := 0
	for _, m := range ms {
		for _, st := range m.Statements {
			if strings.HasPrefix(st, "INSERT INTO trace_sessions") {
				backfills++
				if !strings.Contains(st, want) {
					t.Errorf("%s: %q not in\n%s", m.Name, want, st)
				}
			}
		}
	}
	if backfills != 1 {
		t.Errorf("found the backfill %d times, want 1", backfills)
	}
	var c schemas.Cleaner
	var ev schemas.Event
	for _, lt := range schemas.Catalog {
		x := processor.NewSessionIndex(16)
		js := fmt.Sprintf(`{"log_type":%q,"ts":%d,"app_id":"a","device_id":"d","user_id":"u","session_id":"s","stream_id":"live/x","event_id":"e"`,
			lt.Name, time.Now().UnixMilli())
		for _, f := range lt.Fields {
			switch {
			case !f.Required:
			case len(f.Enum) > 0:
				js += fmt.Sprintf(",%q:%q", f.Name, f.Enum[0])
			case f.Kind == schemas.KindInt || f.Kind == schemas.KindFloat:
				js += fmt.Sprintf(",%q:%v", f.Name, f.Min)
			case f.Kind == schemas.KindBool:
				js += fmt.Sprintf(",%q:false", f.Name)
			default:
				js += fmt.Sprintf(",%q:\"x\"", f.Name)
			}
		}
		fields, err := flatjson.ParseObject(nil, []byte(js+"}"))
		if err != nil {
			t.Fatal(err)
		}
		if rej := c.Clean(fields, &ev); rej != nil {
			// a type with more required fields is not a play type
			if slices.Contains(tracePlayTypes, lt.Name) {
				t.Errorf("%s: %v", lt.Name, rej)
			}
			continue
		}
		x.Observe(&ev)
		if got, want := x.Rows(), 0; slices.Contains(tracePlayTypes, lt.Name) {
			if got != 2 {
				t.Errorf("%s: %d index rows, want one by device and one by user", lt.Name, got)
			}
		} else if got != want {
			t.Errorf("%s is not a play type but got %d index rows", lt.Name, got)
		}
	}
}
