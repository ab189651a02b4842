// Package report is the client every media/ component uses to post its logs to
// the lastmile collector (POST /v1/events, see docs/collector.md).
//
// Log never blocks: events are encoded at once and buffered in memory, and one
// background goroutine posts them as NDJSON batches, in order. Transient
// failures (429, 5xx, network errors) are retried with exponential backoff,
// honouring Retry-After; the batch stays at the head of the buffer meanwhile, so
// order is kept and the buffer never holds more than MaxBuffered events. When the
// buffer is full, new events are dropped and counted: a component must never
// stall its media path because the collector is slow.
package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

// Event is one flat log event as in the catalog (schemas/catalog.go):
// log_type, device_id, session_id, ... The client adds event_id and ts (ms)
// when they are missing.
type Event map[string]any

// Config of a Client. Zero values take the defaults below.
type Config struct {
	// URL is the collector's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// AppKey is sent in the X-Lastmile-Key header; it decides the app_id.
	AppKey string
	// MaxBatch bounds the events of one request.
	MaxBatch int
	// FlushInterval is how long an event may wait before a post.
	FlushInterval time.Duration
	// MaxBuffered bounds the events held in memory, including the batch being
	// posted or retried. When full, new events are dropped and counted.
	MaxBuffered int
	// MaxBackoff caps the wait between retries, Retry-After included.
	MaxBackoff time.Duration
	// Name, when set, labels this client's metrics (client="name") so that
	// several clients can share one registry.
	Name       string
	Logger     log.Logger
	HTTPClient *http.Client
	// Gzip compresses request bodies.
	Gzip bool
}

// Defaults for Config.
const (
	DefaultMaxBatch      = 500
	DefaultFlushInterval = time.Second
	DefaultMaxBuffered   = 10_000
	DefaultMaxBackoff    = 10 * time.Second
	// maxBatchBytes keeps a request well under the collector's default 8 MiB
	// body limit; a 413 still halves the batch.
	maxBatchBytes = 4 << 20
	minBackoff    = 100 * time.Millisecond
)

// Stats are the client's counters since New.
type Stats struct {
	Queued     int    // events buffered now, including the batch in flight
	Sent       uint64 // events the collector took (accepted or sampled out)
	SampledOut uint64 // of Sent, those the collector's sampling dropped
	Dropped    uint64 // lost here: buffer full, after Close, unencodable, or a batch refused with 4xx
	Rejected   uint64 // refused by the collector one by one (invalid events)
	Retries    uint64 // requests repeated after a transient failure
	LastError  string // the most recent failure, "" when none yet
}

// Client posts events to the collector. It is safe for concurrent use.
type Client struct {
	cfg    Config
	url    string
	logger log.Logger
	hc     *http.Client

	mu       sync.Mutex
	buf      [][]byte // encoded events, oldest first; buf[:inflight] is being posted
	inflight int
	enqueued uint64        // events ever buffered
	done     uint64        // events ever removed from the head (sent, rejected or dropped)
	progress chan struct{} // closed and replaced whenever done grows
	closing  bool
	stats    Stats

	kick   chan struct{} // wakes the sender
	ctx    context.Context
	cancel context.CancelFunc
	exited chan struct{}

	sent, dropped, rejected prometheus.Counter
	retries                 prometheus.Counter
	collectors              []prometheus.Collector
}

// New starts a Client and its sender goroutine. Call Close to stop it.
func New(cfg Config) *Client {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = DefaultMaxBuffered
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = log.NewNopLogger()
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:      cfg,
		url:      strings.TrimRight(cfg.URL, "/") + "/v1/events",
		logger:   log.With(cfg.Logger, "component", "report"),
		hc:       hc,
		progress: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
		exited:   make(chan struct{}),
	}
	c.initMetrics()
	go c.run()
	return c
}

func (c *Client) initMetrics() {
	var labels prometheus.Labels
	if c.cfg.Name != "" {
		labels = prometheus.Labels{"client": c.cfg.Name}
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_report_events_total", ConstLabels: labels,
		Help: "Events handled by the report client, by outcome: sent (taken by the collector), dropped (lost here), rejected (refused by the collector).",
	}, []string{"outcome"})
	c.sent = events.WithLabelValues("sent")
	c.dropped = events.WithLabelValues("dropped")
	c.rejected = events.WithLabelValues("rejected")
	retries := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lastmile_report_retries_total", ConstLabels: labels,
		Help: "Requests to the collector repeated after a transient failure (429, 5xx, network).",
	})
	c.retries = retries
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lastmile_report_queued_events", ConstLabels: labels,
		Help: "Events buffered in memory, waiting to be posted.",
	}, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(len(c.buf))
	})
	c.collectors = []prometheus.Collector{events, retries, queued}
}

// Collectors returns the client's Prometheus metrics, for the caller's registry.
func (c *Client) Collectors() []prometheus.Collector { return c.collectors }

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Queued = len(c.buf)
	return s
}

// Log buffers ev for the next post and returns at once. The event is encoded
// before Log returns, so the caller may reuse the map. ev itself is not
// modified.
func (c *Client) Log(ev Event) {
	line, err := encode(ev, time.Now())
	c.mu.Lock()
	if err != nil {
		c.dropLocked(1, fmt.Sprintf("event not encodable as JSON: %v", err))
		c.mu.Unlock()
		level.Warn(c.logger).Log("msg", "event dropped: not encodable as JSON", "log_type", fmt.Sprint(ev["log_type"]), "err", err)
		return
	}
	if c.closing {
		c.dropLocked(1, "event logged after Close")
		c.mu.Unlock()
		return
	}
	if len(c.buf) >= c.cfg.MaxBuffered {
		first := c.stats.Dropped == 0
		c.dropLocked(1, fmt.Sprintf("buffer full (%d events): collector too slow or unreachable", c.cfg.MaxBuffered))
		c.mu.Unlock()
		if first {
			// Once, not per event: a full buffer would flood the log.
			level.Warn(c.logger).Log("msg", "report buffer full, dropping new events", "max_buffered", c.cfg.MaxBuffered)
		}
		return
	}
	c.buf = append(c.buf, line)
	c.enqueued++
	full := len(c.buf)-c.inflight >= c.cfg.MaxBatch
	c.mu.Unlock()
	if full {
		c.wake()
	}
}

func (c *Client) dropLocked(n int, why string) {
	c.stats.Dropped += uint64(n)
	c.stats.LastError = why
	c.dropped.Add(float64(n))
}

func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Flush posts everything buffered at the time of the call and waits until
// each of those events was sent, rejected or dropped, or ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	target := c.enqueued
	c.mu.Unlock()
	c.wake()
	return c.waitDone(ctx, target)
}

func (c *Client) waitDone(ctx context.Context, target uint64) error {
	for {
		c.mu.Lock()
		done, ch, left := c.done, c.progress, len(c.buf)
		c.mu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-ch:
		case <-c.exited:
			c.mu.Lock()
			done = c.done
			c.mu.Unlock()
			if done >= target {
				return nil
			}
			return errors.New("report: client closed before the flush completed")
		case <-ctx.Done():
			return fmt.Errorf("report: flush: %d events still buffered: %w", left, ctx.Err())
		}
	}
}

// Close stops taking events, posts what is buffered and stops the sender.
// When ctx ends first, the events left are dropped (counted) and Close
// returns an error saying how many.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	target := c.enqueued
	c.mu.Unlock()
	if already {
		<-c.exited
		return nil
	}
	c.wake()
	err := c.waitDone(ctx, target)
	c.cancel()
	<-c.exited
	c.mu.Lock()
	lost := len(c.buf)
	if lost > 0 {
		c.dropLocked(lost, fmt.Sprintf("%d events undelivered at Close", lost))
		c.removeHeadLocked(lost)
	}
	c.mu.Unlock()
	if lost > 0 {
		level.Error(c.logger).Log("msg", "closed with undelivered events; they are lost", "events", lost, "err", err)
		return fmt.Errorf("report: close: %d events not delivered: %w", lost, err)
	}
	return nil
}

// removeHeadLocked forgets the n oldest events and wakes Flush waiters.
func (c *Client) removeHeadLocked(n int) {
	clear(c.buf[:n]) // let the encoded lines be collected
	c.buf = c.buf[n:]
	if len(c.buf) == 0 {
		c.buf = nil // release the backing array after a burst
	}
	c.inflight = 0
	c.done += uint64(n)
	close(c.progress)
	c.progress = make(chan struct{})
}

// run is the sender: it wakes on the flush interval, on a full batch, on
// Flush and on Close, and posts everything buffered, one batch at a time.
func (c *Client) run() {
	defer close(c.exited)
	t := time.NewTicker(c.cfg.FlushInterval)
	defer t.Stop()
	// limit is halved on each 413 and stays lowered: the collector's limits
	// are configuration, so the next full batch would be refused again.
	limit := c.cfg.MaxBatch
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		for {
			c.mu.Lock()
			n := min(len(c.buf), limit)
			if n == 0 {
				closing := c.closing
				c.mu.Unlock()
				if closing {
					return
				}
				break
			}
			size := 0
			for i := 0; i < n; i++ {
				size += len(c.buf[i]) + 1
				if size > maxBatchBytes && i > 0 {
					n = i
					break
				}
			}
			lines := make([][]byte, n)
			copy(lines, c.buf[:n])
			c.inflight = n
			c.mu.Unlock()

			res := c.postWithRetry(lines)
			c.mu.Lock()
			again := res.cancelled || (res.tooLarge && n > 1)
			if again {
				c.inflight = 0 // the events stay at the head
			} else {
				c.account(res, lines)
				c.removeHeadLocked(n)
			}
			c.mu.Unlock()
			if res.cancelled || c.ctx.Err() != nil {
				return
			}
			if again {
				limit = max(1, n/2) // 413: retry the same events in smaller batches
			}
		}
	}
}

// result is the outcome of one batch.
type result struct {
	ok        bool
	resp      response
	status    int
	errMsg    string
	tooLarge  bool // 413: the caller retries in smaller batches
	cancelled bool // Close's deadline passed: events stay buffered
}

// response is the collector's 200 answer (collector.Response).
type response struct {
	Accepted   int `json:"accepted"`
	SampledOut int `json:"sampled_out"`
	Rejected   []struct {
		Index  int    `json:"index"`
		Code   string `json:"code"`
		Field  string `json:"field"`
		Reason string `json:"reason"`
	} `json:"rejected"`
	RequestID string `json:"request_id"`
}

// account updates the counters for a finished batch. Called with mu held.
func (c *Client) account(res result, lines [][]byte) {
	n := len(lines)
	switch {
	case res.ok:
		rej := len(res.resp.Rejected)
		if rej > n {
			rej = n
		}
		taken := n - rej
		c.stats.Sent += uint64(taken)
		c.stats.SampledOut += uint64(max(0, min(res.resp.SampledOut, taken)))
		c.sent.Add(float64(taken))
		if rej > 0 {
			c.stats.Rejected += uint64(rej)
			c.rejected.Add(float64(rej))
			r := res.resp.Rejected[0]
			c.stats.LastError = fmt.Sprintf("%d of %d events rejected; first: index %d code %s field %q: %s", rej, n, r.Index, r.Code, r.Field, r.Reason)
			level.Warn(c.logger).Log("msg", "collector rejected events; they are not retried", "rejected", rej, "batch", n,
				"request_id", res.resp.RequestID, "first_code", r.Code, "first_field", r.Field, "first_reason", r.Reason,
				"first_event", truncate(lineAt(lines, r.Index), 300))
		}
	default:
		c.dropLocked(n, res.errMsg)
		level.Error(c.logger).Log("msg", "collector refused the batch; events dropped", "events", n, "status", res.status, "err", res.errMsg)
	}
}

func lineAt(lines [][]byte, i int) string {
	if i < 0 || i >= len(lines) {
		return ""
	}
	return string(lines[i])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// postWithRetry posts one batch until it is taken, refused for good, or the
// client is cancelled.
func (c *Client) postWithRetry(lines [][]byte) result {
	body, err := c.body(lines)
	if err != nil {
		return result{errMsg: "encoding request body: " + err.Error()}
	}
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		res, retryAfter, retry := c.post(body)
		if !retry {
			return res
		}
		wait := retryAfter
		if wait <= 0 {
			// Jitter spreads a fleet of components that failed together.
			wait = backoff/2 + mrand.N(backoff/2+1)
			backoff = min(2*backoff, c.cfg.MaxBackoff)
		}
		wait = min(wait, c.cfg.MaxBackoff)
		c.mu.Lock()
		c.stats.Retries++
		c.stats.LastError = res.errMsg
		c.mu.Unlock()
		c.retries.Inc()
		if attempt == 0 || attempt%10 == 9 {
			level.Warn(c.logger).Log("msg", "posting events failed; retrying", "events", len(lines), "attempt", attempt+1, "wait", wait, "err", res.errMsg)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return result{cancelled: true}
		}
	}
}

func (c *Client) body(lines [][]byte) ([]byte, error) {
	var b bytes.Buffer
	var w io.Writer = &b
	var gz *gzip.Writer
	if c.cfg.Gzip {
		gz = gzip.NewWriter(&b)
		w = gz
	}
	for _, l := range lines {
		if _, err := w.Write(l); err != nil {
			return nil, err
		}
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return nil, err
		}
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// post makes one request. retry says the failure is transient; retryAfter is
// the server's Retry-After, 0 when absent.
func (c *Client) post(body []byte) (res result, retryAfter time.Duration, retry bool) {
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return result{errMsg: "building request: " + err.Error()}, 0, false
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Lastmile-Key", c.cfg.AppKey)
	if c.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if c.ctx.Err() != nil {
			return result{cancelled: true}, 0, false
		}
		return result{errMsg: "POST " + c.url + ": " + err.Error()}, 0, true
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	res.status = resp.StatusCode
	switch {
	case resp.StatusCode/100 == 2:
		if err != nil {
			// The collector answered 2xx, so the events are durable; only the
			// per-event detail is lost. Retrying would duplicate nothing
			// visible (event ids dedup), but there is no need.
			res.ok = true
			return res, 0, false
		}
		if jerr := json.Unmarshal(data, &res.resp); jerr != nil {
			level.Warn(c.logger).Log("msg", "collector answer not understood; counting the batch as sent", "status", resp.StatusCode, "err", jerr)
		}
		res.ok = true
		return res, 0, false
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		res.errMsg = fmt.Sprintf("POST %s: %s: %s", c.url, resp.Status, errorText(data))
		return res, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), true
	case resp.StatusCode == http.StatusRequestEntityTooLarge:
		res.tooLarge = true
		fallthrough
	default:
		res.errMsg = fmt.Sprintf("POST %s: %s: %s", c.url, resp.Status, errorText(data))
		if resp.StatusCode == http.StatusUnauthorized {
			res.errMsg += " (check the app key)"
		}
		return res, 0, false
	}
}

// errorText extracts the collector's {"error": ...} message, else the body.
func errorText(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	return truncate(strings.TrimSpace(string(data)), 200)
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// encode renders ev as one JSON object, adding event_id and ts when missing
// without touching the caller's map.
func encode(ev Event, now time.Time) ([]byte, error) {
	b, err := json.Marshal(map[string]any(ev))
	if err != nil {
		return nil, err
	}
	var extra []byte
	if _, ok := ev["event_id"]; !ok {
		extra = append(extra, `"event_id":"`...)
		extra = append(extra, newID()...)
		extra = append(extra, `",`...)
	}
	if _, ok := ev["ts"]; !ok {
		extra = append(extra, `"ts":`...)
		extra = strconv.AppendInt(extra, now.UnixMilli(), 10)
		extra = append(extra, ',')
	}
	if len(extra) == 0 {
		return b, nil
	}
	if len(ev) == 0 { // b is "{}": no field follows the added ones
		extra = extra[:len(extra)-1]
	}
	out := make([]byte, 0, len(b)+len(extra))
	out = append(out, '{')
	out = append(out, extra...)
	return append(out, b[1:]...), nil
}

// newID is a random 128-bit id, hex: unique without coordination.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
