package e2e

import (
	"bytes"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCMCDEventMode posts CMCD v2 event reports as hls.js 1.7.4 sends them
// (issue 20's samples: e=ps with sta, e=rr, e=t) to the collector of a real
// `lastmile run`, with an edge access row of the same sid, and reads the
// session back: the trace shows play_start, first_frame, heartbeats and the
// stall from CMCD joined with the edge row, and the metrics API counts the
// play with its startup time.
func TestCMCDEventMode(t *testing.T) {
	p := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	sid := "91a28b06-b2f5-429e-acd2-e25e2a3143d5"
	t0 := time.Now().Add(-10 * time.Minute).UnixMilli()
	rep := func(e, sta string, at int64, extra string) string {
		s := fmt.Sprintf(`cid="room1",e=%s,mtp=(500),sf=h,sid="%s",sn=2,sta=%s,ts=%d,v=2`, e, sid, sta, t0+at)
		if extra != "" {
			s = extra + "," + s
		}
		return s
	}
	body := strings.Join([]string{
		rep("ps", "s", 0, ""),
		rep("rr", "s", 80, `br=(0),rc=200,st=l,ttfb=15,ttlb=31,url="http://edge/live/room1/seg-508.ts"`),
		rep("ps", "p", 640, ""),
		rep("t", "p", 10_640, "bl=(4400),br=(800)"),
		rep("rr", "p", 12_000, `bl=(4100),br=(800),d=2000,ot=v,rc=404,ttfb=120,ttlb=480,url="http://edge/live/room1/seg-509.ts?sig=SECRET"`),
		rep("ps", "r", 15_000, ""),
		rep("ps", "p", 16_500, ""),
		rep("t", "p", 20_640, "bl=(3000)"),
	}, "\n")
	resp, ans, r := postCMCDBody(t, p, body, "http://127.0.0.1:1") // a page on another origin
	// Every report accepted: the pairing stage maps them after the answer.
	if resp.StatusCode != 200 || r.Reports != 8 || r.Accepted != 8 || len(r.Rejected) != 0 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("POST /v1/cmcd: %d %s (allow origin %q)", resp.StatusCode, ans, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	edge := fmt.Sprintf(`{"event_id":"cmcd-e2e-edge","log_type":"edge_access","ts":%d,"session_id":%q,"node_id":"edge-a-north-1","stream_id":"live/room1","http_status":200,"first_byte_ms":12,"path":"/live/room1/seg-508.ts"}`, t0+70, sid)
	if pr, err := p.post([]byte(edge), false, testKey); err != nil || pr.Accepted != 1 {
		t.Fatalf("edge row: %v %+v", err, pr)
	}

	waitFor(t, 60*time.Second, "the CMCD session in the store", func() (bool, string) {
		rows, err := p.sql(fmt.Sprintf("SELECT count() AS n FROM events WHERE session_id = '%s'", sid))
		if err != nil || len(rows) != 1 {
			return false, fmt.Sprint(rows, err)
		}
		n := toInt(t, rows[0]["n"])
		return n == 8, fmt.Sprintf("%d rows", n)
	})
	rows, err := p.sql(fmt.Sprintf("SELECT log_type, total_ms, duration_ms, buffer_ms, protocol, room_id FROM events WHERE session_id = '%s' AND source = 'client' ORDER BY ts", sid))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range rows {
		got = append(got, fmt.Sprint(row["log_type"], " ", row["total_ms"], " ", row["duration_ms"], " ", row["buffer_ms"], " ", row["protocol"], " ", row["room_id"]))
	}
	want := []string{"play_start <nil> <nil> <nil> hls room1", "request <nil> <nil> <nil> hls room1", "first_frame 640 <nil> <nil> hls room1",
		"heartbeat <nil> <nil> 4400 hls room1", "request <nil> <nil> <nil> hls room1", "stall <nil> 1500 <nil> hls room1", "heartbeat <nil> <nil> 3000 hls room1"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("client rows of the session:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The request view: the player's timing of each request, its URL
	// without the signature.
	rows, err = p.sql(fmt.Sprintf("SELECT url, http_status, ttfb_ms, ttlb_ms, cmcd_ot, cmcd_d, cmcd_bl FROM request WHERE session_id = '%s' ORDER BY ts", sid))
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, row := range rows {
		got = append(got, fmt.Sprint(row["url"], " ", row["http_status"], " ", row["ttfb_ms"], " ", row["ttlb_ms"], " ", row["cmcd_ot"], " ", row["cmcd_d"], " ", row["cmcd_bl"]))
	}
	want = []string{"http://edge/live/room1/seg-508.ts 200 15 31  <nil> <nil>", "http://edge/live/room1/seg-509.ts 404 120 480 v 2000 4100"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("request rows of the session:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	text := runTrace(t, p, sid, "--verbose")
	for _, w := range []string{"== play session " + sid, "play_start", "first frame 640 ms", "heartbeat", "stall", "edge_access", "ttfb_ms=120"} {
		if !strings.Contains(text, w) {
			t.Errorf("trace lacks %q:\n%s", w, text)
		}
	}
	t.Logf("lastmile trace --session %s --verbose:\n%s", sid, text)
	// Without --verbose a request is one line: status, ttfb, ttlb, type, path.
	text = runTrace(t, p, sid)
	for _, w := range []string{"client request        status=200 ttfb=15ms ttlb=31ms /live/room1/seg-508.ts\n",
		"client request        status=404 ttfb=120ms ttlb=480ms ot=v /live/room1/seg-509.ts\n"} {
		if !strings.Contains(text, w) {
			t.Errorf("trace lacks %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, "SECRET") {
		t.Errorf("trace shows the request's signature:\n%s", text)
	}
	t.Logf("lastmile trace --session %s:\n%s", sid, text)

	checkOnePlay(t, p, 640)
}

// runTrace runs `lastmile trace --session sid` against p and returns its
// output.
func runTrace(t *testing.T, p *proc, sid string, flags ...string) string {
	t.Helper()
	cmd := exec.Command(lastmileBin(t), append([]string{"trace", "--addr", "http://" + p.HTTP, "--token", queryToken, "--since", "1h", "--session", sid}, flags...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("lastmile trace --session %s: %v\n%s", sid, err, errb.String())
	}
	return out.String()
}

// checkOnePlay: the metrics API counts one attempt and one play of the app,
// with startupMs as its startup time.
func checkOnePlay(t *testing.T, p *proc, startupMs int64) {
	t.Helper()
	q := func(metric string, extra ...string) url.Values {
		v := url.Values{"metric": {metric}, "since": {"1h"}, "app_id": {testAppID}, "read": {"raw"}, "step": {"1m"}}
		for i := 0; i < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	for _, c := range []struct {
		v    url.Values
		want string
	}{
		{q("attempts"), "map[:1]"},
		{q("plays"), "map[:1]"},
		{q("video_startup_time", "quantile", "0.5"), fmt.Sprintf("map[:%d]", startupMs)},
	} {
		code, a, msg := p.getMetrics(t, c.v)
		if code != 200 {
			t.Fatalf("%s: %d %s", c.v.Encode(), code, msg)
		}
		if got := fmt.Sprint(totals(a)); got != c.want {
			t.Errorf("%s: totals %s, want %s", c.v.Encode(), got, c.want)
		}
	}
}
