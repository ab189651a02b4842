// Package processor consumes the event topics, cleans each event against the
// catalog, drops duplicates, batches rows into Arrow records and inserts them
// into the store — and only then commits the Kafka offsets. A crash at any
// point loses nothing: uncommitted messages are consumed again, and rows the
// store already holds are recognised by their Kafka offset and skipped.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/cespare/xxhash/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Store is what the processor needs from the analytics store.
type Store interface {
	InsertArrow(ctx context.Context, table string, rec arrow.RecordBatch, token string) error
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
}

// Producer writes dead-letter records; it returns once they are durable.
type Producer interface {
	Produce(ctx context.Context, msgs []kafka.Message) error
}

// Config of the processor.
type Config struct {
	Brokers []string
	// GroupPrefix names the consumer groups: one group per topic,
	// "<prefix>.<log_type>", so topics rebalance independently.
	GroupPrefix string
	// LogTypes to consume; empty means all, plus the rejected topic.
	LogTypes []string
	// BatchRows bounds the rows of one insert.
	BatchRows int
	// FlushInterval bounds how long a row waits for its batch to fill.
	FlushInterval time.Duration
	// DedupWindow is how many recent event ids per topic are remembered to
	// drop client retries that reached Kafka twice.
	DedupWindow int
	// Retention bounds how old an event may be and still be stored (the
	// table TTL would drop it anyway).
	Retention time.Duration
	// MaxRetryBackoff caps the wait between store retries.
	MaxRetryBackoff time.Duration
	// ReaderConfig, when set, adjusts each topic's kafka-go reader config.
	ReaderConfig func(*kafka.ReaderConfig)
}

// Defaults for Config.
const (
	DefaultGroupPrefix   = "lastmile-processor"
	DefaultBatchRows     = 100_000
	DefaultFlushInterval = 500 * time.Millisecond
	DefaultDedupWindow   = 200_000
)

// Processor runs one consumer per topic.
type Processor struct {
	cfg     Config
	store   Store
	dlq     Producer
	logger  log.Logger
	metrics *Metrics
}

// New returns a Processor.
func New(cfg Config, st Store, dlq Producer, m *Metrics, logger log.Logger) *Processor {
	if cfg.GroupPrefix == "" {
		cfg.GroupPrefix = DefaultGroupPrefix
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = DefaultBatchRows
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.MaxRetryBackoff <= 0 {
		cfg.MaxRetryBackoff = 10 * time.Second
	}
	if len(cfg.LogTypes) == 0 {
		cfg.LogTypes = schemas.Names()
	}
	return &Processor{cfg: cfg, store: st, dlq: dlq, logger: logger, metrics: m}
}

// Topics returns the topics this processor consumes.
func (p *Processor) Topics() []string {
	var ts []string
	for _, n := range p.cfg.LogTypes {
		ts = append(ts, schemas.TopicOf(n))
	}
	return append(ts, schemas.RejectedTopic)
}

// GroupOf returns the consumer group of a topic.
func (p *Processor) GroupOf(topic string) string {
	return p.cfg.GroupPrefix + "." + strings.TrimPrefix(topic, schemas.TopicPrefix)
}

// Run consumes until ctx is cancelled, then flushes and commits what it holds
// and returns. It returns early only on a setup error.
func (p *Processor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(p.cfg.LogTypes)+1)
	for _, topic := range p.Topics() {
		w, err := p.newWorker(topic)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// worker consumes one topic.
type worker struct {
	p       *Processor
	topic   string
	table   string
	lt      *schemas.LogType // nil for the rejected topic
	reader  *kafka.Reader
	logger  log.Logger
	cleaner schemas.Cleaner
	fields  []flatjson.Field
	ev      schemas.Event

	rows   *rowBuilder
	rej    *rejectedBuilder
	dlq    []kafka.Message
	nrows  int
	first  time.Time
	last   map[int]kafka.Message // last message per partition, for the commit
	ranges map[int][2]int64      // first and last offset per partition, for the token
	stored map[int]int64         // highest offset per partition already in the store
	seen   *dedup
	m      *topicMetrics
}

func (p *Processor) newWorker(topic string) (*worker, error) {
	rc := kafka.ReaderConfig{
		Brokers:        p.cfg.Brokers,
		GroupID:        p.GroupOf(topic),
		Topic:          topic,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        100 * time.Millisecond,
		QueueCapacity:  10_000,
		CommitInterval: 0, // commits are explicit and synchronous, after the insert
		StartOffset:    kafka.FirstOffset,
		// Rebalances after a restart must not wait out the default 30 s.
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		HeartbeatInterval: time.Second,
		ReadBatchTimeout:  time.Second,
	}
	if p.cfg.ReaderConfig != nil {
		p.cfg.ReaderConfig(&rc)
	}
	w := &worker{
		p: p, topic: topic, reader: kafka.NewReader(rc),
		logger:  log.With(p.logger, "topic", topic),
		cleaner: schemas.Cleaner{MaxPast: p.cfg.Retention, MaxFuture: 24 * time.Hour},
		last:    map[int]kafka.Message{}, ranges: map[int][2]int64{},
		seen: newDedup(p.cfg.DedupWindow),
		m:    p.metrics.forTopic(topic),
	}
	if topic == schemas.RejectedTopic {
		w.table = schemas.RejectedTable
		w.rej = newRejectedBuilder()
	} else {
		name := strings.TrimPrefix(topic, schemas.TopicPrefix)
		w.lt = schemas.Lookup(name)
		if w.lt == nil {
			return nil, fmt.Errorf("processor: topic %s names unknown log_type %q", topic, name)
		}
		w.table = schemas.TableOf(name)
		w.rows = newRowBuilder(w.lt)
	}
	return w, nil
}

func (w *worker) run(ctx context.Context) error {
	defer w.reader.Close()
	if err := w.loadStored(ctx); err != nil {
		return err
	}
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if w.nrows > 0 || len(w.dlq) > 0 {
			fctx, cancel = context.WithDeadline(ctx, w.first.Add(w.p.cfg.FlushInterval))
		}
		msg, err := w.reader.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				// Shutting down: store and commit what we hold, then stop.
				sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
				ferr := w.flush(sctx)
				scancel()
				if ferr != nil {
					level.Warn(w.logger).Log("msg", "final flush failed; the batch stays uncommitted and is consumed again at next start", "err", ferr)
				}
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) {
				if err := w.flush(ctx); err != nil && ctx.Err() == nil {
					level.Error(w.logger).Log("msg", "flush failed", "err", err)
				}
				continue
			}
			level.Warn(w.logger).Log("msg", "fetch failed", "err", err)
			if !backoff.wait(ctx) {
				continue
			}
			continue
		}
		backoff.reset()
		w.add(ctx, msg)
		if w.nrows >= w.p.cfg.BatchRows {
			if err := w.flush(ctx); err != nil && ctx.Err() == nil {
				level.Error(w.logger).Log("msg", "flush failed", "err", err)
			}
		}
	}
}

// loadStored reads the highest Kafka offset per partition already stored, so
// that messages inserted before a crash but never committed are skipped.
func (w *worker) loadStored(ctx context.Context) error {
	w.stored = map[int]int64{}
	q := fmt.Sprintf("SELECT %s AS p, max(%s) AS o FROM %s GROUP BY p",
		schemas.ColKafkaPartition, schemas.ColKafkaOffset, w.table)
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	for {
		out, err := w.p.store.QueryJSON(ctx, q)
		if err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if line == "" {
					continue
				}
				var r struct {
					P int   `json:"p"`
					O int64 `json:"o,string"`
				}
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					var r2 struct {
						P int   `json:"p"`
						O int64 `json:"o"`
					}
					if err2 := json.Unmarshal([]byte(line), &r2); err2 != nil {
						return fmt.Errorf("processor %s: read stored offsets: %w", w.topic, err)
					}
					r.P, r.O = r2.P, r2.O
				}
				w.stored[r.P] = r.O
			}
			return nil
		}
		level.Warn(w.logger).Log("msg", "store not ready; retrying", "err", err)
		if !backoff.wait(ctx) {
			return ctx.Err()
		}
	}
}

// add cleans one message into the current batch.
func (w *worker) add(ctx context.Context, msg kafka.Message) {
	w.m.consumed.Inc()
	if w.nrows == 0 && len(w.dlq) == 0 {
		w.first = time.Now()
	}
	w.last[msg.Partition] = msg
	r, ok := w.ranges[msg.Partition]
	if !ok {
		r[0] = msg.Offset
	}
	r[1] = msg.Offset
	w.ranges[msg.Partition] = r

	if max, ok := w.stored[msg.Partition]; ok && msg.Offset <= max {
		w.m.replayed.Inc()
		return
	}
	if w.rej != nil {
		if w.rej.Append(msg.Value, msg.Partition, msg.Offset) {
			w.nrows++
		} else {
			w.m.rejected(schemas.ReasonInvalidJSON).Inc()
		}
		return
	}
	var err error
	w.fields, err = flatjson.ParseObject(w.fields, msg.Value)
	if err != nil {
		code := schemas.ReasonInvalidJSON
		if errors.Is(err, flatjson.ErrNotObject) {
			code = schemas.ReasonNotObject
		}
		w.reject(msg, &schemas.Reject{Code: code, Msg: err.Error()})
		return
	}
	if rej := w.cleaner.Clean(w.fields, &w.ev); rej != nil {
		w.reject(msg, rej)
		return
	}
	if w.ev.Type != w.lt {
		w.reject(msg, &schemas.Reject{Code: schemas.ReasonNotAllowed, Field: "log_type",
			Msg: fmt.Sprintf("log_type %s does not belong on topic %s", w.ev.Type.Name, w.topic)})
		return
	}
	for _, u := range w.ev.Unknown {
		w.m.unknownField(string(u))
	}
	id := w.ev.Vals[schemas.ColEventID].S
	if len(id) == 0 {
		id = msg.Value
	}
	if w.seen.seen(xxhash.Sum64(id)) {
		w.m.duplicates.Inc()
		return
	}
	if !w.ev.Vals[schemas.ColReceivedAt].Set {
		w.ev.Vals[schemas.ColReceivedAt] = schemas.Value{Set: true, I: time.Now().UnixMilli()}
	}
	w.rows.Append(&w.ev, int32(msg.Partition), msg.Offset)
	w.nrows++
}

func (w *worker) reject(msg kafka.Message, rej *schemas.Reject) {
	w.m.rejected(rej.Code).Inc()
	rec := schemas.RejectedRecord{
		ReceivedAt: time.Now().UnixMilli(), Stage: "processor", Code: rej.Code, Field: rej.Field,
		Reason: rej.Msg, EventIndex: -1, LogType: strings.TrimPrefix(w.topic, schemas.TopicPrefix),
		EventID: w.topic + ":" + strconv.Itoa(msg.Partition) + ":" + strconv.FormatInt(msg.Offset, 10),
	}
	for i := range w.fields {
		f := &w.fields[i]
		if f.Kind != flatjson.String {
			continue
		}
		switch {
		case f.KeyIs("app_id"):
			rec.AppID = f.Str()
		case f.KeyIs("device_id"):
			rec.DeviceID = f.Str()
		case f.KeyIs("user_id"):
			rec.UserID = f.Str()
		case f.KeyIs("session_id"):
			rec.SessionID = f.Str()
		}
	}
	raw := msg.Value
	if len(raw) > 16<<10 {
		raw = raw[:16<<10]
	}
	rec.Raw = string(raw)
	v, _ := json.Marshal(rec)
	w.dlq = append(w.dlq, kafka.Message{Topic: schemas.RejectedTopic, Key: []byte(rec.DeviceID), Value: v})
}

// flush stores the batch, sends its rejects to the dead-letter topic, and
// commits; on a store error it retries with backoff until ctx ends, never
// committing what was not stored.
func (w *worker) flush(ctx context.Context) error {
	if len(w.last) == 0 {
		return nil
	}
	start := time.Now()
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	if w.nrows > 0 {
		var rec arrow.RecordBatch
		if w.rej != nil {
			rec = w.rej.Build()
		} else {
			rec = w.rows.Build()
		}
		defer rec.Release()
		token := w.token()
		for {
			t0 := time.Now()
			err := w.p.store.InsertArrow(ctx, w.table, rec, token)
			if err == nil {
				w.m.insertDuration.Observe(time.Since(t0).Seconds())
				w.m.inserted.Add(float64(rec.NumRows()))
				w.p.metrics.StoreUp.Set(1)
				break
			}
			w.m.insertErrors.Inc()
			w.p.metrics.StoreUp.Set(0)
			level.Warn(w.logger).Log("msg", "insert failed; retrying, nothing committed", "rows", rec.NumRows(), "token", token, "err", err)
			if !backoff.wait(ctx) {
				return fmt.Errorf("insert into %s: %w", w.table, err)
			}
		}
	}
	if len(w.dlq) > 0 && w.p.dlq != nil {
		for {
			err := w.p.dlq.Produce(ctx, w.dlq)
			if err == nil {
				break
			}
			level.Warn(w.logger).Log("msg", "dead-letter produce failed; retrying", "records", len(w.dlq), "err", err)
			if !backoff.wait(ctx) {
				return fmt.Errorf("produce %s: %w", schemas.RejectedTopic, err)
			}
		}
	}
	commits := make([]kafka.Message, 0, len(w.last))
	for _, m := range w.last {
		commits = append(commits, m)
	}
	for {
		err := w.reader.CommitMessages(ctx, commits...)
		if err == nil {
			break
		}
		level.Warn(w.logger).Log("msg", "commit failed; retrying", "err", err)
		if !backoff.wait(ctx) {
			// The rows are stored; a restart skips them by offset.
			return fmt.Errorf("commit %s: %w", w.topic, err)
		}
	}
	w.m.batchRows.Observe(float64(w.nrows))
	w.m.flushDuration.Observe(time.Since(start).Seconds())
	w.m.lastFlush.SetToCurrentTime()
	w.nrows = 0
	w.dlq = w.dlq[:0]
	clear(w.last)
	clear(w.ranges)
	return nil
}

// token names the batch by its Kafka offsets: a retried insert of the same
// batch carries the same token and the store keeps one copy.
func (w *worker) token() string {
	var b strings.Builder
	b.WriteString(w.topic)
	for p, r := range w.ranges {
		fmt.Fprintf(&b, ":%d@%d-%d", p, r[0], r[1])
	}
	return b.String()
}

// dedup remembers recent event ids in two generations: when the current one
// fills, it becomes the previous and a new one starts, so memory stays bounded
// while at least the last window ids are always remembered.
type dedup struct {
	cur, prev map[uint64]struct{}
	window    int
}

func newDedup(window int) *dedup {
	return &dedup{cur: make(map[uint64]struct{}), prev: map[uint64]struct{}{}, window: window}
}

// seen reports whether h was seen recently, and remembers it.
func (d *dedup) seen(h uint64) bool {
	if _, ok := d.cur[h]; ok {
		return true
	}
	if _, ok := d.prev[h]; ok {
		return true
	}
	if len(d.cur) >= d.window {
		d.prev, d.cur = d.cur, make(map[uint64]struct{}, d.window)
	}
	d.cur[h] = struct{}{}
	return false
}

type backoff struct {
	d, max time.Duration
}

func newBackoff(max time.Duration) *backoff { return &backoff{d: 100 * time.Millisecond, max: max} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

// wait sleeps for the current delay and doubles it; false when ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	if b.d *= 2; b.d > b.max {
		b.d = b.max
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
