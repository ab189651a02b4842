package player

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/media/dns"
	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/hls"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/sample"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
	"github.com/lastmile-qoe/lastmile/media/sign"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// The test stack: the real scheduler, the real DNS server and a fake edge
// serving the real sample stream at real-time pace, all over real sockets.
// cdn-a (weight 100) always takes the main line, cdn-b the backup.
const (
	secret   = "test-secret"
	mainHost = "edge-a-south-1.cdn-a.lastmile.test"
	backHost = "edge-b-south-1.cdn-b.lastmile.test"
	testRoom = "r1"
)

type stack struct {
	dns       *dns.Server
	edge      *edge
	scheduler string
	resolver  *net.Resolver
}

func newStack(t *testing.T) *stack {
	t.Helper()
	e := newEdge(t)
	_, port, _ := net.SplitHostPort(e.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)

	d := &dns.Server{Records: map[string][]net.IP{
		mainHost: {net.IPv4(127, 0, 0, 1)},
		backHost: {net.IPv4(127, 0, 0, 1)},
	}}
	addr, err := d.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("dns: %v", err)
	}
	t.Cleanup(func() { d.Close() })

	svc, err := scheduler.New(scheduler.Config{
		Secret:    secret,
		PushToken: "test-push-token",
		IngestURL: "rtmp://127.0.0.1:1935/live",
		CDNs: []scheduler.CDN{
			{Name: "cdn-a", Weight: 100, Edges: []scheduler.Edge{{Node: "edge-a-south-1", Region: "south", Host: mainHost, Port: p}}},
			{Name: "cdn-b", Weight: 0, Edges: []scheduler.Edge{{Node: "edge-b-south-1", Region: "south", Host: backHost, Port: p}}},
		},
		Renditions: []scheduler.Rendition{{Name: "source", BitrateKbps: 300, Width: 426, Height: 240}},
	}, nil)
	if err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	ss := httptest.NewServer(svc.Handler())
	t.Cleanup(ss.Close)
	return &stack{dns: d, edge: e, scheduler: ss.URL, resolver: dns.Resolver(addr.String())}
}

// config is a short session against the stack.
func (st *stack) config(rep Reporter) Config {
	return Config{
		SchedulerURL: st.scheduler, Room: testRoom,
		DeviceID: "d42", UserID: "u7",
		Region: "south", ISP: "isp-a", AppVersion: "1.2.0", OS: "linux", Network: "wifi", AppID: "app1",
		Resolver: st.resolver, Reporter: rep,
		Duration: 3 * time.Second, HeartbeatEvery: time.Second, FirstFrameTimeout: 3 * time.Second,
	}
}

// edgeFault makes the fake edge misbehave for one host.
type edgeFault struct {
	status    int           // answer this HTTP status
	hang      bool          // never answer
	noVideo   bool          // answer 200 and the FLV header, then nothing
	garbage   bool          // answer 200 and bytes that are not FLV
	pauseAt   time.Duration // media time at which to stop sending …
	pauseFor  time.Duration // … for this long (the live source keeps going)
	abortAt   time.Duration // media time at which to cut the connection
	cacheMiss bool          // X-Cache: MISS
	burst     time.Duration // media sent at once on connect (a GOP cache)
	stampAge  time.Duration // stamp keyframes with a capture time this long before they are due (upstream delay)
}

type edgeRequest struct {
	host, path        string
	querySID, hdrSID  string
	signatureVerified bool
}

type edge struct {
	srv      *httptest.Server
	mu       sync.Mutex
	faults   map[string]edgeFault
	requests []edgeRequest
	hls      *hls.Packager // serves /live/r1/… when set
}

func newEdge(t *testing.T) *edge {
	e := &edge{faults: map[string]edgeFault{}}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *edge) setFault(host string, f edgeFault) {
	e.mu.Lock()
	e.faults[host] = f
	e.mu.Unlock()
}

func (e *edge) seen() []edgeRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]edgeRequest(nil), e.requests...)
}

func (e *edge) serve(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.Host)
	q, _ := cmcd.Parse(r.URL.Query().Get("CMCD"))
	h, _ := cmcd.Parse(r.Header.Get("CMCD-Session"))
	verr := sign.Verify(secret, r.URL.Path, r.URL.Query(), time.Now(), 0)
	e.mu.Lock()
	f := e.faults[host]
	p := e.hls
	e.requests = append(e.requests, edgeRequest{host: host, path: r.URL.Path, querySID: q.SessionID(), hdrSID: h.SessionID(), signatureVerified: verr == nil})
	e.mu.Unlock()

	if p != nil {
		// Segments carry the playlist's signature, which is for the
		// playlist path: like a real edge, only the playlist is checked.
		if r.URL.Path == "/live/"+testRoom+"/index.m3u8" && verr != nil {
			http.Error(w, verr.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set(CacheHeader, "HIT")
		p.Handler().ServeHTTP(w, r)
		return
	}
	if verr != nil {
		http.Error(w, verr.Error(), http.StatusForbidden)
		return
	}
	switch {
	case f.status != 0:
		http.Error(w, "fault", f.status)
		return
	case f.hang:
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "video/x-flv")
	if f.cacheMiss {
		w.Header().Set(CacheHeader, "MISS")
	} else {
		w.Header().Set(CacheHeader, "HIT from "+host)
	}
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	if f.garbage {
		w.Write([]byte("<html>this is not a video</html>"))
		fl.Flush()
		<-r.Context().Done()
		return
	}
	w.Write(flv.AppendHeader(nil, flv.Header{Audio: true, Video: true}))
	fl.Flush()
	if f.noVideo {
		<-r.Context().Done()
		return
	}
	src, err := sample.New(sample.Options{})
	if err != nil {
		panic(err)
	}
	// A live stream: tag t is due at start + t.Time - burst; the first
	// burst of media goes out at once, as from a GOP cache. After a pause
	// the media that became due meanwhile goes out at once too.
	start := time.Now()
	timer := time.NewTimer(0)
	var buf []byte
	var stamps keyStamper
	paused := false
	for {
		t, err := src.Next(r.Context())
		if err != nil {
			return
		}
		at := time.Duration(t.Time) * time.Millisecond
		if d := time.Until(start.Add(at - f.burst)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		if f.abortAt > 0 && at >= f.abortAt {
			panic(http.ErrAbortHandler) // cut the connection mid-stream
		}
		if f.pauseFor > 0 && !paused && at >= f.pauseAt {
			paused = true
			timer.Reset(f.pauseFor)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		if f.stampAge > 0 {
			stamps.stamp(&t, start.Add(at-f.burst-f.stampAge))
		}
		buf = flv.AppendTag(buf[:0], &t)
		if _, err := w.Write(buf); err != nil {
			return
		}
		fl.Flush()
	}
}

// startHLS makes the edge serve HLS of the sample stream, packaged live.
func (e *edge) startHLS(t *testing.T) {
	p := hls.NewPackager(testRoom, hls.Options{TargetDuration: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; p.Close() })
	src, err := sample.New(sample.Options{Realtime: true})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for {
			tag, err := src.Next(ctx)
			if err != nil {
				return
			}
			if err := p.WriteTag(&tag); err != nil {
				return
			}
		}
	}()
	e.mu.Lock()
	e.hls = p
	e.mu.Unlock()
}

// capture is a Reporter keeping every event.
type capture struct {
	mu  sync.Mutex
	evs []report.Event
}

func (c *capture) Log(ev report.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, ev)
	c.mu.Unlock()
}

func (c *capture) events() []report.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]report.Event(nil), c.evs...)
}

func (c *capture) of(logType string) []report.Event {
	var out []report.Event
	for _, ev := range c.events() {
		if ev["log_type"] == logType {
			out = append(out, ev)
		}
	}
	return out
}

func (c *capture) types() []string {
	var out []string
	for _, ev := range c.events() {
		out = append(out, ev["log_type"].(string))
	}
	return out
}

// num reads a numeric field as int64.
func num(t *testing.T, ev report.Event, key string) int64 {
	t.Helper()
	switch v := ev[key].(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case float64:
		return int64(v)
	}
	t.Fatalf("%s.%s = %v (%T), want a number", ev["log_type"], key, ev[key], ev[key])
	return 0
}

// checkValid runs every event through the collector's own validation: what
// the player emits must be accepted as is, with no field dropped.
func checkValid(t *testing.T, evs []report.Event) {
	t.Helper()
	c := schemas.Cleaner{}
	for i, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		fields, err := flatjson.ParseObject(nil, b)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		var out schemas.Event
		if rej := c.Clean(fields, &out); rej != nil {
			t.Errorf("event %d (%s) refused by the collector: %v\n%s", i, ev["log_type"], rej, b)
		}
		if len(out.Unknown) > 0 {
			t.Errorf("event %d (%s) has fields the catalog does not know: %q", i, ev["log_type"], out.Unknown)
		}
	}
}

func describe(evs []report.Event) string {
	s := ""
	for _, ev := range evs {
		s += fmt.Sprintf("  %v\n", ev)
	}
	return s
}
