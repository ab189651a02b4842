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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/internal/kafkaio"
	"github.com/lastmile-qoe/lastmile/sampling"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Producer hands records to Kafka and returns once they are durable (acked
// by all in-sync replicas) or failed. Interfaces live where they are used.
// Its error tells what was stored: one wrapping kafka.WriteErrors has a nil
// entry for each record stored; one wrapping a context error means any may
// have been; any other means none was (see kafkaio.Producer.Produce).
type Producer interface {
	Produce(ctx context.Context, msgs []kafka.Message) error
}

// Config of the collector.
type Config struct {
	// AppKeys maps an app key (sent in the X-Lastmile-Key header, as a
	// bearer token or in the key query parameter) to its app_id.
	AppKeys map[string]string
	// MaxBodyBytes bounds the request body as sent (compressed or not) and,
	// for gzip, also after decompression.
	MaxBodyBytes int64
	// MaxEvents bounds the events in one request.
	MaxEvents int
	// ProduceTimeout bounds the wait for Kafka before answering 503 with an
	// unknown outcome. It outlasts the writer's own retry bound, so the
	// answer is normally the writer's, record by record.
	ProduceTimeout time.Duration
	// MaxRecordBytes is the largest key + value of one Kafka record the
	// producer takes (kafkaio.Producer.MaxRecordBytes); a bigger event is
	// rejected too_large on its own.
	MaxRecordBytes int
	// Admission is the plan for overload (429 before reading a body).
	Admission Admission
	// MaxRawRejected bounds the raw text kept for a rejected event.
	MaxRawRejected int
	Cleaner        schemas.Cleaner
	// CMCD is the plan of the CMCD event-mode mapping (zero: DefaultCMCDPlan).
	CMCD CMCDPlan
	// AllowedOrigins are the page origins a browser may call from (CORS);
	// empty means any ("*"), see cors.go.
	AllowedOrigins []string
}

// Defaults for Config.
const (
	DefaultMaxBodyBytes   = 8 << 20
	DefaultMaxEvents      = 10_000
	DefaultProduceTimeout = kafkaio.WriterBound + 10*time.Second // plus time in the writer's queue, which admission keeps short
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
	adm      *admitter
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
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = kafkaio.DefaultMaxRecordBytes
	}
	// A rejected record must fit in a Kafka record too.
	cfg.MaxRawRejected = min(cfg.MaxRawRejected, cfg.MaxRecordBytes/4)
	cfg.Admission = cfg.Admission.withDefaults()
	if cfg.CMCD.MaxSessions <= 0 {
		cfg.CMCD.MaxSessions = DefaultCMCDPlan.MaxSessions
	}
	if cfg.CMCD.ErrorCode == 0 {
		cfg.CMCD.ErrorCode = DefaultCMCDPlan.ErrorCode
	}
	c := &Collector{cfg: cfg, sampler: s, producer: p, logger: logger, metrics: m,
		adm: newAdmitter(cfg.Admission, cfg.AppKeys, m)}
	c.pool.New = func() any { return &batch{cleaner: cfg.Cleaner} }
	return c
}

// Drain makes the collector refuse new event posts with 503, for shutdown.
func (c *Collector) Drain() { c.draining.Store(true) }

// Response is the body of a processed POST /v1/events (see docs/collector.md).
type Response struct {
	// Reports: on /v1/cmcd, the CMCD reports read (each maps to zero or
	// more catalog events, which accepted and rejected count).
	Reports    int           `json:"reports,omitempty"`
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
	// Limit names the configured limit a 413 or 429 ran into.
	Limit     string `json:"limit,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Stored, on a 503 after the events were handed to Kafka, says what of
	// the request is durable: "none", "some" (the events at the 0-based
	// positions in StoredEvents) or "unknown" (the wait for Kafka timed out:
	// any may be). Every other non-2xx answer stored nothing.
	Stored       string `json:"stored,omitempty"`
	StoredEvents []int  `json:"stored_events,omitempty"`
}

// batch is the per-request working state, pooled: the hot path allocates
// little beyond the Kafka messages it hands over.
type batch struct {
	fields  []flatjson.Field
	ev      schemas.Event
	out     []byte // all message values, back to back
	spans   [][2]int
	evIdx   []int32 // per span: the event's position in the request, -1 for a rejected record
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
	// poisoned: a produce was given up on while Kafka's writer may still
	// hold the buffers, so the batch must not go back to the pool.
	poisoned bool
}

func (b *batch) reset() {
	b.out = b.out[:0]
	b.spans = b.spans[:0]
	b.evIdx = b.evIdx[:0]
	b.msgs = b.msgs[:0]
	b.keys = b.keys[:0]
	b.kspans = b.kspans[:0]
	b.topics = b.topics[:0]
	b.rejects = b.rejects[:0]
	b.body.Reset()
	b.events = b.events[:0]
	b.haveSum = false
	b.poisoned = false
}

// poolKeepBytes bounds the buffers a pooled batch keeps: a burst of big
// bodies must not stay resident as pooled capacity once it is over.
// A typical batch (up to a few MiB) keeps its buffers: dropping them made
// every 1 MB request allocate its record buffer anew.
const poolKeepBytes = 4 << 20

// shrink drops the buffers too big to keep in the pool.
func (b *batch) shrink() {
	if b.body.Cap() > poolKeepBytes {
		// The parsed fields, the event and the gzip reader point into the
		// body (or the compressed one): they would keep it alive.
		b.body, b.fields, b.ev, b.gz = bytes.Buffer{}, nil, schemas.Event{}, nil
	}
	if cap(b.out) > poolKeepBytes {
		b.out = nil
	}
	if cap(b.keys) > poolKeepBytes/4 {
		b.keys = nil
	}
	if cap(b.msgs) > 4096 { // ~100 bytes each
		b.msgs, b.spans, b.evIdx, b.kspans, b.topics = nil, nil, nil, nil, nil
	}
	clear(b.msgs[:cap(b.msgs)]) // they point into out and keys
	if cap(b.rejects) > 4096 {
		b.rejects = nil
	}
}

// Handler returns the collector's HTTP routes.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/events", c.serveEvents)
	mux.HandleFunc("/v1/cmcd", c.serveCMCD)
	mux.HandleFunc("/v1/config", c.serveConfig)
	return corsPolicy(c.cfg.AllowedOrigins).Wrap(mux)
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
		// A beacon or a player's CMCD event target can set no header.
		key = r.URL.Query().Get("key")
	}
	if key == "" {
		return "", false
	}
	id, ok := c.cfg.AppKeys[key]
	return id, ok
}

func (c *Collector) serveEvents(w http.ResponseWriter, r *http.Request) {
	in, ok := c.intake(w, r, "/v1/events", c.appID)
	if !ok {
		return
	}
	defer in.done()
	b, body := in.b, in.b.body.Bytes()
	if skipJSONSpace(body, 0) == len(body) {
		c.fail(w, in.reqID, http.StatusBadRequest, "", "empty body: send a JSON array of events or NDJSON, one event per line")
		return
	}
	// The records are the events plus a few server-set fields: size them
	// once rather than doubling a big buffer (each doubling is garbage
	// of the size of the request).
	b.out = slices.Grow(b.out, len(body)+len(body)/4+4096)
	var err error
	b.events, err = splitBody(b.events, body, r.Header.Get("Content-Type"), c.cfg.MaxEvents)
	if errors.Is(err, errTooManyEvents) {
		c.fail(w, in.reqID, http.StatusRequestEntityTooLarge, "max_batch_events",
			"batch has more than %d events (limit max_batch_events); split it", c.cfg.MaxEvents)
		return
	}
	if err != nil {
		msg := "invalid JSON: " + err.Error()
		c.produceRequestReject(r.Context(), in.appID, in.reqID, schemas.ReasonInvalidJSON, msg, body)
		c.fail(w, in.reqID, http.StatusBadRequest, "", "%s", msg)
		return
	}
	var resp Response
	for n, sp := range b.events {
		c.handleEvent(b, in.appID, in.reqID, n, body[sp[0]:sp[1]], in.receivedAt, &resp)
	}
	c.answer(w, r, in, &resp)
}

// intake is a post past the checks every ingest route makes (method,
// draining, app key, size, admission) with its body read into b.body.
type intake struct {
	appID, reqID string
	start        time.Time
	receivedAt   int64
	b            *batch
	done         func() // returns b to the pool and the admission charge
}

// intake runs those checks and reads the body; when it returns false it
// has answered.
func (c *Collector) intake(w http.ResponseWriter, r *http.Request, path string, auth func(*http.Request) (string, bool)) (*intake, bool) {
	start := time.Now()
	reqID := strconv.FormatInt(start.UnixNano(), 36) + "-" + strconv.FormatUint(c.reqSeq.Add(1), 36)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		c.fail(w, reqID, http.StatusMethodNotAllowed, "", "%s %s: only POST is allowed", r.Method, path)
		return nil, false
	}
	if c.draining.Load() {
		w.Header().Set("Retry-After", "5")
		c.fail(w, reqID, http.StatusServiceUnavailable, "", "collector is shutting down; retry on another replica or later")
		return nil, false
	}
	appID, ok := auth(r)
	if !ok {
		if r.Header.Get("X-Lastmile-Key") == "" && r.Header.Get("Authorization") == "" && r.URL.Query().Get("key") == "" {
			c.fail(w, reqID, http.StatusUnauthorized, "", "missing app key: send it in the X-Lastmile-Key header or the key query parameter")
		} else {
			c.fail(w, reqID, http.StatusUnauthorized, "", "unknown app key")
		}
		return nil, false
	}

	if r.ContentLength > c.cfg.MaxBodyBytes {
		c.fail(w, reqID, http.StatusRequestEntityTooLarge, "max_body_bytes",
			"body exceeds %d bytes (limit max_body_bytes); send smaller batches", c.cfg.MaxBodyBytes)
		return nil, false
	}
	// Admission before a byte of the body is read: the charge is held until
	// the answer, produce included.
	ch, limit := c.adm.admit(appID, r.ContentLength)
	if ch == nil {
		c.refuse(w, r, reqID, limit)
		return nil, false
	}
	b := c.pool.Get().(*batch)
	b.reset()
	in := &intake{appID: appID, reqID: reqID, start: start, receivedAt: start.UnixMilli(), b: b}
	in.done = func() {
		ch.release()
		// After a produce given up on, Kafka's writer may still hold the buffers.
		if !b.poisoned {
			b.shrink()
			c.pool.Put(b)
		}
	}
	if status, limit, msg := c.readBody(r, b, ch); status != 0 {
		in.done()
		if status == http.StatusTooManyRequests {
			c.refuse(w, r, reqID, limit)
			return nil, false
		}
		if status == http.StatusBadRequest && b.body.Len() > 0 {
			// Undecodable gzip: keep what we can for "why can't I find my log".
			c.produceRequestReject(r.Context(), appID, reqID, schemas.ReasonInvalidJSON, msg, b.body.Bytes())
		}
		c.fail(w, reqID, status, limit, "%s", msg)
		return nil, false
	}
	b.cleaner.At = start
	return in, true
}

// answer produces what the request's events made of b and answers: 200
// with resp (true), or 503 saying what of it is stored (false).
func (c *Collector) answer(w http.ResponseWriter, r *http.Request, in *intake, resp *Response) bool {
	b := in.b
	if err := c.produce(r.Context(), b); err != nil {
		ans := ErrorBody{RequestID: in.reqID}
		var known bool
		ans.StoredEvents, known = b.storedEvents(err)
		switch {
		case !known:
			b.poisoned = true
			ans.Stored = "unknown"
			ans.Error = fmt.Sprintf("event bus did not answer in %s; some or all events may have been stored: retry the same payload later, stored events are deduplicated by event_id (%v)", c.cfg.ProduceTimeout, err)
		case len(ans.StoredEvents) == 0:
			ans.Stored = "none"
			ans.Error = fmt.Sprintf("event bus unavailable, nothing was stored: retry later (%v)", err)
		default:
			ans.Stored = "some"
			ans.Error = fmt.Sprintf("event bus failed part of the request: %d of %d accepted events were stored (listed in stored_events); retry the others, or the same payload, later (%v)", len(ans.StoredEvents), resp.Accepted, err)
		}
		level.Warn(c.logger).Log("msg", "produce failed", "request_id", in.reqID, "events", len(b.msgs), "stored", ans.Stored, "stored_events", len(ans.StoredEvents), "err", err)
		w.Header().Set("Retry-After", "1")
		c.metrics.Requests.WithLabelValues("503").Inc()
		writeJSON(w, http.StatusServiceUnavailable, ans)
		return false
	}
	resp.RequestID = in.reqID
	resp.Rejected = b.rejects
	if resp.Rejected == nil {
		resp.Rejected = []RejectedRef{}
	}
	c.metrics.Requests.WithLabelValues("200").Inc()
	c.metrics.RequestDuration.Observe(time.Since(in.start).Seconds())
	writeJSON(w, http.StatusOK, resp)
	return true
}

// refuse answers 429 for a request the admission plan has no room for. The
// rest of the body is read and discarded first (constant memory): a client
// still writing a big body would otherwise see a broken pipe, not the
// answer. A client that sent Expect: 100-continue has not sent it.
func (c *Collector) refuse(w http.ResponseWriter, r *http.Request, reqID, limit string) {
	if !strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		io.Copy(io.Discard, io.LimitReader(r.Body, c.cfg.MaxBodyBytes+1))
	}
	secs := int(c.cfg.Admission.RetryAfter.Round(time.Second) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	c.fail(w, reqID, http.StatusTooManyRequests, limit,
		"collector is at its limit of request bytes in progress (%s); nothing was stored: retry the same payload after %d s", limit, secs)
}

// readCharged reads src into dst, growing the request's charge before each
// step so that it covers base + what dst holds; a non-empty limit means the
// plan had no room for more.
func readCharged(dst *bytes.Buffer, src io.Reader, base int64, ch *charge) (limit string, err error) {
	for {
		room := ch.n - base - int64(dst.Len())
		if room <= 0 {
			// Charged for all read so far: is there more?
			var one [1]byte
			if k, err := io.ReadFull(src, one[:]); k == 0 {
				if err == io.EOF {
					return "", nil
				}
				return "", err
			}
			if limit := ch.ensure(base + int64(dst.Len()) + 1); limit != "" {
				return limit, nil
			}
			dst.WriteByte(one[0])
			continue
		}
		n, err := dst.ReadFrom(io.LimitReader(src, room))
		if err != nil {
			return "", err
		}
		if n < room {
			return "", nil
		}
	}
}

// readBody reads and, when gzipped, inflates the body into b.body, enforcing
// the size limit on both and charging what it holds to ch. A non-zero status
// is the error to answer.
func (c *Collector) readBody(r *http.Request, b *batch, ch *charge) (status int, limit, msg string) {
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
		if r.ContentLength > 0 {
			b.body.Grow(int(r.ContentLength))
		}
		if limit, err := readCharged(&b.body, rd, 0, ch); limit != "" {
			return http.StatusTooManyRequests, limit, ""
		} else if err != nil {
			return http.StatusBadRequest, "", "reading body: " + err.Error()
		}
		if int64(b.body.Len()) > c.cfg.MaxBodyBytes {
			return limitMsg()
		}
	case "gzip":
		var raw bytes.Buffer
		if r.ContentLength > 0 {
			raw.Grow(int(r.ContentLength))
		}
		if limit, err := readCharged(&raw, rd, 0, ch); limit != "" {
			return http.StatusTooManyRequests, limit, ""
		} else if err != nil {
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
			var limit string
			// Inflated bytes are charged on top of the compressed ones.
			if limit, err = readCharged(&b.body, io.LimitReader(b.gz, c.cfg.MaxBodyBytes+1), int64(raw.Len()), ch); limit != "" {
				return http.StatusTooManyRequests, limit, ""
			}
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
	// The event id: the client's, or one derived from the app and the exact
	// bytes, so a retried payload maps to the same id and is deduplicated.
	// Before sampling: an event without session, device or stream is
	// sampled by it (sampling.UnitIDs).
	var eventID []byte
	if v := ev.Vals[schemas.ColEventID]; v.Set && len(v.S) > 0 {
		eventID = v.S
	} else {
		eventID = deriveID(b, appID, raw)
		ev.Vals[schemas.ColEventID].S, ev.Vals[schemas.ColEventID].Set = eventID, true
	}
	keep, rate := c.sampler.Decide(ev)
	if !keep {
		c.metrics.received(lt.Name)
		resp.SampledOut++
		c.metrics.sampledOut(lt.Name)
		return
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

	kstart := len(b.keys)
	switch {
	case lt.Key == schemas.KeyStream:
		b.keys = append(b.keys, ev.Vals[schemas.ColStreamID].S...)
	case len(ev.Vals[schemas.ColSessionID].S) > 0:
		b.keys = append(b.keys, ev.Vals[schemas.ColSessionID].S...)
	case len(ev.Vals[schemas.ColDeviceID].S) > 0:
		b.keys = append(b.keys, ev.Vals[schemas.ColDeviceID].S...)
	default:
		// A server log without session (an edge's request without a CMCD
		// sid): spread by its event, not all on the empty key's partition.
		b.keys = append(b.keys, eventID...)
	}
	// An event bigger than a Kafka record can be would fail its whole
	// request with an error no retry can fix: refuse it alone.
	if size := len(b.out) - start + len(b.keys) - kstart; size > c.cfg.MaxRecordBytes {
		b.out, b.keys = b.out[:start], b.keys[:kstart]
		c.addReject(b, appID, reqID, index, raw, &schemas.Reject{Code: schemas.ReasonTooLarge,
			Msg: fmt.Sprintf("event is %d bytes as stored, at most %d allowed (the event bus's message size); drop or split its large fields", size, c.cfg.MaxRecordBytes)}, receivedAt)
		return
	}
	c.metrics.received(lt.Name)
	resp.Accepted++
	b.spans = append(b.spans, [2]int{start, len(b.out)})
	b.evIdx = append(b.evIdx, int32(index))
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
	// Best effort: the ids of a malformed event still say whose it was,
	// bounded so that the record stays far below a Kafka record's limit.
	rec.FillIDs(b.fields)
	rec.AppID = appID
	for _, id := range []*string{&rec.DeviceID, &rec.UserID, &rec.SessionID, &rec.LogType} {
		*id = truncID(*id)
	}
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
	b.evIdx = append(b.evIdx, -1)
	kstart := len(b.keys)
	b.keys = append(b.keys, rec.DeviceID...)
	b.kspans = append(b.kspans, [2]int{kstart, len(b.keys)})
	b.topics = append(b.topics, schemas.RejectedTopic)
}

// truncID bounds an id copied from a rejected event: the catalog allows 128
// bytes, and a malformed event may carry any size.
func truncID(s string) string {
	const max = 256
	if len(s) > max {
		return strings.ToValidUTF8(s[:max], "") + "…[truncated]"
	}
	return s
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
	b.msgs = slices.Grow(b.msgs, len(b.spans))
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
	var we kafka.WriteErrors
	if err != nil && !errors.As(err, &we) {
		c.metrics.ProduceErrors.Inc()
		return err
	}
	for i, t := range b.topics {
		if i >= len(we) || we[i] == nil {
			c.metrics.produced(t)
		}
	}
	if err != nil {
		c.metrics.ProduceErrors.Inc()
	}
	return err
}

// storedEvents reads a produce error: the positions in the request of the
// events that were stored anyway, and whether that is known.
func (b *batch) storedEvents(err error) ([]int, bool) {
	var we kafka.WriteErrors
	switch {
	case errors.As(err, &we) && len(we) == len(b.msgs):
		var stored []int
		for i, e := range we {
			if e == nil && b.evIdx[i] >= 0 {
				stored = append(stored, int(b.evIdx[i]))
			}
		}
		return stored, true
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// Given up while the writer may hold the records.
		return nil, false
	}
	return nil, true // refused before the hand-over
}
