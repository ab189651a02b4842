// Package edge is a CDN edge node: it serves live streams to players as
// HTTP-FLV and HLS, pulls each stream from the origin on the first request
// (back-to-source; later viewers share the pull), keeps a GOP cache for
// quick start, bounds each viewer's queue with a drop-to-keyframe policy,
// and logs one edge_access per request, refused ones too, with the session
// id the player sent as CMCD sid when it sent one. Faults can be set at runtime: refuse connections, answer the
// first byte late, or stall mid-stream.
package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/internal/cors"
	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/hls"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/sign"
	"github.com/lastmile-qoe/lastmile/media/stream"
)

// Reporter takes the log events of the edge.
type Reporter interface{ Log(report.Event) }

// Config of an edge node.
type Config struct {
	Listen            string
	Node, Region, CDN string
	// Secret verifies play URLs (media/sign); "" serves unsigned requests.
	Secret string
	// MaxSignTTL refuses signed URLs expiring further ahead (default
	// sign.DefaultMaxTTL).
	MaxSignTTL time.Duration
	// Origin is the origin's HTTP base URL, e.g. http://127.0.0.1:7020.
	Origin string
	// QuickStart is the quick-start lower bound: a viewer starts at the
	// keyframe at or before newest − QuickStart. Default 1s.
	QuickStart time.Duration
	// PullStart is how much cached media the edge asks the origin for when
	// it pulls, so its own cache can serve quick start at once. Default 2s.
	PullStart time.Duration
	// Idle ends a pull this long after its last viewer left. Default 30s.
	Idle time.Duration
	// CORSOrigins are the page origins browsers may play from; empty or
	// "*" allows any (media is public behind its signature).
	CORSOrigins []string
	Stream      stream.Options
	HLS         hls.Options
}

// Fault makes the edge misbehave; the zero value is healthy.
type Fault struct {
	// Refuse closes the listener: new connections are refused.
	Refuse bool
	// FirstByteDelay holds every response this long before its headers.
	FirstByteDelay time.Duration
	// StallAfter and StallFor pause an HTTP-FLV response for StallFor once
	// it has streamed StallAfter.
	StallAfter, StallFor time.Duration
}

// Server is one edge node.
type Server struct {
	cfg    Config
	rep    Reporter
	logger log.Logger
	client *http.Client

	mu    sync.Mutex
	pulls map[string]*pull
	ln    net.Listener
	addr  string
	srv   *http.Server
	fault Fault

	requests *prometheus.CounterVec
	viewers  prometheus.Gauge
	bytesOut prometheus.Counter
	backSrc  prometheus.Counter
	dropped  prometheus.Counter
}

// New returns an edge; Start listens.
func New(cfg Config, rep Reporter, logger log.Logger) *Server {
	if cfg.QuickStart <= 0 {
		cfg.QuickStart = time.Second
	}
	if cfg.PullStart <= 0 {
		cfg.PullStart = 2 * time.Second
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 30 * time.Second
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	return &Server{cfg: cfg, rep: rep, logger: logger, pulls: map[string]*pull{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 10 * time.Second}},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_edge_requests_total",
			Help: "Play requests by protocol and status.", ConstLabels: prometheus.Labels{"node": cfg.Node}}, []string{"protocol", "status"}),
		viewers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_edge_viewers",
			Help: "HTTP-FLV viewers being served.", ConstLabels: prometheus.Labels{"node": cfg.Node}}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_edge_bytes_sent_total",
			Help: "Media bytes sent to viewers.", ConstLabels: prometheus.Labels{"node": cfg.Node}}),
		backSrc: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_edge_back_to_source_total",
			Help: "Pulls from the origin.", ConstLabels: prometheus.Labels{"node": cfg.Node}}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_edge_viewer_dropped_tags_total",
			Help: "Tags skipped because a viewer's queue overflowed (counted when the viewer leaves).", ConstLabels: prometheus.Labels{"node": cfg.Node}}),
	}
}

// Collectors are the edge's Prometheus metrics.
func (e *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.requests, e.viewers, e.bytesOut, e.backSrc, e.dropped}
}

// Handler serves /live/<stream>.flv and /live/<stream>/{index.m3u8,seg-N.ts},
// and refuses anything else: every request gets an edge_access, with or
// without a CMCD sid, so a scan or a wrong URL shows in the node's logs.
func (e *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live/{file}", e.serveFLV)
	mux.HandleFunc("GET /live/{name}/{file}", e.serveHLS)
	mux.HandleFunc("/", e.serveOther)
	p := MediaCORS
	p.Origins = e.cfg.CORSOrigins
	return p.Wrap(mux)
}

// MediaCORS is what a page may send to an edge and read from its answers:
// GET and HEAD with CMCD in its four headers and Range, and the headers a
// player reads (lengths, the cache verdict, the node that served it).
// Origins come from Config.CORSOrigins. Preflights are answered before
// routing and get no edge_access: they carry no play.
var MediaCORS = cors.Policy{
	Methods: []string{http.MethodGet, http.MethodHead},
	Headers: []string{"CMCD-Request", "CMCD-Object", "CMCD-Status", "CMCD-Session", "Range"},
	Expose:  []string{"Content-Length", "Content-Range", "X-Cache", "X-Edge-Node"},
	MaxAge:  10 * time.Minute,
}

// serveOther refuses a request no route serves: 405 for a method other
// than GET on a play path, else 404.
func (e *Server) serveOther(w http.ResponseWriter, r *http.Request) {
	a := e.newAccess(r, "http", "")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && strings.HasPrefix(r.URL.Path, "/live/") {
		w.Header().Set("Allow", "GET")
		e.refuse(w, a, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": edge serves GET only")
		return
	}
	e.refuse(w, a, http.StatusNotFound, "edge serves /live/<stream>.flv and /live/<stream>/index.m3u8")
}

// Start listens on Config.Listen and serves Handler (and whatever extra
// routes mux has, e.g. /metrics; nil for none).
func (e *Server) Start(mux *http.ServeMux) (net.Addr, error) {
	ln, err := net.Listen("tcp", e.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("edge %s: listen %s: %w", e.cfg.Node, e.cfg.Listen, err)
	}
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.Handle("/", e.Handler()) // the caller's own routes (e.g. /metrics) stay theirs
	e.mu.Lock()
	e.ln = ln
	e.addr = ln.Addr().String() // refusing and healing listen again here, even for port 0
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv := e.srv
	e.mu.Unlock()
	go srv.Serve(ln)
	return ln.Addr(), nil
}

// Close stops serving and ends every pull.
func (e *Server) Close(ctx context.Context) error {
	e.mu.Lock()
	srv := e.srv
	pulls := e.pulls
	e.pulls = map[string]*pull{}
	e.mu.Unlock()
	for _, p := range pulls {
		p.cancel()
	}
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// SetFault changes how the edge misbehaves. Refuse closes the listener;
// clearing it listens again on the same address.
func (e *Server) SetFault(f Fault) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	was := e.fault.Refuse
	e.fault = f
	switch {
	case f.Refuse && !was && e.ln != nil:
		e.ln.Close()
		e.ln = nil
	case !f.Refuse && was && e.srv != nil:
		ln, err := net.Listen("tcp", e.addr)
		if err != nil {
			return fmt.Errorf("edge %s: listen again %s: %w", e.cfg.Node, e.addr, err)
		}
		e.ln = ln
		go e.srv.Serve(ln)
	}
	return nil
}

func (e *Server) currentFault() Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fault
}

// pull is one stream pulled from the origin, shared by its viewers.
type pull struct {
	name    string
	hub     *stream.Stream
	ready   chan struct{} // closed at the first keyframe, or on failure
	err     error         // set before ready closes, on failure
	started time.Time
	readyAt atomic.Int64 // unix ns
	cancel  context.CancelFunc

	hlsOnce sync.Once
	hls     *hls.Packager
	lastUse atomic.Int64 // unix ns of the last request
}

// acquire returns the pull of name, starting it when there is none; hit
// says it was already there and had media.
func (e *Server) acquire(name string) (p *pull, hit bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p = e.pulls[name]; p != nil {
		p.lastUse.Store(time.Now().UnixNano())
		select {
		case <-p.ready:
			return p, p.err == nil
		default:
			return p, false
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p = &pull{name: name, hub: stream.New(name, e.cfg.Stream), ready: make(chan struct{}), started: time.Now(), cancel: cancel}
	p.lastUse.Store(time.Now().UnixNano())
	e.pulls[name] = p
	e.backSrc.Inc()
	go e.runPull(ctx, p)
	return p, false
}

func (e *Server) forget(p *pull) {
	e.mu.Lock()
	if e.pulls[p.name] == p {
		delete(e.pulls, p.name)
	}
	e.mu.Unlock()
}

// runPull copies the origin's HTTP-FLV into the hub until the stream ends,
// the origin fails, or nobody has watched for Idle.
func (e *Server) runPull(ctx context.Context, p *pull) {
	defer e.forget(p)
	readyOnce := sync.OnceFunc(func() { p.readyAt.Store(time.Now().UnixNano()); close(p.ready) })
	fail := func(err error) {
		p.err = err
		readyOnce()
		p.hub.Close(err)
		level.Info(e.logger).Log("msg", "pull ended", "node", e.cfg.Node, "stream", p.name, "err", err)
	}
	go func() { // idle watcher
		tk := time.NewTicker(e.cfg.Idle / 4)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				if p.hub.Stats().Viewers == 0 && time.Since(time.Unix(0, p.lastUse.Load())) > e.cfg.Idle {
					p.cancel()
					return
				}
			}
		}
	}()
	u := strings.TrimRight(e.cfg.Origin, "/") + "/live/" + url.PathEscape(p.name) + ".flv?start_ms=" + fmt.Sprint(e.cfg.PullStart.Milliseconds())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := e.client.Do(req)
	if err != nil {
		fail(fmt.Errorf("back to source: %w", err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("back to source: origin answered %s", resp.Status))
		return
	}
	rd := flv.NewReader(resp.Body)
	if _, err := rd.ReadHeader(); err != nil {
		fail(fmt.Errorf("back to source: %w", err))
		return
	}
	ready := false
	for {
		t, err := rd.ReadTag()
		if err != nil {
			if ctx.Err() != nil {
				err = errors.New("idle: no viewers")
			} else {
				err = fmt.Errorf("back to source: %w", err)
			}
			fail(err)
			return
		}
		p.hub.Write(&t)
		// Ready once the hub holds a point a viewer can start from: a
		// keyframe, or audio in a stream without video (the audio-only
		// rendition). Checked until then only.
		if !ready && p.hub.Stats().CachedGOPs > 0 {
			ready = true
			readyOnce()
		}
	}
}

// access is one request's edge_access record.
type access struct {
	start      time.Time
	status     int
	hit        bool
	backSrcMs  int64
	firstByte  time.Duration
	bytes      int64
	dropped    int64
	err        string
	protocol   string
	name, path string
	sid        string
	cmcd       cmcd.Data
	clientIP   string
}

func (e *Server) log(a *access) {
	ev := report.Event{
		"log_type": "edge_access", "source": "server",
		"cdn": e.cfg.CDN, "node_id": e.cfg.Node, "region": e.cfg.Region, "protocol": a.protocol,
		"http_status": a.status, "cache_hit": a.hit, "bytes": a.bytes, "duration_ms": time.Since(a.start).Milliseconds(),
		"path": a.path, "client_ip": a.clientIP, "dropped_packets": a.dropped,
	}
	// A request without a CMCD sid (ffplay, curl) or for no stream is
	// logged all the same, without the ids it lacks.
	if a.sid != "" {
		ev["session_id"] = a.sid
	}
	if a.name != "" {
		room, rendition := splitName(a.name)
		ev["stream_id"], ev["room_id"], ev["rendition"] = "live/"+room, room, rendition
	}
	if !a.hit && a.backSrcMs >= 0 {
		ev["back_to_source_ms"] = a.backSrcMs
	}
	if a.firstByte > 0 {
		ev["first_byte_ms"] = a.firstByte.Milliseconds()
	}
	if a.err != "" {
		ev["error"] = a.err
	}
	addCMCD(ev, a.cmcd)
	e.rep.Log(ev)
	e.requests.WithLabelValues(a.protocol, fmt.Sprint(a.status)).Inc()
}

// splitName turns "room1_720p" into ("room1", "720p") and "room1" into
// ("room1", "source").
func splitName(name string) (room, rendition string) {
	if i := strings.LastIndexByte(name, '_'); i > 0 {
		return name[:i], name[i+1:]
	}
	return name, "source"
}

func (e *Server) newAccess(r *http.Request, protocol, name string) *access {
	a := &access{start: time.Now(), protocol: protocol, name: name, path: r.URL.Path, backSrcMs: -1}
	// A malformed payload still yields the keys before the bad one.
	if d, _ := cmcd.FromRequest(r); d != nil {
		a.sid, a.cmcd = d.SessionID(), d
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		a.clientIP = host
	}
	return a
}

func (e *Server) refuse(w http.ResponseWriter, a *access, status int, msg string) {
	a.status, a.err = status, msg
	http.Error(w, msg, status)
	e.log(a)
}

// waitReady waits for the pull's first keyframe; it fills the access's
// cache and back-to-source fields.
func (e *Server) waitReady(r *http.Request, a *access, p *pull, hit bool) error {
	a.hit = hit
	select {
	case <-p.ready:
	case <-r.Context().Done():
		return r.Context().Err()
	case <-time.After(10 * time.Second):
		return errors.New("back to source: no keyframe from the origin within 10s")
	}
	if !hit {
		a.backSrcMs = time.Duration(p.readyAt.Load() - p.started.UnixNano()).Milliseconds()
	}
	return p.err
}

func (e *Server) serveFLV(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".flv")
	a := e.newAccess(r, "http-flv", name)
	if !ok || name == "" {
		e.refuse(w, a, http.StatusNotFound, "edge serves /live/<stream>.flv and /live/<stream>/index.m3u8")
		return
	}
	if e.cfg.Secret != "" {
		if err := sign.Verify(e.cfg.Secret, r.URL.Path, r.URL.Query(), time.Now(), e.cfg.MaxSignTTL); err != nil {
			e.refuse(w, a, http.StatusForbidden, err.Error())
			return
		}
	}
	f := e.currentFault()
	if f.FirstByteDelay > 0 {
		select {
		case <-time.After(f.FirstByteDelay):
		case <-r.Context().Done():
			a.status, a.err = 499, "client left"
			e.log(a)
			return
		}
	}
	p, hit := e.acquire(name)
	if err := e.waitReady(r, a, p, hit); err != nil {
		e.refuse(w, a, http.StatusBadGateway, err.Error())
		return
	}
	v := p.hub.Subscribe(e.cfg.QuickStart)
	defer v.Close()
	e.viewers.Inc()
	defer e.viewers.Dec()
	w.Header().Set("Content-Type", "video/x-flv")
	w.Header().Set("Cache-Control", "no-cache")
	if a.hit {
		w.Header().Set("X-Cache", "HIT")
	} else {
		w.Header().Set("X-Cache", "MISS")
	}
	w.Header().Set("X-Edge-Node", e.cfg.Node)
	a.status = http.StatusOK
	fl, _ := w.(http.Flusher)
	stalled := false
	streaming := time.Now() // StallAfter counts streamed time, not the first-byte delay or back-to-source
	for {
		b, err := v.Next(r.Context())
		if err != nil {
			if r.Context().Err() == nil {
				a.err = err.Error() // the stream ended or the pull failed
			}
			break
		}
		if f.StallAfter > 0 && !stalled && time.Since(streaming) > f.StallAfter {
			stalled = true
			time.Sleep(f.StallFor)
		}
		if _, err := w.Write(b); err != nil {
			break
		}
		if a.firstByte == 0 {
			a.firstByte = time.Since(a.start)
		}
		a.bytes += int64(len(b))
		e.bytesOut.Add(float64(len(b)))
		if fl != nil {
			fl.Flush()
		}
		if f = e.currentFault(); f.Refuse {
			a.err = "edge refusing"
			break
		}
	}
	a.dropped, _ = v.Dropped()
	e.dropped.Add(float64(a.dropped))
	e.log(a)
}

func (e *Server) serveHLS(w http.ResponseWriter, r *http.Request) {
	name, file := r.PathValue("name"), r.PathValue("file")
	a := e.newAccess(r, "hls", name)
	if e.cfg.Secret != "" {
		// Segments carry the playlist's signature: check it against the
		// playlist's path.
		path := strings.TrimSuffix(r.URL.Path, file) + "index.m3u8"
		if err := sign.Verify(e.cfg.Secret, path, r.URL.Query(), time.Now(), e.cfg.MaxSignTTL); err != nil {
			e.refuse(w, a, http.StatusForbidden, err.Error())
			return
		}
	}
	if f := e.currentFault(); f.FirstByteDelay > 0 {
		time.Sleep(f.FirstByteDelay)
	}
	p, hit := e.acquire(name)
	if err := e.waitReady(r, a, p, hit); err != nil {
		e.refuse(w, a, http.StatusBadGateway, err.Error())
		return
	}
	p.hlsOnce.Do(func() { e.startHLS(p) })
	rec := &recorder{ResponseWriter: w, start: a.start}
	if file == "index.m3u8" {
		// Segments need the playlist's signature and nothing else of its
		// query: the rest (CMCD above all) describes the playlist request.
		rec.query = signatureQuery(r.URL.Query())
	}
	if a.hit {
		w.Header().Set("X-Cache", "HIT")
	} else {
		w.Header().Set("X-Cache", "MISS")
	}
	w.Header().Set("X-Edge-Node", e.cfg.Node)
	p.hls.Handler().ServeHTTP(rec, r)
	a.status, a.bytes, a.firstByte = rec.status, rec.bytes, rec.firstByte
	if a.status == 0 {
		a.status = http.StatusOK
	}
	e.log(a)
}

// startHLS feeds a packager from the pull's hub, as one more viewer.
func (e *Server) startHLS(p *pull) {
	p.hls = hls.NewPackager(p.name, e.cfg.HLS)
	v := p.hub.Subscribe(e.cfg.PullStart)
	go func() {
		defer v.Close()
		defer p.hls.Close()
		rd := flv.NewReader(v.Reader(context.Background()))
		if _, err := rd.ReadHeader(); err != nil {
			return
		}
		for {
			t, err := rd.ReadTag()
			if err != nil {
				return
			}
			if err := p.hls.WriteTag(&t); err != nil {
				level.Debug(e.logger).Log("msg", "hls packager skipped a tag", "stream", p.name, "err", err)
			}
		}
	}()
}

// recorder notes status, bytes and first byte of a response, and appends
// the signature query to the segment URIs of a playlist.
type recorder struct {
	http.ResponseWriter
	start     time.Time
	status    int
	bytes     int64
	firstByte time.Duration
	query     string
}

func (w *recorder) WriteHeader(code int) {
	w.status = code
	if w.query != "" {
		w.Header().Del("Content-Length") // the body grows
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.firstByte == 0 {
		w.firstByte = time.Since(w.start)
	}
	if w.query != "" {
		var out strings.Builder
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				out.WriteString(t + "?" + w.query)
				if strings.HasSuffix(line, "\n") {
					out.WriteString("\n")
				}
				continue
			}
			out.WriteString(line)
		}
		n, err := w.ResponseWriter.Write([]byte(out.String()))
		w.bytes += int64(n)
		if err != nil {
			return 0, err
		}
		return len(b), nil
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
