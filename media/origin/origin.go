// Package origin holds live streams: it takes relays from ingest over RTMP,
// keeps each stream in a fan-out hub with a GOP cache, runs the transcode
// ladder (one worker per rendition) and serves every rendition as HTTP-FLV
// to the edges that pull it. It logs origin_stream and, per rendition,
// transcode, at start, every StatsEvery and at the end. transcode.latency_ms
// is the latest capture-to-output delay: when the rendition's hub took a
// frame carrying the publisher's capture stamp (media/clock), minus that
// capture time, rounded up to the ms (clock.Ms); 0 until one came out
// (always for an audio-only rendition, as stamps ride in video frames).
package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/media/clock"
	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/rtmp"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
	"github.com/lastmile-qoe/lastmile/media/stream"
	"github.com/lastmile-qoe/lastmile/media/transcode"
)

// Reporter takes the log events of the origin.
type Reporter interface{ Log(report.Event) }

// Config of an origin node.
type Config struct {
	RTMPListen, HTTPListen string
	Node, Region           string
	// Renditions is the ladder; the "source" rendition is the stream as
	// pushed, every other gets a transcode worker.
	Renditions []scheduler.Rendition
	StatsEvery time.Duration // default 5s
	Stream     stream.Options
	// Transcode is "synthetic" (default) or "ffmpeg" (a real x264 encode
	// per rendition; see transcode.FFmpeg).
	Transcode string
}

// Server is one origin node.
type Server struct {
	cfg    Config
	rep    Reporter
	logger log.Logger
	rtmp   *rtmp.Server
	http   *http.Server

	mu          sync.Mutex
	streams     map[string]*live // by stream name: room, room_<rendition>
	faults      map[string]TranscodeFault
	unreachable map[string]bool // rooms whose pulls are refused and cut
	lost        map[string]bool // rooms whose relays are cut and refused

	pulls   *prometheus.CounterVec
	streamG prometheus.Gauge
}

// TranscodeFault breaks one rendition worker of one room: Fail stops it
// with an error; Lag delays every frame by Lag, so it falls behind.
type TranscodeFault struct {
	Fail bool
	Lag  time.Duration
}

// live is one stream held by the origin.
type live struct {
	name, room, rendition string
	hub                   *stream.Stream
	start                 time.Time
	pulls                 atomic.Int64
	// transcode workers only
	status  atomic.Value  // string: ok, lagging, error, stopped
	errText atomic.Value  // string
	latency atomic.Int64  // µs, capture → rendition output, of the latest stamped frame
	stamps  clock.Tracker // of the rendition's output; its worker's goroutine only
	done    chan struct{}
}

// New returns an origin; Start listens.
func New(cfg Config, rep Reporter, logger log.Logger) *Server {
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 5 * time.Second
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	o := &Server{cfg: cfg, rep: rep, logger: logger, streams: map[string]*live{}, faults: map[string]TranscodeFault{}, unreachable: map[string]bool{}, lost: map[string]bool{},
		pulls:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_origin_pulls_total", Help: "HTTP-FLV pulls by outcome."}, []string{"outcome"}),
		streamG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_origin_streams", Help: "Streams held, renditions included."}),
	}
	o.rtmp = &rtmp.Server{Handler: rtmp.HandlerFunc(o.publish), Logger: logger}
	return o
}

// Collectors are the origin's Prometheus metrics.
func (o *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{o.pulls, o.streamG}
}

// Start listens for relays and pulls; mux gets the HTTP-FLV routes and may
// carry /metrics and /healthz (nil: a mux of its own).
func (o *Server) Start(mux *http.ServeMux) (rtmpAddr, httpAddr net.Addr, err error) {
	rl, err := net.Listen("tcp", o.cfg.RTMPListen)
	if err != nil {
		return nil, nil, fmt.Errorf("origin: listen rtmp %s: %w", o.cfg.RTMPListen, err)
	}
	hl, err := net.Listen("tcp", o.cfg.HTTPListen)
	if err != nil {
		rl.Close()
		return nil, nil, fmt.Errorf("origin: listen http %s: %w", o.cfg.HTTPListen, err)
	}
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.HandleFunc("GET /live/{file}", o.servePull)
	o.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go o.rtmp.Serve(rl)
	go o.http.Serve(hl)
	return rl.Addr(), hl.Addr(), nil
}

// Close ends every stream and stops serving.
func (o *Server) Close(ctx context.Context) error {
	err := o.rtmp.Shutdown(ctx)
	if o.http != nil {
		err = errors.Join(err, o.http.Shutdown(ctx))
	}
	return err
}

// SetTranscodeFault sets (or with the zero value clears) a fault on one
// rendition worker of room. It takes effect on the next frame, and on
// workers started later.
func (o *Server) SetTranscodeFault(room, rendition string, f TranscodeFault) {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := scheduler.StreamName(room, rendition)
	if f == (TranscodeFault{}) {
		delete(o.faults, key)
	} else {
		o.faults[key] = f
	}
}

func (o *Server) fault(name string) TranscodeFault {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.faults[name]
}

// SetUnreachable makes the origin unreachable for rooms (every rendition):
// edges' pulls are cut and new ones answered 503 until it is cleared with
// SetUnreachable(nil). The streams stay live at the origin.
func (o *Server) SetUnreachable(rooms []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unreachable = map[string]bool{}
	for _, r := range rooms {
		o.unreachable[r] = true
	}
}

func (o *Server) isUnreachable(room string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unreachable[room]
}

// LoseStream cuts room's source as if its relay died: viewers and workers
// see the stream end with an error, and origin_stream logs "lost". The
// relay's connection is closed, so ingest redials.
func (o *Server) LoseStream(room string) bool {
	o.mu.Lock()
	l := o.streams[room]
	o.mu.Unlock()
	if l == nil {
		return false
	}
	o.endStream(l, errors.New("origin lost the stream"), "lost")
	return true
}

// SetLost holds room lost (LoseStream, and its relay's publishes refused)
// until it is cleared with SetLost(room, false).
func (o *Server) SetLost(room string, lost bool) {
	o.mu.Lock()
	if lost {
		o.lost[room] = true
	} else {
		delete(o.lost, room)
	}
	o.mu.Unlock()
	if lost {
		o.LoseStream(room)
	}
}

// Streams lists the names held.
func (o *Server) Streams() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for k := range o.streams {
		out = append(out, k)
	}
	return out
}

func (o *Server) publish(ctx context.Context, info rtmp.PublishInfo) (rtmp.Sink, error) {
	room := info.Stream
	src := &live{name: room, room: room, rendition: scheduler.SourceRendition,
		hub: stream.New(room, o.cfg.Stream), start: time.Now(), done: make(chan struct{})}
	o.mu.Lock()
	if o.lost[room] {
		o.mu.Unlock()
		return nil, fmt.Errorf("origin: %s is lost (fault)", room)
	}
	if _, busy := o.streams[room]; busy {
		o.mu.Unlock()
		return nil, fmt.Errorf("origin: %s is already live", room)
	}
	o.streams[room] = src
	o.mu.Unlock()
	o.streamG.Inc()
	level.Info(o.logger).Log("msg", "stream live", "stream", room, "from", info.RemoteAddr)
	o.logStream(src, "start", nil)
	for _, r := range o.cfg.Renditions {
		if r.Name == scheduler.SourceRendition {
			continue
		}
		o.startWorker(src, r)
	}
	go o.statsLoop(src)
	return &sink{o: o, l: src}, nil
}

// sink feeds a relay into the source hub.
type sink struct {
	o *Server
	l *live
}

func (s *sink) WriteTag(t *flv.Tag) error {
	select {
	case <-s.l.done: // lost: closing the relay makes ingest notice
		return errors.New("origin: stream " + s.l.name + " ended")
	default:
	}
	s.l.hub.Write(t)
	return nil
}

func (s *sink) Close(err error) {
	state := "stop"
	if err != nil {
		state = "lost"
	}
	s.o.endStream(s.l, err, state)
}

// endStream closes a source and, through their viewers, its renditions.
func (o *Server) endStream(l *live, err error, state string) {
	o.mu.Lock()
	if o.streams[l.name] != l {
		o.mu.Unlock()
		return
	}
	delete(o.streams, l.name)
	o.mu.Unlock()
	o.streamG.Dec()
	if err == nil {
		err = io.EOF
	}
	l.hub.Close(err)
	close(l.done)
	extra := map[string]any{}
	if state == "lost" {
		extra["error"] = err.Error()
	}
	o.logStream(l, state, extra)
	level.Info(o.logger).Log("msg", "stream ended", "stream", l.name, "state", state, "err", err)
}

// startWorker runs one rendition of the ladder: it reads the source hub as
// a viewer would, transforms every tag and writes the rendition's hub.
func (o *Server) startWorker(src *live, r scheduler.Rendition) {
	name := scheduler.StreamName(src.room, r.Name)
	w := &live{name: name, room: src.room, rendition: r.Name, hub: stream.New(name, o.cfg.Stream),
		start: time.Now(), done: make(chan struct{})}
	w.status.Store("ok")
	w.errText.Store("")
	o.mu.Lock()
	o.streams[name] = w
	o.mu.Unlock()
	o.streamG.Inc()
	o.logTranscode(w, nil)
	go func() {
		defer func() {
			o.mu.Lock()
			if o.streams[name] == w {
				delete(o.streams, name)
			}
			o.mu.Unlock()
			o.streamG.Dec()
			close(w.done)
			o.logTranscode(w, nil)
		}()
		err := o.transcode(src, w, r)
		if err != nil && !errors.Is(err, io.EOF) {
			w.status.Store("error")
			w.errText.Store(err.Error())
			w.hub.Close(err)
			level.Warn(o.logger).Log("msg", "transcode failed", "stream", name, "err", err)
			o.logTranscode(w, nil)
			// A failed worker is restarted, as a supervisor would, once its
			// fault is cleared and while the source is still live.
			for {
				select {
				case <-src.done:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if !o.fault(name).Fail {
					level.Info(o.logger).Log("msg", "transcode worker restarted", "stream", name)
					go o.startWorker(src, r)
					return
				}
			}
		}
		w.status.Store("stopped")
		w.hub.Close(io.EOF)
	}()
	go o.statsLoop(w)
}

func (o *Server) transcode(src, w *live, r scheduler.Rendition) error {
	v := src.hub.Subscribe(0)
	defer v.Close()
	if o.cfg.Transcode == "ffmpeg" {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ff := &transcode.FFmpeg{BitrateKbps: r.BitrateKbps, Width: r.Width, Height: r.Height, AudioOnly: r.AudioOnly}
		return ff.Run(ctx, v.Reader(ctx), func(t *flv.Tag) error {
			if f := o.fault(w.name); f.Fail {
				return errors.New("transcode worker failed")
			} else if f.Lag > 0 && t.IsVideo() {
				time.Sleep(f.Lag)
			}
			w.output(t)
			return nil
		})
	}
	rd := flv.NewReader(v.Reader(context.Background()))
	if _, err := rd.ReadHeader(); err != nil {
		return err
	}
	tc := &transcode.Synthetic{BitrateKbps: r.BitrateKbps, AudioOnly: r.AudioOnly}
	for {
		tag, err := rd.ReadTag()
		if err != nil {
			return err
		}
		f := o.fault(w.name)
		if f.Fail {
			return errors.New("transcode worker failed")
		}
		if f.Lag > 0 {
			if tag.IsVideo() {
				time.Sleep(f.Lag)
			}
			w.status.Store("lagging") // also between frames: an audio tag does not end the lag
		} else if w.status.Load() == "lagging" {
			w.status.Store("ok")
		}
		out, ok, err := tc.Transform(&tag)
		if err != nil {
			return err
		}
		if ok {
			w.output(&out)
		}
	}
}

// output writes a rendition's tag and, for a stamped frame, the latency
// from capture to now.
func (w *live) output(t *flv.Tag) {
	capture, stamped := w.stamps.Capture(t)
	w.hub.Write(t)
	if stamped {
		w.latency.Store(clock.Since(capture, time.Now()).Microseconds())
	}
}

// servePull serves /live/<name>.flv to an edge (or any HTTP-FLV client).
// start_ms asks for that much cached media before live (the edge's quick
// start needs a GOP).
func (o *Server) servePull(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".flv")
	if !ok {
		http.Error(w, "origin serves /live/<stream>.flv", http.StatusNotFound)
		return
	}
	o.mu.Lock()
	l := o.streams[name]
	o.mu.Unlock()
	if l == nil {
		o.pulls.WithLabelValues("not_found").Inc()
		http.Error(w, "stream "+name+" is not live on this origin", http.StatusNotFound)
		return
	}
	if o.isUnreachable(l.room) {
		o.pulls.WithLabelValues("unreachable").Inc()
		http.Error(w, "origin unreachable for "+name+" (fault)", http.StatusServiceUnavailable)
		return
	}
	o.pulls.WithLabelValues("ok").Inc()
	l.pulls.Add(1)
	defer l.pulls.Add(-1)
	var lower time.Duration
	if ms := r.URL.Query().Get("start_ms"); ms != "" {
		if d, err := time.ParseDuration(ms + "ms"); err == nil && d >= 0 {
			lower = d
		}
	}
	v := l.hub.Subscribe(lower)
	defer v.Close()
	w.Header().Set("Content-Type", "video/x-flv")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	for {
		b, err := v.Next(r.Context())
		if err != nil {
			return
		}
		if _, err := w.Write(b); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		if o.isUnreachable(l.room) {
			return // the fault cuts pulls in progress too
		}
	}
}

func (o *Server) statsLoop(l *live) {
	tk := time.NewTicker(o.cfg.StatsEvery)
	defer tk.Stop()
	last, lastBytes, lastFrames := time.Now(), int64(0), int64(0)
	for {
		select {
		case <-l.done:
			return
		case now := <-tk.C:
			st := l.hub.Stats()
			secs := now.Sub(last).Seconds()
			rate := map[string]any{
				"bitrate_kbps": float64(st.BytesIn-lastBytes) * 8 / 1000 / secs,
				"fps":          float64(st.FramesIn-lastFrames) / secs,
			}
			last, lastBytes, lastFrames = now, st.BytesIn, st.FramesIn
			if l.rendition == scheduler.SourceRendition {
				rate["gop_cache_ms"] = st.CacheSpan.Milliseconds()
				o.logStream(l, "stats", rate)
			} else {
				o.logTranscode(l, rate)
			}
		}
	}
}

func (o *Server) base(l *live, logType string) report.Event {
	return report.Event{"log_type": logType, "source": "server", "stream_id": "live/" + l.room, "room_id": l.room,
		"rendition": l.rendition, "node_id": o.cfg.Node, "region": o.cfg.Region}
}

func (o *Server) logStream(l *live, state string, extra map[string]any) {
	ev := o.base(l, "origin_stream")
	ev["state"] = state
	ev["pulls"] = l.pulls.Load()
	for k, v := range extra {
		ev[k] = v
	}
	o.rep.Log(ev)
}

func (o *Server) logTranscode(l *live, extra map[string]any) {
	ev := o.base(l, "transcode")
	ev["status"] = l.status.Load()
	ev["latency_ms"] = clock.Ms(time.Duration(l.latency.Load()) * time.Microsecond)
	if e, _ := l.errText.Load().(string); e != "" {
		ev["error"] = e
	}
	for k, v := range extra {
		ev[k] = v
	}
	o.rep.Log(ev)
}
