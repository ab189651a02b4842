// Package collector is the HTTP ingest service: it authenticates the app key,
// validates every event against the catalog, samples, and produces the kept
// events to one Kafka topic per log_type. It answers 2xx only after Kafka has
// acknowledged everything it accepted.
package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Producer hands records to Kafka and returns once they are durable (acked
// by all in-sync replicas) or failed. Interfaces live where they are used.
type Producer interface {
	Produce(ctx context.Context, msgs []kafka.Message) error
}

// Config of the collector.
type Config struct {
	// AppKeys maps an app key (sent in the X-Lastmile-Key header or as a
	// bearer token) to its app_id.
	AppKeys map[string]string
	// MaxBodyBytes bounds the request body as sent (compressed or not) and,
	// for gzip, also after decompression.
	MaxBodyBytes int64
	// MaxEvents bounds the events in one request.
	MaxEvents int
	// ProduceTimeout bounds the wait for Kafka before answering 503.
	ProduceTimeout time.Duration
	// MaxRawRejected bounds the raw text kept for a rejected event.
	MaxRawRejected int
	Cleaner        schemas.Cleaner
}

// Defaults for Config.
const (
	DefaultMaxBodyBytes   = 8 << 20
	DefaultMaxEvents      = 10_000
	DefaultProduceTimeout = 10 * time.Second
	DefaultMaxRawRejected = 16 << 10
)

// Collector serves POST /v1/events and GET /v1/config.
type Collector struct {
	cfg      Config
	sampler  *sampling.Sampler
	producer Producer
	logger   log.Logger
	metrics  *Metrics
	pool     sync.Pool
	reqSeq   atomic.Uint64
	draining atomic.Bool
}

// New returns a Collector. metrics may be shared with a registry by the caller.
func New(cfg Config, s *sampling.Sampler, p Producer, m *Metrics, logger log.Logger) *Collector {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = DefaultProduceTimeout
	}
	if cfg.MaxRawRejected <= 0 {
		cfg.MaxRawRejected = DefaultMaxRawRejected
	}
	c := &Collector{cfg: cfg, sampler: s, producer: p, logger: logger, metrics: m}
	c.pool.New = func() any { return &batch{cleaner: cfg.Cleaner} }
	return c
}

// Drain makes the collector refuse new event posts with 503, for shutdown.
func (c *Collector) Drain() { c.draining.Store(true) }

// Response is the body of a processed POST /v1/events (see docs/collector.md).
type Response struct {
	Accepted   int           `json:"accepted"`
	SampledOut int           `json:"sampled_out"`
	Rejected   []RejectedRef `json:"rejected"`
	RequestID  string        `json:"request_id"`
}

// RejectedRef reports one refused event by its position in the request.
type RejectedRef struct {
	Index int    `json:"index"`
	Code  string `json:"code"`
	Field string `json:"field,omitempty"`
	Msg   string `json:"reason"`
}

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Limit names the configured limit a 413 ran into.
	Limit     string `json:"limit,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// batch is the per-request working state, pooled: the hot path allocates
// little beyond the Kafka messages it hands over.
type batch struct {
	fields  []flatjson.Field
	ev      schemas.Event
	out     []byte // all message values, back to back
	spans   [][2]int
	msgs    []kafka.Message
	keys    []byte
	kspans  [][2]int
	topics  []string
	rejects []RejectedRef
	body    bytes.Buffer
	gz      *gzip.Reader
	idbuf   []byte
	cleaner schemas.Cleaner // per batch: a Cleaner learns and is not shared
	events  [][2]int        // span of each event in body, from splitBody
	bodySum [32]byte        // sha256 of body, for rejected records' ids
	haveSum bool
}

func (b *batch) reset() {
	b.out = b.out[:0]
	b.spans = b.spans[:0]
	b.msgs = b.msgs[:0]
	b.keys = b.keys[:0]
	b.kspans = b.kspans[:0]
	b.topics = b.topics[:0]
	b.rejects = b.rejects[:0]
	b.body.Reset()
	b.events = b.events[:0]
	b.haveSum = false
}

// Handler returns the collector's HTTP routes.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/events", c.serveEvents)
	mux.HandleFunc("/v1/config", c.serveConfig)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (c *Collector) fail(w http.ResponseWriter, reqID string, status int, limit, format string, args ...any) {
	c.metrics.Requests.WithLabelValues(strconv.Itoa(status)).Inc()
	writeJSON(w, status, ErrorBody{Error: fmt.Sprintf(format, args...), Limit: limit, RequestID: reqID})
}

func (c *Collector) serveConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		c.fail(w, "", http.StatusMethodNotAllowed, "", "%s /v1/config: only GET is allowed", r.Method)
		return
	}
	w.Header().Set("Cache-Control", "max-age=60")
	writeJSON(w, http.StatusOK, c.sampler)
}

func (c *Collector) appID(r *http.Request) (string, bool) {
	key := r.Header.Get("X-Lastmile-Key")
	if key == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && a[:7] == "Bearer " {
			key = a[7:]
		}
	}
	if key == "" {
		return "", false
	}
	id, ok := c.cfg.AppKeys[key]
	return id, ok
}

func (c *Collector) serveEvents(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := strconv.FormatInt(start.UnixNano(), 36) + "-" + strconv.FormatUint(c.reqSeq.Add(1), 36)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		c.fail(w, reqID, http.StatusMethodNotAllowed, "", "%s /v1/events: only POST is allowed", r.Method)
		return
	}
	if c.draining.Load() {
		w.Header().Set("Retry-After", "5")
		c.fail(w, reqID, http.StatusServiceUnavailable, "", "collector is shutting down; retry on another replica or later")
		return
	}
	appID, ok := c.appID(r)
	if !ok {
		if r.Header.Get("X-Lastmile-Key") == "" && r.Header.Get("Authorization") == "" {
			c.fail(w, reqID, http.StatusUnauthorized, "", "missing app key: send it in the X-Lastmile-Key header")
		} else {
			c.fail(w, reqID, http.StatusUnauthorized, "", "unknown app key")
		}
		return
	}

	b := c.pool.Get().(*batch)
	poisoned := false
	defer func() {
		// After a failed produce Kafka's writer may still hold the buffers.
		if !poisoned {
			c.pool.Put(b)
		}
	}()
	b.reset()

	if status, limit, msg := c.readBody(r, b); status != 0 {
		if status == http.StatusBadRequest && b.body.Len() > 0 {
			// Undecodable gzip: keep what we can for "why can't I find my log".
			c.produceRequestReject(r.Context(), appID, reqID, schemas.ReasonInvalidJSON, msg, b.body.Bytes())
		}
		c.fail(w, reqID, status, limit, "%s", msg)
		return
	}
	body := b.body.Bytes()
	receivedAt := start.UnixMilli()
	b.cleaner.At = start

	if skipJSONSpace(body, 0) == len(body) {
		c.fail(w, reqID, http.StatusBadRequest, "", "empty body: send a JSON array of events or NDJSON, one event per line")
		return
	}
	var err error
	b.events, err = splitBody(b.events, body, r.Header.Get("Content-Type"), c.cfg.MaxEvents)
	if errors.Is(err, errTooManyEvents) {
		c.fail(w, reqID, http.StatusRequestEntityTooLarge, "max_batch_events",
			"batch has more than %d events (limit max_batch_events); split it", c.cfg.MaxEvents)
		return
	}
	if err != nil {
		msg := "invalid JSON: " + err.Error()
		c.produceRequestReject(r.Context(), appID, reqID, schemas.ReasonInvalidJSON, msg, body)
		c.fail(w, reqID, http.StatusBadRequest, "", "%s", msg)
		return
	}
	var resp Response
	for n, sp := range b.events {
		c.handleEvent(b, appID, reqID, n, body[sp[0]:sp[1]], receivedAt, &resp)
	}
	if err := c.produce(r.Context(), b); err != nil {
		poisoned = true
		level.Warn(c.logger).Log("msg", "produce failed", "request_id", reqID, "events", len(b.msgs), "err", err)
		w.Header().Set("Retry-After", "1")
		c.fail(w, reqID, http.StatusServiceUnavailable, "", "event bus unavailable, nothing was stored: retry later (%v)", err)
		return
	}
	resp.RequestID = reqID
	resp.Rejected = b.rejects
	if resp.Rejected == nil {
		resp.Rejected = []RejectedRef{}
	}
	c.metrics.Requests.WithLabelValues("200").Inc()
	c.metrics.RequestDuration.Observe(time.Since(start).Seconds())
	writeJSON(w, http.StatusOK, resp)
}

// readBody reads and, when gzipped, inflates the body into b.body, enforcing
// the size limit on both. A non-zero status is the error to answer.
func (c *Collector) readBody(r *http.Request, b *batch) (status int, limit, msg string) {
	limitMsg := func() (int, string, string) {
		return http.StatusRequestEntityTooLarge, "max_body_bytes",
			fmt.Sprintf("body exceeds %d bytes (limit max_body_bytes); send smaller batches", c.cfg.MaxBodyBytes)
	}
	if r.ContentLength > c.cfg.MaxBodyBytes {
		return limitMsg()
	}
	enc, err := contentCoding(r.Header)
	if err != nil {
		return http.StatusUnsupportedMediaType, "", err.Error()
	}
	rd := io.LimitReader(r.Body, c.cfg.MaxBodyBytes+1)
	switch enc {
	case "":
		if _, err := b.body.ReadFrom(rd); err != nil {
			return http.StatusBadRequest, "", "reading body: " + err.Error()
		}
		if int64(b.body.Len()) > c.cfg.MaxBodyBytes {
			return limitMsg()
		}
	case "gzip":
		var raw bytes.Buffer
		if _, err := raw.ReadFrom(rd); err != nil {
			return http.StatusBadRequest, "", "reading body: " + err.Error()
		}
		if int64(raw.Len()) > c.cfg.MaxBodyBytes {
			return limitMsg()
		}
		var err error
		if b.gz == nil {
			b.gz, err = gzip.NewReader(bytes.NewReader(raw.Bytes()))
		} else {
			err = b.gz.Reset(bytes.NewReader(raw.Bytes()))
		}
		if err == nil {
			_, err = b.body.ReadFrom(io.LimitReader(b.gz, c.cfg.MaxBodyBytes+1))
		}
		if err != nil {
			b.body.Reset()
			b.body.Write(raw.Bytes())
			return http.StatusBadRequest, "", "invalid gzip body: " + err.Error()
		}
		if int64(b.body.Len()) > c.cfg.MaxBodyBytes {
			return http.StatusRequestEntityTooLarge, "max_body_bytes",
				fmt.Sprintf("body inflates to more than %d bytes (limit max_body_bytes); send smaller batches", c.cfg.MaxBodyBytes)
		}
	}
	return 0, "", ""
}

// handleEvent validates, samples and encodes one event of a request.
func (c *Collector) handleEvent(b *batch, appID, reqID string, index int, raw []byte, receivedAt int64, resp *Response) {
	var err error
	b.fields, err = flatjson.ParseObject(b.fields, raw)
	if err != nil {
		code := schemas.ReasonInvalidJSON
		if errors.Is(err, flatjson.ErrNotObject) {
			code = schemas.ReasonNotObject
		}
		c.addReject(b, appID, reqID, index, raw, &schemas.Reject{Code: code, Msg: err.Error()}, receivedAt)
		return
	}
	ev := &b.ev
	if rej := b.cleaner.Clean(b.fields, ev); rej != nil {
		c.addReject(b, appID, reqID, index, raw, rej, receivedAt)
		return
	}
	lt := ev.Type
	c.metrics.received(lt.Name)
	keep, rate := c.sampler.Decide(ev)
	if !keep {
		resp.SampledOut++
		c.metrics.sampledOut(lt.Name)
		return
	}
	resp.Accepted++

	// The event id: the client's, or one derived from the app and the exact
	// bytes, so a retried payload maps to the same id and is deduplicated.
	var eventID []byte
	if v := ev.Vals[schemas.ColEventID]; v.Set && len(v.S) > 0 {
		eventID = v.S
	} else {
		eventID = deriveID(b, appID, raw)
	}
	start := len(b.out)
	b.out = append(b.out, `{"event_id":`...)
	b.out = flatjson.AppendString(b.out, string(eventID))
	b.out = append(b.out, `,"app_id":`...)
	b.out = flatjson.AppendString(b.out, appID)
	b.out = append(b.out, `,"received_at":`...)
	b.out = strconv.AppendInt(b.out, receivedAt, 10)
	b.out = append(b.out, `,"sample_rate":`...)
	b.out = strconv.AppendFloat(b.out, rate, 'g', -1, 64)
	for i := range b.fields {
		f := &b.fields[i]
		if isServerSet(f) {
			continue
		}
		b.out = append(b.out, ',', '"')
		b.out = append(b.out, f.Key...)
		b.out = append(b.out, '"', ':')
		b.out = append(b.out, f.Raw...)
	}
	b.out = append(b.out, '}')
	b.spans = append(b.spans, [2]int{start, len(b.out)})

	kstart := len(b.keys)
	switch {
	case lt.Key == schemas.KeyStream:
		b.keys = append(b.keys, ev.Vals[schemas.ColStreamID].S...)
	case len(ev.Vals[schemas.ColSessionID].S) > 0:
		b.keys = append(b.keys, ev.Vals[schemas.ColSessionID].S...)
	default:
		b.keys = append(b.keys, ev.Vals[schemas.ColDeviceID].S...)
	}
	b.kspans = append(b.kspans, [2]int{kstart, len(b.keys)})
	b.topics = append(b.topics, topicOf[lt.Name])
}

// isServerSet reports whether a field is one the collector sets itself.
func isServerSet(f *flatjson.Field) bool {
	switch len(f.Key) {
	case 6, 8, 11: // app_id, event_id, received_at / sample_rate
		return f.KeyIs("event_id") || f.KeyIs("app_id") || f.KeyIs("received_at") || f.KeyIs("sample_rate")
	}
	return f.KeyEscaped && (f.KeyIs("event_id") || f.KeyIs("app_id") || f.KeyIs("received_at") || f.KeyIs("sample_rate"))
}

var topicOf = func() map[string]string {
	m := map[string]string{}
	for _, lt := range schemas.Catalog {
		m[lt.Name] = schemas.TopicOf(lt.Name)
	}
	return m
}()

func deriveID(b *batch, appID string, raw []byte) []byte {
	h := sha256.New()
	h.Write([]byte(appID))
	h.Write([]byte{0})
	h.Write(raw)
	var sum [32]byte
	b.idbuf = hex.AppendEncode(b.idbuf[:0], h.Sum(sum[:0])[:16])
	return b.idbuf
}

func (c *Collector) addReject(b *batch, appID, reqID string, index int, raw []byte, rej *schemas.Reject, receivedAt int64) {
	c.metrics.Rejected.WithLabelValues(rej.Code).Inc()
	b.rejects = append(b.rejects, RejectedRef{Index: index, Code: rej.Code, Field: rej.Field, Msg: rej.Msg})
	rec := schemas.RejectedRecord{
		ReceivedAt: receivedAt, AppID: appID, Stage: "collector", Code: rej.Code, Field: rej.Field,
		Reason: rej.Msg, EventIndex: index, RequestID: reqID,
		EventID: b.rejectedID(appID, index),
	}
	// Best effort: the ids of a malformed event still say whose it was.
	rec.FillIDs(b.fields)
	rec.AppID = appID
	rec.Raw = truncRaw(raw, c.cfg.MaxRawRejected)
	b.addRejected(&rec)
}

// addRejected queues a rejected record for the dead-letter topic, keyed by
// device so one device's rejects stay in order.
func (b *batch) addRejected(rec *schemas.RejectedRecord) {
	v, _ := json.Marshal(rec) // plain strings and numbers: cannot fail
	start := len(b.out)
	b.out = append(b.out, v...)
	b.spans = append(b.spans, [2]int{start, len(b.out)})
	kstart := len(b.keys)
	b.keys = append(b.keys, rec.DeviceID...)
	b.kspans = append(b.kspans, [2]int{kstart, len(b.keys)})
	b.topics = append(b.topics, schemas.RejectedTopic)
}

func truncRaw(raw []byte, max int) string {
	if len(raw) > max {
		return string(raw[:max]) + "…[truncated]"
	}
	return string(raw)
}

// produceRequestReject records a request that could not be split into events
// at all, so its sender can find out why nothing arrived. Failure to record it
// is logged, not answered: the request is refused either way.
func (c *Collector) produceRequestReject(ctx context.Context, appID, reqID, code, msg string, raw []byte) {
	c.metrics.Rejected.WithLabelValues(code).Inc()
	b := &batch{}
	sum := sha256.Sum256(raw)
	b.addRejected(&schemas.RejectedRecord{
		ReceivedAt: time.Now().UnixMilli(), AppID: appID, Stage: "collector", Code: code, Reason: msg,
		EventIndex: -1, RequestID: reqID, Raw: truncRaw(raw, c.cfg.MaxRawRejected),
		EventID: rejectedID(appID, &sum, -1),
	})
	if err := c.produce(ctx, b); err != nil {
		level.Warn(c.logger).Log("msg", "could not record rejected request", "request_id", reqID, "err", err)
	}
}

func (c *Collector) produce(ctx context.Context, b *batch) error {
	if len(b.spans) == 0 {
		return nil
	}
	for i, sp := range b.spans {
		ks := b.kspans[i]
		var key []byte
		if ks[1] > ks[0] {
			key = b.keys[ks[0]:ks[1]]
		}
		b.msgs = append(b.msgs, kafka.Message{Topic: b.topics[i], Key: key, Value: b.out[sp[0]:sp[1]]})
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	err := c.producer.Produce(ctx, b.msgs)
	c.metrics.ProduceDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.ProduceErrors.Inc()
		return err
	}
	for _, t := range b.topics {
		c.metrics.produced(t)
	}
	return nil
}
