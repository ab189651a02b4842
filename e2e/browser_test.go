package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/lastmile-qoe/lastmile/trace"
)

// Browser tests: real players (hls.js, mpegts.js, the lastmile SDK) in
// headless Debian Chromium, on a page served from an origin of its own,
// playing the edges of a real `lastmile media up` stack that reports to a
// real `lastmile run`. scripts/install-system-deps.sh installs chromium and
// scripts/install-web-deps.sh the pinned npm packages (both from `make deps`).
//
// LASTMILE_E2E_CORS_PROXY=1 sends the browser through a forward proxy that
// adds CORS headers to every answer: for developing the pages against a
// stack without CORS only. The tests prove nothing about CORS then.

// needChromium finds the browser; without it the test skips, except under
// CI=true, where `make deps` installs it and a missing one is a failure.
func needChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("LASTMILE_CHROMIUM"), "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: make deps installs it (scripts/install-system-deps.sh)")
	}
	t.Skip("chromium not found: install it (apt-get install chromium, or make deps) to run the browser tests")
	return ""
}

// webDir is sdk/web with its npm packages installed and the SDK built.
func webDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "sdk", "web"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"node_modules/hls.js/dist/hls.min.js", "node_modules/mpegts.js/dist/mpegts.js",
		"node_modules/dashjs/dist/modern/umd/dash.all.min.js", "dist/lastmile.js"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			msg := fmt.Sprintf("%s missing: run scripts/install-web-deps.sh (make deps) to install the pinned npm packages and build the SDK", f)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
}

// pageServer serves the test pages, the npm packages and the SDK bundle
// from 127.0.0.1 on a port of its own: an origin that is neither the
// edges' nor the collector's. mounts adds directories: URL prefix → dir.
func pageServer(t *testing.T, web string, mounts ...[2]string) string {
	mux := http.NewServeMux()
	mux.Handle("/node_modules/", http.FileServer(http.Dir(web)))
	mux.Handle("/sdk/", http.StripPrefix("/sdk/", http.FileServer(http.Dir(filepath.Join(web, "dist")))))
	for _, m := range mounts {
		mux.Handle(m[0], http.StripPrefix(m[0], http.FileServer(http.Dir(m[1]))))
	}
	mux.Handle("/", http.FileServer(http.Dir(filepath.Join("testdata", "browser"))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// corsProxy is the development-only forward proxy (LASTMILE_E2E_CORS_PROXY).
func corsProxy(t *testing.T) string {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = loopbackHost(pr.In.URL.Host)
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1, // HTTP-FLV streams
		ErrorLog:      log.New(io.Discard, "", 0),
		ModifyResponse: func(r *http.Response) error {
			r.Header.Set("Access-Control-Allow-Origin", "*")
			r.Header.Set("Access-Control-Expose-Headers", "*")
			r.Header.Set("Timing-Allow-Origin", "*")
			return nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, POST")
			w.Header().Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// loopbackHost maps the stack's edge host names (*.lastmile.test, which
// its own DNS serves) to the loopback address they all listen on.
func loopbackHost(hostport string) string {
	h, p, err := net.SplitHostPort(hostport)
	if err == nil && strings.HasSuffix(h, ".lastmile.test") {
		return net.JoinHostPort("127.0.0.1", p)
	}
	return hostport
}

// newBrowser starts headless Chromium and returns a context for its first
// tab. Edge host names resolve to the loopback, as the stack's DNS would.
func newBrowser(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // headless, no background networking
		chromedp.ExecPath(needChromium(t)),
		chromedp.NoSandbox, // root in CI
		chromedp.Flag("host-resolver-rules", "MAP *.lastmile.test 127.0.0.1"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("mute-audio", true),
	)
	if os.Getenv("LASTMILE_E2E_CORS_PROXY") == "1" {
		t.Log("LASTMILE_E2E_CORS_PROXY=1: the browser goes through a CORS-adding proxy; CORS itself is not tested")
		opts = append(opts, chromedp.Flag("proxy-server", "http://"+corsProxy(t)), chromedp.Flag("proxy-bypass-list", "<-loopback>"))
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens another tab of the browser of ctx.
func newTab(t *testing.T, ctx context.Context) context.Context {
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	return tab
}

// browserStack is a pipeline plus a media stack whose built-in publisher
// pushes room1; hls and flv are an edge's URLs of its source rendition, as
// the scheduler hands them to a player.
type browserStack struct {
	pipe      *proc
	hls, flv  string
	collector string
}

func startBrowserStack(t *testing.T) *browserStack {
	t.Helper()
	pipe := start(t, "run", filepath.Join(t.TempDir(), "data"), "--kafka-listen", "127.0.0.1:0")
	sched, _ := startMedia(t, mediaTopology(t, pipe.HTTP, ""))
	var sd struct {
		Renditions []struct {
			Name string
			Main struct{ URLs map[string]string }
		}
	}
	getJSON(t, sched+"/v1/schedule?room=room1&region=north&device_id=browser-e2e&isp=isp-a&app_version=web", &sd)
	if len(sd.Renditions) == 0 {
		t.Fatal("scheduler gave no rendition for room1")
	}
	s := &browserStack{pipe: pipe, hls: sd.Renditions[0].Main.URLs["hls"], flv: sd.Renditions[0].Main.URLs["flv"],
		collector: "http://" + pipe.HTTP}
	// A live HLS play starts three target durations behind the live edge: wait
	// until the playlist has that much, so each test measures the play only.
	waitFor(t, 60*time.Second, "room1's HLS playlist with 3 segments at the edge", func() (bool, string) {
		n, err := playlistSegments(s.hls)
		return err == nil && n >= 3, fmt.Sprintf("%d segments, %v", n, err)
	})
	return s
}

func playlistSegments(u string) (int, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return 0, err
	}
	host := pu.Host
	pu.Host = loopbackHost(pu.Host)
	req, _ := http.NewRequest(http.MethodGet, pu.String(), nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	return strings.Count(string(b), "#EXTINF"), nil
}

// pageObs is the page's own account of its play (testdata/browser/observe.js).
// pageWait is a stall the page saw: from waiting to playing again, Date.now() ms.
type pageWait struct{ At, End, Ms int64 }

type pageObs struct {
	Errors       []string
	Waits        []pageWait
	Seeks        []int64 // when the element began seeking, Date.now() ms
	StartedAt    int64
	FirstFrameAt int64
	Time         float64
	WaitingNow   bool
	Native       bool
}

func readObs(ctx context.Context) (pageObs, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[pageObs](`window.obs`))
}

// playFor waits until the page's play head has advanced `advance` beyond
// where it was at the first frame; it fails on a player error. The bound
// on wall time is generous: a live stream advances in real time.
func playFor(t *testing.T, ctx context.Context, name string, advance float64) pageObs {
	t.Helper()
	var o pageObs
	var err error
	var t0 float64 = -1
	deadline := time.Now().Add(time.Duration(advance*1000)*time.Millisecond + 45*time.Second)
	for time.Now().Before(deadline) {
		o, err = readObs(ctx)
		if err != nil {
			t.Fatalf("%s: read the page: %v", name, err)
		}
		if len(o.Errors) > 0 {
			t.Fatalf("%s: player errors: %v", name, o.Errors)
		}
		if o.FirstFrameAt > 0 && t0 < 0 {
			t0 = o.Time
		}
		if t0 >= 0 && o.Time-t0 >= advance {
			return o
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: play head at %.1f s, from %.1f s at the first frame: want %.0f s more (page: %+v)", name, o.Time, t0, advance, o)
	return o
}

// TestBrowserPlayersPlayEdge: hls.js 1.7.4 plays the edge's HLS and
// mpegts.js 1.8.2 its HTTP-FLV from a page of another origin, with no
// proxy: playback starts and the play head advances 30 s with no stall
// (no `waiting` after the first frame). Both play at once, in two tabs.
func TestBrowserPlayersPlayEdge(t *testing.T) {
	web := webDir(t)
	browser := newBrowser(t)
	st := startBrowserStack(t)
	page := pageServer(t, web)
	plays := map[string]string{
		"hls.js":    page + "/player.html?kind=hls&src=" + url.QueryEscape(st.hls),
		"mpegts.js": page + "/player.html?kind=flv&src=" + url.QueryEscape(st.flv),
	}
	tabs := map[string]context.Context{}
	for name, u := range plays {
		tabs[name] = newTab(t, browser)
		if err := chromedp.Do(tabs[name], chromedp.Navigate(u)); err != nil {
			t.Fatalf("%s: open %s: %v", name, u, err)
		}
	}
	for name := range plays {
		o := playFor(t, tabs[name], name, 30)
		if len(o.Waits) > 0 || o.WaitingNow {
			t.Errorf("%s stalled after its first frame: %+v", name, o.Waits)
		}
		t.Logf("%s: first frame %d ms after the page started it, play head %.1f s", name, o.FirstFrameAt-o.StartedAt, o.Time)
	}
}

// TestBrowserSDKSession: the SDK on a plain <video> playing the edge's HLS
// reports a session whose first frame and stalls are the ones the page saw,
// with Chromium's own HLS and with hls.js (the SDK's adapter, and the
// session's id as hls.js's CMCD sid). The test throttles the browser's
// network below the stream's bitrate for a while, so each play stalls for
// real; the trace API's view of each session (by the SDK's session id) must
// match the page's own record. Both plays run at once, in two tabs.
func TestBrowserSDKSession(t *testing.T) {
	web := webDir(t)
	browser := newBrowser(t)
	st := startBrowserStack(t)
	page := pageServer(t, web)
	base := page + "/sdk.html?src=" + url.QueryEscape(st.hls) + "&collector=" + url.QueryEscape(st.collector) + "&key=" + testKey
	plays := []struct{ name, query string }{{"native", ""}, {"hls.js", "&player=hlsjs"}}
	tabs := make([]context.Context, len(plays))
	for i, p := range plays {
		tabs[i] = newTab(t, browser)
		if err := chromedp.Do(tabs[i], chromedp.Navigate(base+p.query)); err != nil {
			t.Fatalf("%s: open the page: %v", p.name, err)
		}
	}
	for i, p := range plays {
		playFor(t, tabs[i], p.name, 3)
	}
	// 64 kB/s (a quarter of the 2 Mb/s stream) until the buffer (a few segments, how
	// many depends on where the play started) runs dry, then 2 s more.
	for i, p := range plays {
		throttle(t, tabs[i], 64_000)
		waitFor(t, 40*time.Second, p.name+" to stall under throttling", func() (bool, string) {
			o, err := readObs(tabs[i])
			return err == nil && (o.WaitingNow || len(o.Errors) > 0), fmt.Sprintf("%+v %v", o, err)
		})
	}
	time.Sleep(2 * time.Second)
	for _, tab := range tabs {
		throttle(t, tab, -1)
	}
	for i, p := range plays {
		t.Run(p.name, func(t *testing.T) { checkSDKSession(t, st.pipe, tabs[i], p.name == "hls.js") })
	}
}

// checkSDKSession stops the tab's play and compares the trace of its SDK
// session with the page's record; withCMCD also wants the edge's rows of
// the session (hls.js sent the SDK's session id as CMCD sid).
func checkSDKSession(t *testing.T, st *proc, tab context.Context, withCMCD bool) {
	var o pageObs
	waitFor(t, 40*time.Second, "the page's stall to end", func() (bool, string) {
		var err error
		o, err = readObs(tab)
		return err == nil && len(o.Waits) > 0 && !o.WaitingNow, fmt.Sprintf("%+v %v", o, err)
	})
	o = playFor(t, tab, "the page after the stall", 2)
	sid, err := chromedp.Run(tab, chromedp.Evaluate[string](`window.session.stop(), window.session.sessionId`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the SDK to send every event", func() (bool, string) {
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](`window.session.reporter.pending`))
		return err == nil && n == 0, fmt.Sprintf("%d pending, %v", n, err)
	})
	t.Logf("page: first frame %d ms (at %d), stalls %+v, seeks at %v", o.FirstFrameAt-o.StartedAt, o.FirstFrameAt, o.Waits, o.Seeks)

	var s *trace.Session
	waitFor(t, 30*time.Second, "the SDK session's play_stop in the trace", func() (bool, string) {
		s = traceSession(t, st, sid)
		return s != nil && s.Summary.StopCode != nil, fmt.Sprintf("session %v", s != nil)
	})
	sum := s.Summary
	if !sum.ReachedFirstFrame || sum.FirstFrameTotalMs == nil {
		t.Fatalf("trace summary has no first frame: %+v", sum)
	}
	want := o.FirstFrameAt - o.StartedAt
	if d := *sum.FirstFrameTotalMs - want; d < -150 || d > 150 {
		t.Errorf("first frame: SDK reported %d ms, the page saw %d ms", *sum.FirstFrameTotalMs, want)
	}
	var stalls []int64
	var sdkFirst int64 // the SDK's first frame, ms since the epoch as the page's
	for i := range s.Events {
		switch s.Events[i].LogType {
		case "stall":
			d, _ := s.Events[i].Int("duration_ms")
			stalls = append(stalls, d)
		case "first_frame":
			sdkFirst = s.Events[i].TS.UnixMilli()
		}
	}
	t.Logf("trace of %s: first frame %d ms, stalls %v ms, stop code %d, %d edge rows", sid, *sum.FirstFrameTotalMs, stalls, *sum.StopCode, len(s.ServerEvents))
	// A wait before the SDK's first frame is startup to the SDK: the page's
	// and the SDK's frame callbacks may see the first frame a frame apart
	// (the first frame's time is checked above).
	var waits []pageWait
	for _, w := range o.Waits {
		if w.At >= sdkFirst {
			waits = append(waits, w)
		} else {
			t.Logf("the page's wait %+v came before the SDK's first frame (%d): startup to the SDK", w, sdkFirst)
		}
	}
	if len(waits) == 0 {
		t.Fatalf("the page saw no stall after the SDK's first frame (%d): %+v; the throttled stall is what is compared", sdkFirst, o.Waits)
	}
	if len(stalls) != len(waits) {
		t.Fatalf("stalls: SDK reported %v, the page saw %+v (SDK's first frame at %d)", stalls, o.Waits, sdkFirst)
	}
	for i, w := range waits {
		if d := stalls[i] - w.Ms; d < -300 || d > 300 {
			t.Errorf("stall %d: SDK reported %d ms, the page saw %d ms", i, stalls[i], w.Ms)
		}
	}
	if *sum.StopCode != 0 {
		t.Errorf("play_stop code %d, want 0 (the page stopped normally)", *sum.StopCode)
	}
	if withCMCD {
		edge := 0
		for i := range s.ServerEvents {
			if s.ServerEvents[i].LogType == "edge_access" {
				edge++
			}
		}
		if edge == 0 {
			t.Errorf("no edge_access row joins session %s: hls.js's CMCD sid is not the SDK's session id", sid)
		}
	}
}

// throttle caps the tab's download rate (bytes/s; -1 lifts the cap).
func throttle(t *testing.T, ctx context.Context, bps float64) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
		MatchedNetworkConditions: []*network.Conditions{{DownloadThroughput: bps, UploadThroughput: -1}},
	})
	if err != nil {
		t.Fatalf("throttle to %v B/s: %v", bps, err)
	}
}

// traceSession is GET /api/v1/trace?session_id=sid's session, or nil.
func traceSession(t *testing.T, p *proc, sid string) *trace.Session {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/trace?since=1h&session_id="+url.QueryEscape(sid), nil)
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res trace.Response
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("trace %s: %s %s", sid, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	for i := range res.Sessions {
		if res.Sessions[i].SessionID == sid {
			return &res.Sessions[i]
		}
	}
	return nil
}
