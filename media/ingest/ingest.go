// Package ingest is the RTMP publish server broadcasters push to. It checks
// the signed push URL, relays each stream to the origin over RTMP, and logs
// ingest_session (what the broadcaster sent) and relay (what reached the
// origin) at start, every StatsEvery and at the end. relay.latency_ms is
// the latest capture-to-relay delay: when the relay handed the origin a
// frame carrying the publisher's capture stamp (media/clock), minus that
// capture time, rounded up to the ms (clock.Ms); 0 until a stamped frame
// was relayed.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	"github.com/lastmile-qoe/lastmile/media/sign"
)

// Reporter takes the log events of the ingest.
type Reporter interface{ Log(report.Event) }

// Config of an ingest node.
type Config struct {
	Listen string // RTMP address
	Node   string // node_id in logs
	Region string
	// Secret verifies push URLs (media/sign); "" accepts unsigned pushes.
	Secret string
	// MaxSignTTL refuses signed URLs expiring further ahead (default
	// sign.DefaultMaxTTL).
	MaxSignTTL time.Duration
	// Origin is the RTMP base URL streams are relayed to, e.g.
	// rtmp://127.0.0.1:1936; the stream keeps its /app/name path.
	Origin string
	// StatsEvery is the period of the stats events; default 5s.
	StatsEvery time.Duration
	// RelayRetries is how many redials one relay outage gets before the
	// publish is cut; default 3. The budget is per outage: it is restored
	// once a redialled relay has forwarded media for RelayHealthy.
	RelayRetries int
	// RelayHealthy is how long a redialled relay must forward media before
	// the next failure counts as a new outage; default 10s.
	RelayHealthy time.Duration
	// RelayBackoff is the wait before the second redial of an outage; it
	// doubles for each further one (at most maxRelayBackoff). The first
	// redial is immediate. Default 1s.
	RelayBackoff time.Duration
}

// maxRelayBackoff bounds the doubling wait between redials, so a large
// RelayRetries cannot wait for minutes.
const maxRelayBackoff = 30 * time.Second

// Server is one ingest node.
type Server struct {
	cfg    Config
	rep    Reporter
	logger log.Logger
	rtmp   *rtmp.Server
	ln     net.Listener

	publishes *prometheus.CounterVec
	active    prometheus.Gauge
	bytesIn   prometheus.Counter

	mu       sync.Mutex
	sessions map[string]*session // by stream path
}

// New returns an ingest node; Start listens.
func New(cfg Config, rep Reporter, logger log.Logger) *Server {
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 5 * time.Second
	}
	if cfg.RelayRetries <= 0 {
		cfg.RelayRetries = 3
	}
	if cfg.RelayHealthy <= 0 {
		cfg.RelayHealthy = 10 * time.Second
	}
	if cfg.RelayBackoff <= 0 {
		cfg.RelayBackoff = time.Second
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	s := &Server{
		cfg: cfg, rep: rep, logger: logger, sessions: map[string]*session{},
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_ingest_publishes_total",
			Help: "Publish requests by outcome (accepted, refused)."}, []string{"outcome"}),
		active:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_ingest_active_streams", Help: "Streams being published."}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_ingest_media_bytes_total", Help: "Audio, video and script bytes received."}),
	}
	s.rtmp = &rtmp.Server{Handler: rtmp.HandlerFunc(s.publish), Logger: logger}
	return s
}

// Collectors are the ingest's Prometheus metrics.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.publishes, s.active, s.bytesIn}
}

// Start listens on Config.Listen and serves in the background.
func (s *Server) Start() (net.Addr, error) {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("ingest: listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	go s.rtmp.Serve(ln)
	return ln.Addr(), nil
}

// Close stops accepting and ends every publish.
func (s *Server) Close(ctx context.Context) error {
	return s.rtmp.Shutdown(ctx)
}

// Active lists the stream paths being published.
func (s *Server) Active() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.sessions {
		out = append(out, k)
	}
	return out
}

func (s *Server) publish(ctx context.Context, info rtmp.PublishInfo) (rtmp.Sink, error) {
	path := "/" + info.App + "/" + info.Stream
	if s.cfg.Secret != "" {
		if err := sign.Verify(s.cfg.Secret, path, info.Query, time.Now(), s.cfg.MaxSignTTL); err != nil {
			s.publishes.WithLabelValues("refused").Inc()
			level.Info(s.logger).Log("msg", "push refused", "stream", path, "remote", info.RemoteAddr, "err", err)
			return nil, err
		}
	}
	s.mu.Lock()
	if _, busy := s.sessions[path]; busy {
		s.mu.Unlock()
		s.publishes.WithLabelValues("refused").Inc()
		return nil, fmt.Errorf("ingest: %s is already being published", path)
	}
	ss := &session{s: s, path: path, streamID: strings.TrimPrefix(path, "/"), room: info.Stream, start: time.Now(),
		sessionID: info.Query.Get("sid"), remote: info.RemoteAddr, stop: make(chan struct{}), done: make(chan struct{})}
	if ss.sessionID == "" {
		ss.sessionID = fmt.Sprintf("ingest-%s-%d", s.cfg.Node, ss.start.UnixNano())
	}
	s.sessions[path] = ss
	s.mu.Unlock()

	if err := ss.dialRelay(ctx); err != nil {
		s.forget(ss)
		s.publishes.WithLabelValues("refused").Inc()
		ss.logRelay("error", map[string]any{"error": err.Error()})
		return nil, fmt.Errorf("ingest: relay to origin: %w", err)
	}
	s.publishes.WithLabelValues("accepted").Inc()
	s.active.Inc()
	level.Info(s.logger).Log("msg", "publish started", "stream", path, "remote", info.RemoteAddr, "session", ss.sessionID)
	ss.logSession("start", nil)
	ss.logRelay("start", nil)
	go ss.statsLoop()
	return ss, nil
}

func (s *Server) forget(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.path] == ss {
		delete(s.sessions, ss.path)
	}
	s.mu.Unlock()
}

// session is one publish and its relay.
type session struct {
	s         *Server
	path      string
	streamID  string
	room      string
	sessionID string
	remote    net.Addr
	start     time.Time

	// Written by the RTMP connection's goroutine only.
	relay    *rtmp.Publisher
	headers  []flv.Tag // metadata and sequence headers, resent after a redial
	skipping bool      // after a redial, drop until the next keyframe
	stamps   clock.Tracker
	retries  int // redials over the whole publish (logged)
	// outageTries are the redials of the current outage; they return to 0
	// once the relay redialled at redialledAt has forwarded media for
	// RelayHealthy.
	outageTries int
	redialledAt time.Time

	bytes, frames, dropped atomic.Int64
	relayBytes             atomic.Int64
	relayLatencyUs         atomic.Int64 // capture → relayed, of the latest stamped frame

	stop, done chan struct{}
	closeOnce  sync.Once
}

func (ss *session) dialRelay(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := rtmp.DialPublish(ctx, strings.TrimRight(ss.s.cfg.Origin, "/")+ss.path)
	if err != nil {
		return err
	}
	ss.relay = p
	return nil
}

// WriteTag forwards a tag to the origin; a failed relay is redialled (the
// headers resent, frames dropped until the next keyframe) up to
// RelayRetries times per outage before the publish is cut.
func (ss *session) WriteTag(t *flv.Tag) error {
	ss.bytes.Add(int64(len(t.Data)))
	ss.s.bytesIn.Add(float64(len(t.Data)))
	if t.IsVideo() && !t.IsSequenceHeader() {
		ss.frames.Add(1)
	}
	if t.IsScript() || t.IsSequenceHeader() {
		ss.keepHeader(t)
	}
	if ss.skipping {
		if !t.IsKeyframe() || t.IsSequenceHeader() {
			if t.IsVideo() {
				ss.dropped.Add(1)
			}
			return nil
		}
		ss.skipping = false
	}
	capture, stamped := ss.stamps.Capture(t)
	err := ss.relay.WriteTag(t)
	if err == nil {
		if stamped {
			ss.relayLatencyUs.Store(clock.Since(capture, time.Now()).Microseconds())
		}
		ss.relayBytes.Add(int64(len(t.Data)))
		if ss.outageTries > 0 && time.Since(ss.redialledAt) >= ss.s.cfg.RelayHealthy {
			ss.outageTries = 0 // the outage is over: the next one gets the whole budget
		}
		return nil
	}
	return ss.redial(t, err)
}

// redial replaces a failed relay, waiting relayBackoff between tries, and
// forwards t on the new one; it gives up when the outage's budget is spent.
func (ss *session) redial(t *flv.Tag, err error) error {
	for ss.outageTries < ss.s.cfg.RelayRetries {
		if d := ss.relayBackoff(); d > 0 {
			time.Sleep(d)
		}
		ss.outageTries++
		ss.retries++
		ss.relay.Close()
		ss.logRelay("error", map[string]any{"error": err.Error()})
		level.Warn(ss.s.logger).Log("msg", "relay failed; redialling", "stream", ss.path, "retry", ss.outageTries, "of", ss.s.cfg.RelayRetries, "err", err)
		if err = ss.dialRelay(context.Background()); err != nil {
			continue
		}
		ss.redialledAt = time.Now()
		for i := range ss.headers {
			if err = ss.relay.WriteTag(&ss.headers[i]); err != nil {
				break
			}
		}
		if err != nil {
			continue
		}
		ss.skipping = !t.IsKeyframe()
		if ss.skipping {
			ss.dropped.Add(1)
			return nil
		}
		if err = ss.relay.WriteTag(t); err == nil {
			ss.relayBytes.Add(int64(len(t.Data)))
			return nil
		}
	}
	return fmt.Errorf("ingest: relay to origin failed after %d redials in this outage (%d in the publish): %w", ss.outageTries, ss.retries, err)
}

// relayBackoff is the wait before the next redial of the outage: none for
// the first, then RelayBackoff doubling, at most maxRelayBackoff.
func (ss *session) relayBackoff() time.Duration {
	if ss.outageTries == 0 {
		return 0
	}
	d := ss.s.cfg.RelayBackoff << (ss.outageTries - 1)
	if d <= 0 || d > maxRelayBackoff {
		d = maxRelayBackoff
	}
	return d
}

// keepHeader remembers the latest metadata and sequence header of each
// kind, for a redialled relay.
func (ss *session) keepHeader(t *flv.Tag) {
	for i := range ss.headers {
		h := &ss.headers[i]
		if h.Type == t.Type {
			h.Time, h.Data = t.Time, append(h.Data[:0], t.Data...)
			return
		}
	}
	ss.headers = append(ss.headers, flv.Tag{Type: t.Type, Time: t.Time, Data: append([]byte(nil), t.Data...)})
}

// Close ends the publish: the relay is closed and the stop events logged.
func (ss *session) Close(err error) {
	ss.closeOnce.Do(func() {
		close(ss.stop)
		<-ss.done
		if ss.relay != nil {
			ss.relay.Close()
		}
		reason := "unpublish"
		if err != nil {
			reason = err.Error()
			if errors.Is(err, rtmp.ErrServerClosed) {
				reason = "ingest shutdown"
			}
		}
		ss.logSession("stop", map[string]any{"stop_reason": reason, "duration_ms": time.Since(ss.start).Milliseconds()})
		ss.logRelay("stop", nil)
		ss.s.forget(ss)
		ss.s.active.Dec()
		level.Info(ss.s.logger).Log("msg", "publish ended", "stream", ss.path, "reason", reason, "bytes", ss.bytes.Load())
	})
}

func (ss *session) statsLoop() {
	defer close(ss.done)
	tk := time.NewTicker(ss.s.cfg.StatsEvery)
	defer tk.Stop()
	lastBytes, lastFrames, last := int64(0), int64(0), time.Now()
	for {
		select {
		case <-ss.stop:
			return
		case now := <-tk.C:
			b, f := ss.bytes.Load(), ss.frames.Load()
			secs := now.Sub(last).Seconds()
			ss.logSession("stats", map[string]any{
				"bitrate_kbps": int64(float64(b-lastBytes) * 8 / 1000 / secs),
				"fps":          float64(f-lastFrames) / secs,
			})
			ss.logRelay("stats", nil)
			lastBytes, lastFrames, last = b, f, now
		}
	}
}

func (ss *session) base(logType string) report.Event {
	return report.Event{
		"log_type": logType, "source": "server", "session_id": ss.sessionID,
		"stream_id": ss.streamID, "room_id": ss.room, "node_id": ss.s.cfg.Node, "region": ss.s.cfg.Region,
		"protocol": "rtmp",
	}
}

func (ss *session) logSession(state string, extra map[string]any) {
	ev := ss.base("ingest_session")
	ev["state"] = state
	ev["bytes"] = ss.bytes.Load()
	ev["dropped_frames"] = ss.dropped.Load()
	if ss.remote != nil {
		if host, _, err := net.SplitHostPort(ss.remote.String()); err == nil {
			ev["client_ip"] = host
		}
	}
	for k, v := range extra {
		ev[k] = v
	}
	ss.s.rep.Log(ev)
}

func (ss *session) logRelay(state string, extra map[string]any) {
	ev := ss.base("relay")
	ev["state"] = state
	ev["target"] = ss.s.cfg.Origin
	ev["bytes"] = ss.relayBytes.Load()
	ev["retries"] = ss.retries
	ev["latency_ms"] = clock.Ms(time.Duration(ss.relayLatencyUs.Load()) * time.Microsecond)
	for k, v := range extra {
		ev[k] = v
	}
	ss.s.rep.Log(ev)
}
