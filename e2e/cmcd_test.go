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
		rep("ps", "r", 15_000, ""),
		rep("ps", "p", 16_500, ""),
		rep("t", "p", 20_640, "bl=(3000)"),
	}, "\n")
	req, _ := http.NewRequest("POST", "http://"+p.HTTP+"/v1/cmcd?key="+testKey, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/cmcd")
	req.Header.Set("Origin", "http://127.0.0.1:1") // a page on another origin
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var r struct {
		Reports, Accepted int
		Rejected          []any
	}
	json.Unmarshal(ans, &r)
	// play_start, first_frame, 2 heartbeats, stall.
	if resp.StatusCode != 200 || r.Reports != 7 || r.Accepted != 5 || len(r.Rejected) != 0 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
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
		return n == 6, fmt.Sprintf("%d rows", n)
	})
	rows, err := p.sql(fmt.Sprintf("SELECT log_type, total_ms, duration_ms, buffer_ms, protocol, room_id FROM events WHERE session_id = '%s' AND source = 'client' ORDER BY ts", sid))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range rows {
		got = append(got, fmt.Sprint(row["log_type"], " ", row["total_ms"], " ", row["duration_ms"], " ", row["buffer_ms"], " ", row["protocol"], " ", row["room_id"]))
	}
	want := []string{"play_start <nil> <nil> <nil> hls room1", "first_frame 640 <nil> <nil> hls room1", "heartbeat <nil> <nil> 4400 hls room1",
		"stall <nil> 1500 <nil> hls room1", "heartbeat <nil> <nil> 3000 hls room1"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("client rows of the session:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	cmd := exec.Command(lastmileBin(t), "trace", "--addr", "http://"+p.HTTP, "--token", queryToken, "--since", "1h", "--session", sid, "--verbose")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("lastmile trace --session %s: %v\n%s", sid, err, errb.String())
	}
	text := out.String()
	for _, w := range []string{"== play session " + sid, "play_start", "first frame 640 ms", "heartbeat", "stall", "edge_access"} {
		if !strings.Contains(text, w) {
			t.Errorf("trace lacks %q:\n%s", w, text)
		}
	}
	t.Logf("lastmile trace --session %s:\n%s", sid, text)

	checkOnePlay(t, p, 640)
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
