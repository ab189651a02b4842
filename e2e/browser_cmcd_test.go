package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lastmile-qoe/lastmile/trace"
)

// Browser tests of CMCD v2 from real players: hls.js 1.7.4 and dash.js 5.2.1
// in headless Chromium (testdata/browser/cmcd.html), reporting in event mode
// to the collector of a real `lastmile run`. The helpers are browser_test.go's.

// startupClose: a startup time from CMCD within 60 ms or a quarter of the
// page's own: the player's state events and the page's frame callback run on
// one thread, tens of ms apart; a startup measured from another moment (a
// player's msd from its play call) is not close.
func startupClose(cmcd, page int64) bool {
	d := cmcd - page
	return cmcd > 0 && max(d, -d) <= max(60, page/4)
}

// cmcdPost is one POST of the page to /v1/cmcd and the collector's answer,
// as the page saw it (testdata/browser/cmcd-watch.js).
type cmcdPost struct {
	Body, Answer, Error string
	Status              int
}

// cmcdAnswer is the part of /v1/cmcd's answer the tests read.
type cmcdAnswer struct {
	Reports, Accepted int
	Rejected          []json.RawMessage
}

// openCMCDPage opens cmcd.html in a new tab: player (hlsjs or dashjs) plays
// src with CMCD v2 under session sid, event reports to collector.
func openCMCDPage(t *testing.T, browser context.Context, page, player, src, collector, sid string) context.Context {
	t.Helper()
	tab := newTab(t, browser)
	u := page + "/cmcd.html?" + url.Values{"player": {player}, "src": {src}, "collector": {collector},
		"key": {testKey}, "sid": {sid}}.Encode()
	if _, err := chromedp.Run(tab, chromedp.Navigate(u)); err != nil {
		t.Fatalf("%s: open %s: %v", player, u, err)
	}
	return tab
}

// checkCMCDPosts reads the page's posts to the collector and fails unless
// every one was answered 200 with each of its reports read and none
// rejected; it returns the number of reports and of events they became.
func checkCMCDPosts(t *testing.T, tab context.Context) (reports, accepted int) {
	t.Helper()
	posts, err := chromedp.Run(tab, chromedp.Evaluate[[]cmcdPost](`window.cmcdPosts`))
	if err != nil {
		t.Fatal(err)
	}
	if len(posts) == 0 {
		t.Fatal("the player posted no CMCD report to the collector")
	}
	for i, p := range posts {
		var a cmcdAnswer
		err := json.Unmarshal([]byte(p.Answer), &a)
		lines := len(strings.Split(strings.TrimSpace(p.Body), "\n"))
		if p.Status != 200 || err != nil || a.Reports != lines || len(a.Rejected) != 0 {
			t.Errorf("post %d of %d: %d %q (%s) for %d reports:\n%s", i, len(posts), p.Status, p.Answer, p.Error, lines, p.Body)
		}
		reports += a.Reports
		accepted += a.Accepted
	}
	return reports, accepted
}

// TestBrowserHLSJSCMCD: hls.js 1.7.4 with CMCD v2 plays the edge's HLS from a
// page of another origin, with request mode (bl and mtp among the keys) and
// an event target at the collector (ps, e, t every 2 s). The play becomes a
// lastmile session: the trace (API and `lastmile trace --session`) has
// play_start, a first_frame whose startup time is the page's own, and a
// heartbeat per interval, joined with the session's edge_access rows which
// carry the requests' bl and mtp; the metrics API counts one play with that
// startup time.
func TestBrowserHLSJSCMCD(t *testing.T) {
	web := webDir(t)
	browser := newBrowser(t)
	st := startBrowserStack(t)
	page := pageServer(t, web)
	sid := "e2e-hlsjs-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	tab := openCMCDPage(t, browser, page, "hlsjs", st.hls, st.collector, sid)
	o := playFor(t, tab, "hls.js", 8)
	pageStartup := o.FirstFrameAt - o.StartedAt
	reports, accepted := checkCMCDPosts(t, tab)
	t.Logf("page: first frame %d ms after the page started hls.js; %d CMCD reports posted, %d events accepted", pageStartup, reports, accepted)

	var s *trace.Session
	var beats []trace.Event
	waitFor(t, 30*time.Second, "the CMCD session in the trace with 3 heartbeats and the edge's rows", func() (bool, string) {
		s = traceSession(t, st.pipe, sid)
		if s == nil {
			return false, "no session"
		}
		beats = eventsOf(s.Events, "heartbeat")
		return s.Summary.FirstFrameTotalMs != nil && len(beats) >= 3 && len(eventsOf(s.ServerEvents, "edge_access")) >= 3,
			fmt.Sprintf("%d events, %d server events", len(s.Events), len(s.ServerEvents))
	})
	if n := len(eventsOf(s.Events, "play_start")); n != 1 {
		t.Errorf("%d play_start, want 1", n)
	}
	if n := len(eventsOf(s.Events, "first_frame")); n != 1 {
		t.Errorf("%d first_frame, want 1", n)
	}
	// CMCD's startup runs from hls.js's first report (at loadSource) to
	// sta=p (the element's `playing`); the page's from just before
	// loadSource to the first presented frame.
	startup := *s.Summary.FirstFrameTotalMs
	if !startupClose(startup, pageStartup) {
		t.Errorf("first frame from CMCD %d ms, the page saw %d ms", startup, pageStartup)
	}
	for i, b := range beats[1:] { // the first e=t comes at once, with no interval before it
		if iv, ok := b.Int("interval_ms"); !ok || iv < 1500 || iv > 2500 {
			t.Errorf("heartbeat %d: interval_ms %d (%v), want about 2000 (e=t every 2 s)", i+1, iv, ok)
		}
	}
	checkEdgeCMCD(t, s)
	checkRequests(t, s)

	out, err := exec.Command(lastmileBin(t), "trace", "--addr", st.collector, "--token", queryToken, "--since", "1h",
		"--session", sid, "--verbose").CombinedOutput()
	if err != nil {
		t.Fatalf("lastmile trace --session %s: %v\n%s", sid, err, out)
	}
	t.Logf("trace: first frame %d ms from CMCD, %d heartbeats; lastmile trace --session %s:\n%s", startup, len(beats), sid, out)
	for _, w := range []string{"== play session " + sid, "play_start", fmt.Sprintf("first frame %d ms", startup), "heartbeat", "edge_access", "cmcd_bl", "cmcd_mtp", "client request", "ttfb_ms="} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("lastmile trace lacks %q:\n%s", w, out)
		}
	}

	checkOnePlay(t, st.pipe, startup)
}

// checkRequests: hls.js's e=rr reports (one per segment it loaded) are the
// session's request events: status 200, the player's times to first and
// last byte (ttlb ≥ ttfb > 0), the URL without the edge's signature; and
// each segment the player timed (before the edge's latest stored row) was
// served by the edge in this session.
func checkRequests(t *testing.T, s *trace.Session) {
	t.Helper()
	served := map[string]bool{}
	var lastEdge time.Time
	for _, e := range eventsOf(s.ServerEvents, "edge_access") {
		served[e.Str("path")] = true
		lastEdge = e.TS
	}
	segs := 0
	for _, e := range eventsOf(s.Events, "request") {
		u := e.Str("url")
		st, _ := e.Int("http_status")
		ttfb, okf := e.Int("ttfb_ms")
		ttlb, okl := e.Int("ttlb_ms")
		t.Logf("request %s status %d ttfb %d ttlb %d ot %s", u, st, ttfb, ttlb, e.Str("cmcd_ot"))
		if st != 200 || !okf || !okl || ttfb <= 0 || ttlb < ttfb || strings.ContainsAny(u, "?#") {
			t.Errorf("request %s: status %d, ttfb %d (%v), ttlb %d (%v); want 200, 0 < ttfb ≤ ttlb, no query", u, st, ttfb, okf, ttlb, okl)
		}
		if strings.HasSuffix(u, ".ts") {
			segs++
			// The edge's row of the latest request may not be stored yet.
			if p, err := url.Parse(u); (err != nil || !served[p.Path]) && e.TS.Before(lastEdge) {
				t.Errorf("request %s: the edge logged no request of its path in the session", u)
			}
		}
	}
	if segs < 3 {
		t.Errorf("%d segment requests reported by hls.js (e=rr); want 3 or more", segs)
	}
}

// checkEdgeCMCD: every media segment request of the session at the edge
// kept the buffer length and measured throughput hls.js sent with it.
func checkEdgeCMCD(t *testing.T, s *trace.Session) {
	t.Helper()
	segs, withBuffer := 0, 0
	for _, e := range eventsOf(s.ServerEvents, "edge_access") {
		if !strings.HasSuffix(e.Str("path"), ".ts") {
			continue
		}
		segs++
		bl, okB := e.Int("cmcd_bl")
		mtp, okM := e.Int("cmcd_mtp")
		if !okB || !okM || bl < 0 || mtp <= 0 {
			t.Errorf("edge_access %s: cmcd_bl %s, cmcd_mtp %s: want the buffer (≥ 0) and throughput (> 0) hls.js sent", e.Str("path"), e.Get("cmcd_bl"), e.Get("cmcd_mtp"))
		}
		if bl > 0 {
			withBuffer++
		}
	}
	t.Logf("edge: %d segment requests of the session, %d with a buffer ahead", segs, withBuffer)
	if segs < 3 || withBuffer == 0 {
		t.Errorf("%d segment requests (%d with bl > 0) in the session's edge rows; want 3 or more, some with a buffer", segs, withBuffer)
	}
}

func eventsOf(evs []trace.Event, logType string) []trace.Event {
	var out []trace.Event
	for _, e := range evs {
		if e.LogType == logType {
			out = append(out, e)
		}
	}
	return out
}

// TestBrowserDashJSCMCD: dash.js 5.2.1 plays a 6 s static DASH stream (the
// edge serves no DASH, so ffmpeg makes one and the page's server serves it)
// with a CMCD v2 event target at the collector. Every report is accepted,
// and the play is in the store as dash.js told it: play_start, a first_frame
// whose startup time is close to the page's, and a play_stop with code 0
// when the stream ends.
func TestBrowserDashJSCMCD(t *testing.T) {
	web := webDir(t)
	browser := newBrowser(t)
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	dash := t.TempDir()
	ff := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
		"-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
		"-f", "dash", "-seg_duration", "1", "-use_template", "1", "-use_timeline", "0", filepath.Join(dash, "stream.mpd"))
	if out, err := ff.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: DASH test stream: %v\n%s", err, out)
	}
	page := pageServer(t, web, [2]string{"/dash/", dash})
	sid := "e2e-dashjs-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	tab := openCMCDPage(t, browser, page, "dashjs", page+"/dash/stream.mpd", "http://"+pipe.HTTP, sid)
	o := playFor(t, tab, "dash.js", 4)
	pageStartup := o.FirstFrameAt - o.StartedAt
	waitFor(t, 20*time.Second, "the DASH stream to end", func() (bool, string) {
		ended, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById('v').ended`))
		return err == nil && ended, fmt.Sprint(err)
	})
	var rows []map[string]any
	waitFor(t, 30*time.Second, "the dash.js session's play_stop in the store", func() (bool, string) {
		var err error
		rows, err = pipe.sql(fmt.Sprintf("SELECT log_type, total_ms, code, protocol FROM events WHERE session_id = '%s' ORDER BY ts", sid))
		for _, r := range rows {
			if r["log_type"] == "play_stop" {
				return true, ""
			}
		}
		return false, fmt.Sprint(rows, err)
	})
	reports, accepted := checkCMCDPosts(t, tab)
	t.Logf("page: first frame %d ms; %d CMCD reports posted, %d events accepted; store: %v", pageStartup, reports, accepted, rows)
	kinds := map[string][]map[string]any{}
	for _, r := range rows {
		kinds[fmt.Sprint(r["log_type"])] = append(kinds[fmt.Sprint(r["log_type"])], r)
	}
	if len(kinds["play_start"]) != 1 || len(kinds["first_frame"]) != 1 || len(kinds["play_stop"]) != 1 {
		t.Fatalf("store rows of the session: %v; want one play_start, first_frame and play_stop", rows)
	}
	if startup := toInt(t, kinds["first_frame"][0]["total_ms"]); !startupClose(startup, pageStartup) {
		t.Errorf("first frame from dash.js's CMCD %d ms, the page saw %d ms", startup, pageStartup)
	}
	// dash.js's first reports (before the manifest) carry no sf, so
	// play_start has no protocol; the later ones say sf=d.
	for _, k := range []string{"first_frame", "play_stop"} {
		if p := kinds[k][0]["protocol"]; p != "dash" {
			t.Errorf("%s: protocol %v, want dash (sf=d)", k, p)
		}
	}
	if code := toInt(t, kinds["play_stop"][0]["code"]); code != 0 {
		t.Errorf("play_stop code %d, want 0 (the stream ended)", code)
	}
}
