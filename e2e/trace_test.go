package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/lastmile-qoe/lastmile/query"
	"github.com/lastmile-qoe/lastmile/trace"
)

// tev is one event to post; ts is given as an offset from the scenario's base.
type tev map[string]any

// traceScenario posts, through the collector, the sessions the trace API
// must explain: a clean play, a play with three stalls, a play blocked at
// tcp_connect, a play with rejected events, and a play whose edge went back
// to source while the stream's broadcaster and transcoder logged around it.
type traceScenario struct {
	p    *proc
	base time.Time
}

const (
	traceUser   = "user-e2e"
	traceStream = "live/room-9"
)

func (s *traceScenario) at(d time.Duration) int64 { return s.base.Add(d).UnixMilli() }

// viewer returns the common fields of a play session's client events.
func traceViewer(device, session, stream string) tev {
	return tev{"device_id": device, "user_id": traceUser, "session_id": session, "room_id": strings.TrimPrefix(stream, "live/"),
		"stream_id": stream, "cdn": "cdn-a", "region": "north", "rendition": "720p", "protocol": "http-flv", "os": "android"}
}

func (e tev) with(kv ...any) tev {
	out := tev{}
	for k, v := range e {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func setupTraceScenario(t *testing.T) *traceScenario {
	dir := t.TempDir()
	s := &traceScenario{
		p:    start(t, "run", filepath.Join(dir, "data"), "--kafka-listen", "127.0.0.1:0"),
		base: time.Now().Add(-time.Hour).Truncate(time.Second),
	}
	sec := time.Second
	clean := traceViewer("dev-clean", "s-clean", "live/room-1")
	stall := traceViewer("dev-stall", "s-stall", "live/room-1")
	block := traceViewer("dev-block", "s-block", "live/room-1")
	rej := traceViewer("dev-rej", "s-rej", "live/room-1")
	bts := traceViewer("dev-bts", "s-bts", traceStream)
	push := tev{"device_id": "dev-pub", "session_id": "p-9", "room_id": "room-9", "stream_id": traceStream}
	server := tev{"stream_id": traceStream, "room_id": "room-9", "node_id": "transcode-1"}
	T := 40 * time.Minute // the back-to-source play
	valid := []tev{
		clean.with("log_type", "play_start", "ts", s.at(0), "line", "main"),
		{"log_type": "edge_access", "ts": s.at(100 * time.Millisecond), "session_id": "s-clean", "node_id": "edge-1",
			"http_status": 200, "cache_hit": true, "first_byte_ms": 40},
		clean.with("log_type", "first_frame", "ts", s.at(800*time.Millisecond), "total_ms", 800, "dns_ms", 20, "tcp_connect_ms", 30,
			"tcp_first_packet_ms", 50, "video_first_packet_ms", 400, "first_decode_ms", 250, "first_render_ms", 50),
		clean.with("log_type", "heartbeat", "ts", s.at(10*sec), "buffer_ms", 2500, "state", "playing"),
		clean.with("log_type", "play_stop", "ts", s.at(20*sec), "code", 0, "play_duration_ms", 19200, "stall_count", 0, "stall_total_ms", 0),

		stall.with("log_type", "play_start", "ts", s.at(10*time.Minute)),
		stall.with("log_type", "first_frame", "ts", s.at(10*time.Minute+sec), "total_ms", 1000),
		stall.with("log_type", "stall", "ts", s.at(10*time.Minute+10*sec), "duration_ms", 400, "cause", "network"),
		stall.with("log_type", "stall", "ts", s.at(10*time.Minute+20*sec), "duration_ms", 600, "cause", "network"),
		stall.with("log_type", "stall", "ts", s.at(10*time.Minute+30*sec), "duration_ms", 800, "cause", "network"),
		stall.with("log_type", "play_stop", "ts", s.at(10*time.Minute+40*sec), "code", 0, "stall_count", 3, "stall_total_ms", 1800, "play_duration_ms", 39000),

		block.with("log_type", "play_start", "ts", s.at(20*time.Minute)),
		block.with("log_type", "play_stop", "ts", s.at(20*time.Minute+5*sec), "code", 1002, "first_frame_blocked", "tcp_connect",
			"reason", "connect timeout", "play_duration_ms", 5000),

		rej.with("log_type", "play_start", "ts", s.at(30*time.Minute)),
		rej.with("log_type", "play_stop", "ts", s.at(30*time.Minute+9*sec), "code", 0, "play_duration_ms", 9000),

		push.with("log_type", "push_start", "ts", s.at(T-10*time.Minute), "connect_ms", 120),
		push.with("log_type", "push_stats", "ts", s.at(T+5*sec), "bitrate_kbps", 3000, "rtt_ms", 40),
		server.with("log_type", "transcode", "ts", s.at(T+6*sec), "rendition", "720p", "status", "ok", "latency_ms", 300),
		server.with("log_type", "transcode", "ts", s.at(T+6500*time.Millisecond), "rendition", "480p", "status", "lagging", "latency_ms", 2000),
		server.with("log_type", "origin_stream", "ts", s.at(T+7*sec), "state", "stats", "node_id", "origin-1", "pulls", 3),
		push.with("log_type", "push_stats", "ts", s.at(T+5*time.Minute), "bitrate_kbps", 2900),
		bts.with("log_type", "play_start", "ts", s.at(T)),
		{"log_type": "edge_access", "ts": s.at(T + 50*time.Millisecond), "session_id": "s-bts", "node_id": "edge-9", "cdn": "cdn-a",
			"http_status": 200, "cache_hit": false, "back_to_source_ms": 240, "first_byte_ms": 300},
		bts.with("log_type", "first_frame", "ts", s.at(T+1200*time.Millisecond), "total_ms", 1200),
		bts.with("log_type", "play_stop", "ts", s.at(T+60*sec), "code", 0, "play_duration_ms", 58800),
	}
	// Malformed events that still carry the rejected session's ids.
	bad := []tev{
		rej.with("log_type", "stall", "ts", s.at(30*time.Minute+3*sec), "duration_ms", -5),
		rej.with("log_type", "first_frame", "ts", s.at(30*time.Minute+sec)),
		rej.with("log_type", "play_strat", "ts", s.at(30*time.Minute+2*sec)),
	}
	body, _ := json.Marshal(append(append([]tev{}, valid...), bad...))
	r, err := s.p.post(body, false, testKey)
	if err != nil || r.Status != 200 {
		t.Fatalf("post: %v %+v", err, r)
	}
	if r.Accepted != len(valid) || len(r.Rejected) != len(bad) {
		t.Fatalf("collector accepted %d (want %d), rejected %v (want %d)", r.Accepted, len(valid), r.Rejected, len(bad))
	}
	waitFor(t, 60*time.Second, "the events and rejects to be stored", func() (bool, string) {
		rows, err := s.p.sql("SELECT (SELECT count() FROM events) AS e, (SELECT count() FROM rejected) AS r")
		if err != nil || len(rows) != 1 {
			return false, fmt.Sprint(err)
		}
		return toInt(t, rows[0]["e"]) == int64(len(valid)) && toInt(t, rows[0]["r"]) == int64(len(bad)), fmt.Sprint(rows)
	})
	return s
}

// trace calls the API and decodes the answer; status must be 200.
func (s *traceScenario) trace(t *testing.T, q string) *trace.Response {
	t.Helper()
	status, body := s.get(t, q, queryToken, "")
	if status != 200 {
		t.Fatalf("trace?%s: %d %s", q, status, body)
	}
	var res trace.Response
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("trace?%s: %v\n%s", q, err, body)
	}
	return &res
}

func (s *traceScenario) get(t *testing.T, q, token, accept string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.p.HTTP+"/api/v1/trace?"+q, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func traceLogTypes(evs []trace.Event) string {
	var out []string
	for _, e := range evs {
		s := e.LogType
		if e.LogType == "transcode" {
			s += "/" + e.Str("rendition")
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// only returns the single session of an answer.
func onlySession(t *testing.T, res *trace.Response) *trace.Session {
	t.Helper()
	if len(res.Sessions) != 1 {
		t.Fatalf("want 1 session, got %d: %+v", len(res.Sessions), res.Sessions)
	}
	return &res.Sessions[0]
}

// traceSummaryJSON is the summary but its diagnosis (which TestTrace checks
// by verdict, and e2e/diagnosis_test.go in full).
func traceSummaryJSON(s trace.Summary) string {
	s.Diagnosis = nil
	b, _ := json.Marshal(s)
	return string(b)
}

func TestTrace(t *testing.T) {
	s := setupTraceScenario(t)

	type want struct {
		events, server, stream string
		summary                string
		verdict                string
	}
	for _, c := range []struct {
		device, session string
		want            want
	}{
		{"dev-clean", "s-clean", want{"play_start first_frame heartbeat play_stop", "edge_access", "",
			`{"reached_first_frame":true,"first_frame_total_ms":800,"dns_ms":20,"tcp_connect_ms":30,"tcp_first_packet_ms":50,` +
				`"video_first_packet_ms":400,"first_decode_ms":250,"first_render_ms":50,"stop_code":0,"stall_count":0,"stall_total_ms":0,` +
				`"reported_stall_count":0,"reported_stall_total_ms":0,"node_id":"edge-1","cdn":"cdn-a","region":"north","rendition":"720p",` +
				`"protocol":"http-flv","edge_http_status":200,"back_to_source":false,"play_duration_ms":19200}`, trace.VerdictFine}},
		{"dev-stall", "s-stall", want{"play_start first_frame stall stall stall play_stop", "", "",
			`{"reached_first_frame":true,"first_frame_total_ms":1000,"stop_code":0,"stall_count":3,"stall_total_ms":1800,` +
				`"reported_stall_count":3,"reported_stall_total_ms":1800,"cdn":"cdn-a","region":"north","rendition":"720p",` +
				`"protocol":"http-flv","back_to_source":null,"play_duration_ms":39000}`, trace.VerdictStalls}},
		{"dev-block", "s-block", want{"play_start play_stop", "", "",
			`{"reached_first_frame":false,"first_frame_total_ms":null,"first_frame_blocked":"tcp_connect","stop_code":1002,` +
				`"stop_reason":"connect timeout","stall_count":0,"stall_total_ms":0,"cdn":"cdn-a","region":"north","rendition":"720p",` +
				`"protocol":"http-flv","back_to_source":null,"play_duration_ms":5000}`, trace.VerdictFailed}},
		{"dev-rej", "s-rej", want{"play_start play_stop", "", "",
			`{"reached_first_frame":false,"first_frame_total_ms":null,"stop_code":0,"stall_count":0,"stall_total_ms":0,` +
				`"cdn":"cdn-a","region":"north","rendition":"720p","protocol":"http-flv","back_to_source":null,"play_duration_ms":9000}`, trace.VerdictSlowFirstFrame}},
		// The 480p transcode, the push_start 10 minutes earlier and the
		// push_stats 5 minutes later are the stream's, not this play's.
		{"dev-bts", "s-bts", want{"play_start first_frame play_stop", "edge_access", "push_stats transcode/720p origin_stream",
			`{"reached_first_frame":true,"first_frame_total_ms":1200,"stop_code":0,"stall_count":0,"stall_total_ms":0,` +
				`"node_id":"edge-9","cdn":"cdn-a","region":"north","rendition":"720p","protocol":"http-flv","edge_http_status":200,` +
				`"back_to_source":true,"back_to_source_ms":240,"play_duration_ms":58800}`, trace.VerdictFine}},
	} {
		for _, q := range []string{"device_id=" + c.device, "session_id=" + c.session} {
			ss := onlySession(t, s.trace(t, q))
			got := want{traceLogTypes(ss.Events), traceLogTypes(ss.ServerEvents), traceLogTypes(ss.StreamEvents), traceSummaryJSON(ss.Summary), ""}
			if d := ss.Summary.Diagnosis; d != nil {
				got.verdict = d.Verdict
			}
			if got != c.want {
				t.Errorf("%s:\n got %+v\nwant %+v", q, got, c.want)
			}
			if ss.Kind != "play" || ss.SessionID != c.session || ss.DeviceID != c.device || ss.UserID != traceUser || ss.AppID != testAppID {
				t.Errorf("%s: ids %s %s %s %s %s", q, ss.Kind, ss.SessionID, ss.DeviceID, ss.UserID, ss.AppID)
			}
		}
	}

	// An event keeps its own fields, compactly.
	ss := onlySession(t, s.trace(t, "device_id=dev-bts"))
	edge := ss.ServerEvents[0]
	if b, _ := json.Marshal(edge); !strings.Contains(string(b), `"node_id":"edge-9","http_status":200,"cache_hit":false,"back_to_source_ms":240,"first_byte_ms":300}`) ||
		strings.Contains(string(b), "null") || strings.Contains(string(b), `""`) {
		t.Errorf("edge event JSON: %s", b)
	}
	if _, body := s.get(t, "device_id=dev-bts", queryToken, ""); !bytes.Contains(body, []byte(`"stream_id":"live/room-9"`)) {
		t.Errorf("ids are not as sent: %s", body)
	}
	if !ss.Start.Equal(s.base.Add(40*time.Minute)) || !ss.End.Equal(s.base.Add(41*time.Minute)) {
		t.Errorf("span %v – %v, want from base+40m to base+41m", ss.Start, ss.End)
	}

	// The rejected events of the device and of the session, with reasons.
	for _, q := range []string{"device_id=dev-rej", "session_id=s-rej", "user_id=" + traceUser} {
		res := s.trace(t, q)
		var got []string
		for _, r := range res.Rejected {
			got = append(got, r.Code+"/"+r.Field+"/"+r.LogType)
			if !strings.Contains(r.Raw, `"dev-rej"`) || r.Stage != "collector" || r.Reason == "" || r.DeviceID != "dev-rej" || r.SessionID != "s-rej" {
				t.Errorf("%s: rejected row %+v", q, r)
			}
		}
		sort.Strings(got)
		if w := "missing_field/total_ms/first_frame out_of_range/duration_ms/stall unknown_log_type/log_type/play_strat"; strings.Join(got, " ") != w {
			t.Errorf("%s: rejected %q, want %q", q, got, w)
		}
	}
	if res := s.trace(t, "device_id=dev-clean"); len(res.Rejected) != 0 {
		t.Errorf("dev-clean has rejected events: %+v", res.Rejected)
	}

	// A user's sessions, all five in time order; a stream's, with its
	// broadcaster's push session (which sees every rendition).
	res := s.trace(t, "user_id="+traceUser)
	var order []string
	for _, ss := range res.Sessions {
		order = append(order, ss.SessionID)
	}
	if strings.Join(order, " ") != "s-clean s-stall s-block s-rej s-bts" {
		t.Errorf("user sessions %v", order)
	}
	res = s.trace(t, "stream_id="+url.QueryEscape(traceStream))
	if len(res.Sessions) != 2 || res.Sessions[0].SessionID != "p-9" || res.Sessions[0].Kind != "push" || res.Sessions[1].SessionID != "s-bts" {
		t.Fatalf("stream sessions %+v", res.Sessions)
	}
	p9 := res.Sessions[0]
	if got := [2]string{traceLogTypes(p9.Events), traceLogTypes(p9.StreamEvents)}; got != [2]string{"push_start push_stats push_stats", "transcode/720p transcode/480p origin_stream"} {
		t.Errorf("push session p-9: %q", got)
	}
	if res := s.trace(t, "room_id=room-9&limit=1"); len(res.Sessions) != 1 || res.NextCursor == "" {
		t.Errorf("room page 1: %d sessions, cursor %q", len(res.Sessions), res.NextCursor)
	} else if res2 := s.trace(t, "room_id=room-9&limit=1&cursor="+res.NextCursor); len(res2.Sessions) != 1 || res2.Sessions[0].SessionID != "s-bts" || res2.NextCursor != "" {
		t.Errorf("room page 2: %+v, cursor %q", res2.Sessions, res2.NextCursor)
	}
	if res := s.trace(t, "device_id=dev-clean&since=30m"); len(res.Sessions) != 0 {
		t.Errorf("a 30 min window shows the clean play of an hour ago: %+v", res.Sessions)
	}

	t.Run("arrow", func(t *testing.T) {
		ss := onlySession(t, s.trace(t, "device_id=dev-bts"))
		want := len(ss.Events) + len(ss.ServerEvents) + len(ss.StreamEvents)
		status, body := s.get(t, "device_id=dev-bts", queryToken, "application/vnd.apache.arrow.stream")
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		rd, err := ipc.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Release()
		idx := func(name string) int {
			is := rd.Schema().FieldIndices(name)
			if len(is) != 1 {
				t.Fatalf("no column %s in %v", name, rd.Schema())
			}
			return is[0]
		}
		var got []string
		for rd.Next() {
			rec := rd.RecordBatch()
			kind := rec.Column(idx("kind")).(*array.String)
			lt := rec.Column(idx("log_type")).(*array.String)
			sid := rec.Column(idx("trace_session_id")).(*array.String)
			for i := 0; i < int(rec.NumRows()); i++ {
				if sid.Value(i) != "s-bts" {
					t.Errorf("row of session %q", sid.Value(i))
				}
				got = append(got, kind.Value(i)+":"+lt.Value(i))
			}
		}
		if err := rd.Err(); err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("arrow rows %d, want %d", len(got), want)
		}
		if w := "client:play_start server:edge_access client:first_frame stream:push_stats stream:transcode stream:origin_stream client:play_stop"; strings.Join(got, " ") != w {
			t.Errorf("arrow rows\n got %s\nwant %s", strings.Join(got, " "), w)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			q, token string
			status   int
			msg      string
		}{
			{"device_id=dev-clean", "", 401, "bearer token"},
			{"device_id=dev-clean", "wrong", 401, "bearer token"},
			{"device_id=dev-clean&colour=red", queryToken, 400, "unknown parameter colour"},
			{"device_id=dev-clean&user_id=" + traceUser, queryToken, 400, "give exactly one of device_id, user_id, session_id, room_id, stream_id; got device_id and user_id"},
			{"app_id=" + testAppID, queryToken, 400, "give one of device_id"},
			{"device_id=dev-clean&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", queryToken, 400, "from (2026-01-02T00:00:00Z) must be before to (2026-01-01T00:00:00Z)"},
			{"device_id=dev-clean&from=yesterday", queryToken, 400, `from="yesterday"`},
			{"device_id=dev-clean&since=90d", queryToken, 400, "longer than"},
			{"device_id=dev-clean&limit=1000", queryToken, 400, "limit="},
			{"device_id=dev-clean&cursor=nope", queryToken, 400, "cursor="},
		} {
			status, body := s.get(t, c.q, c.token, "")
			var e query.ErrorBody
			json.Unmarshal(body, &e)
			if status != c.status || !strings.Contains(e.Error, c.msg) {
				t.Errorf("%s: %d %s, want %d …%s…", c.q, status, body, c.status, c.msg)
			}
		}
	})

	t.Run("cli", func(t *testing.T) {
		run := func(args ...string) (string, string, int) {
			cmd := exec.Command(lastmileBin(t), append([]string{"trace", "--addr", "http://" + s.p.HTTP}, args...)...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			cmd.Run()
			return out.String(), errb.String(), cmd.ProcessState.ExitCode()
		}
		out, stderr, code := run("--device", "dev-bts", "--token", queryToken, "--utc")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		// By default the stream context of a fine component is one line.
		for _, want := range []string{"== play session s-bts", "device dev-bts", "edge edge-9", "first frame 1,200 ms",
			"back-to-source 240 ms", "\n   transcode ok 720p", "\n   edge      ok edge-9 · 1 requests · status 200", "\n   push      ok 3,000 kbps"} {
			if !strings.Contains(out, want) {
				t.Errorf("timeline lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "stream transcode") || strings.Contains(out, "server edge_access") {
			t.Errorf("fine context events not folded:\n%s", out)
		}
		out, stderr, code = run("--device", "dev-bts", "--token", queryToken, "--utc", "--verbose")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"== play session s-bts", "server edge_access", "cache_hit=false", "stream transcode", "rendition=720p", "│ "} {
			if !strings.Contains(out, want) {
				t.Errorf("--verbose timeline lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "480p") {
			t.Errorf("timeline shows the other rendition:\n%s", out)
		}
		out, _, _ = run("--session", "s-rej", "--token", queryToken)
		if !strings.Contains(out, "rejected events (3)") || !strings.Contains(out, "out_of_range") {
			t.Errorf("rejected not shown:\n%s", out)
		}
		out, _, code = run("--device", "dev-block", "--token", queryToken, "--json")
		var res trace.Response
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res.Sessions) != 1 {
			t.Errorf("--json: exit %d, %v: %s", code, err, out)
		}
		if _, stderr, code := run("--device", "dev-bts", "--token", "wrong"); code != 1 || !strings.Contains(stderr, "401") {
			t.Errorf("wrong token: exit %d, %s", code, stderr)
		}
		if _, stderr, code := run("--device", "dev-bts", "--token", queryToken, "--since", "nonsense"); code != 1 || !strings.Contains(stderr, `since="nonsense"`) {
			t.Errorf("bad since: exit %d, %s", code, stderr)
		}
		if _, stderr, code := run("--device", "x", "--user", "y", "--token", queryToken); code != 2 || !strings.Contains(stderr, "exactly one") {
			t.Errorf("two ids: exit %d, %s", code, stderr)
		}
		cmd := exec.Command(lastmileBin(t), "trace", "--addr", "http://"+freePort(t), "--device", "x", "--token", "t")
		if b, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "cannot reach the query API") {
			t.Errorf("unreachable API: exit %d, %s", cmd.ProcessState.ExitCode(), b)
		}
	})
}
