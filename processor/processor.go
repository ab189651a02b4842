// Package processor consumes the event topics, cleans each event against the
// catalog, drops duplicates, batches rows into Arrow records and inserts them
// into the store — and only then commits the Kafka offsets. A crash at any
// point loses nothing: uncommitted messages are consumed again, and rows the
// store already holds are recognised by their Kafka offset and skipped. The
// batch's rejects go to the dead-letter topic before its inserts (store).
package processor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
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
	// Group is the consumer group, one for all topics.
	Group string
	// LogTypes to consume; empty means all, plus the rejected topic.
	LogTypes []string
	// BatchRows bounds the rows of one insert.
	BatchRows int
	// FlushInterval bounds how long a row waits for its batch to fill.
	FlushInterval time.Duration
	// DedupWindow is how long an event_id is remembered to drop client
	// retries that reached Kafka twice, across restarts too (see dedup.go).
	DedupWindow time.Duration
	// DedupMaxIDs caps the ids remembered; past it the oldest are forgotten
	// before the window, counted and logged.
	DedupMaxIDs int
	// Retention bounds how old an event may be and still be stored (the
	// table TTL would drop it anyway).
	Retention time.Duration
	// MaxRetryBackoff caps the wait between store retries.
	MaxRetryBackoff time.Duration
	// ReaderConfig, when set, adjusts the kafka-go reader config.
	ReaderConfig func(*kafka.ReaderConfig)
}

// Defaults for Config.
const (
	DefaultGroup         = "lastmile-processor"
	DefaultBatchRows     = 100_000
	DefaultFlushInterval = 500 * time.Millisecond
	// DefaultSessionCache is how many play sessions a processor remembers
	// the index spans of (SessionIndex): ~70–80 bytes each, ~15 MB in all
	// (71 bytes measured with runtime.MemStats over 198,000 sessions).
	DefaultSessionCache = 200_000
)

// Processor consumes every event topic with one consumer group and writes
// one insert per flush into the events table.
type Processor struct {
	cfg     Config
	store   Store
	dlq     Producer
	logger  log.Logger
	metrics *Metrics
}

// New returns a Processor.
func New(cfg Config, st Store, dlq Producer, m *Metrics, logger log.Logger) *Processor {
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
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
	if cfg.DedupMaxIDs <= 0 {
		cfg.DedupMaxIDs = DefaultDedupMaxIDs
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

// Group returns the consumer group.
func (p *Processor) Group() string { return p.cfg.Group }

type topicPartition struct {
	topic     string
	partition int
}

// batch is one flush: what to insert, what to dead-letter, what to commit.
type batch struct {
	events   arrow.RecordBatch // nil when empty
	sessions arrow.RecordBatch // rows for trace_sessions; nil when none
	rejected arrow.RecordBatch // rows for the rejected table; nil when empty
	dlq      []kafka.Message
	commits  []kafka.Message
	token    string
	rows     map[string]int // rows per topic, for metrics
	opened   time.Time
}

// Run consumes until ctx is cancelled, then flushes and commits what it holds
// and returns. It returns early only on a setup error.
func (p *Processor) Run(ctx context.Context) error {
	w := &fetcher{
		p:        p,
		logger:   p.logger,
		cleaner:  schemas.Cleaner{MaxPast: p.cfg.Retention, MaxFuture: 24 * time.Hour},
		rows:     NewRowBuilder(),
		sessions: NewSessionIndex(DefaultSessionCache),
		rej:      newRejectedBuilder(),
		parts:    map[topicPartition]*partState{},
		perTopic: map[string]int{},
		seen:     newDedup(p.cfg.DedupWindow, p.cfg.DedupMaxIDs, p.metrics.dedup, p.logger),
		topics:   map[string]*topicMetrics{},
	}
	for _, t := range p.Topics() {
		w.topics[t] = p.metrics.forTopic(t)
	}
	if err := w.loadStored(ctx); err != nil {
		return err
	}
	w.checkOffsets(ctx)
	rc := kafka.ReaderConfig{
		Brokers:     p.cfg.Brokers,
		GroupID:     p.cfg.Group,
		GroupTopics: p.Topics(),
		MinBytes:    1,
		MaxBytes:    10 << 20,
		// MaxWait bounds how long the broker holds a fetch for new data; it
		// adds to ingest-to-queryable latency only when idle.
		MaxWait:        250 * time.Millisecond,
		QueueCapacity:  1000,
		CommitInterval: 0, // commits are explicit and synchronous, after the insert
		StartOffset:    kafka.FirstOffset,
		// Rebalances after a restart must not wait out the 30 s defaults.
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		HeartbeatInterval: time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
	}
	if p.cfg.ReaderConfig != nil {
		p.cfg.ReaderConfig(&rc)
	}
	w.reader = kafka.NewReader(rc)
	defer w.reader.Close()

	// The inserter stores and commits batches in order while the fetcher
	// builds the next one: parsing and inserting overlap on two cores. A
	// batch is cut only when the inserter is free, so no batch waits in a
	// queue: while an insert runs, the next batch keeps growing, and batch
	// size follows what the store can take.
	batches := make(chan *batch)
	idle := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			idle <- struct{}{}
			b, ok := <-batches
			if !ok {
				return
			}
			sctx := ctx
			var cancel context.CancelFunc = func() {}
			if ctx.Err() != nil {
				sctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			}
			err := w.store(sctx, b)
			cancel()
			if err != nil {
				level.Warn(w.logger).Log("msg", "batch not stored; it stays uncommitted and is consumed again at next start", "err", err)
				return // later batches must not commit past this one
			}
		}
	}()
	w.fetchLoop(ctx, batches, idle, done)
	close(batches)
	<-done
	return nil
}

// fetcher reads messages and builds batches; it runs on one goroutine.
type fetcher struct {
	p       *Processor
	reader  *kafka.Reader
	logger  log.Logger
	cleaner schemas.Cleaner
	fields  []flatjson.Field
	ev      schemas.Event

	rows     *RowBuilder
	sessions *SessionIndex
	rej      *rejectedBuilder
	nrows    int
	nrej     int
	dlq      []kafka.Message
	opened   time.Time
	parts    map[topicPartition]*partState
	cur      *partState   // the partition of the previous message: they come in runs
	inBatch  []*partState // partitions with messages in the current batch
	perTopic map[string]int
	stored   map[topicPartition]int64 // highest offset per partition already stored, at start
	seen     *dedup
	keybuf   []byte
	topics   map[string]*topicMetrics
}

// partState is what the fetcher tracks per partition: one map lookup per
// message at most.
type partState struct {
	tp        topicPartition
	tm        *topicMetrics
	stored    int64 // skip offsets at or below; -1 when nothing is stored
	next      int64 // offset expected next, -1 before the first (offsets.go)
	firstSeen int64 // first offset read in this run
	inBatch   bool
	first     int64         // first offset in the current batch
	last      kafka.Message // last message in the current batch, for the commit
}

func (w *fetcher) fetchLoop(ctx context.Context, out chan<- *batch, idle <-chan struct{}, inserterDone <-chan struct{}) {
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	var fctx context.Context = ctx
	cancel := context.CancelFunc(func() {})
	defer func() { cancel() }()
	// send hands the current batch to the inserter; wait says whether to
	// block until it is free (at shutdown and when the batch is full).
	send := func(wait bool) bool {
		if len(w.inBatch) == 0 {
			return true
		}
		if wait {
			select {
			case <-idle:
			case <-inserterDone:
				return false
			}
		} else {
			select {
			case <-idle:
			default:
				return false
			}
		}
		out <- w.cut()
		return true
	}
	for {
		// One deadline per batch, not per message: check for a flush when it
		// passes.
		if len(w.inBatch) > 0 && fctx == ctx {
			d := w.opened.Add(w.p.cfg.FlushInterval)
			if time.Until(d) < 10*time.Millisecond {
				d = time.Now().Add(10 * time.Millisecond) // inserter was busy: look again soon
			}
			fctx, cancel = context.WithDeadline(ctx, d)
		}
		msg, err := w.reader.FetchMessage(fctx)
		if err != nil {
			cancel()
			fctx = ctx
			if ctx.Err() != nil {
				send(true)
				return
			}
			if errors.Is(err, context.DeadlineExceeded) {
				send(false)
				continue
			}
			level.Warn(w.logger).Log("msg", "fetch failed", "err", err)
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
		w.addGuarded(msg)
		if w.nrows+w.nrej >= w.p.cfg.BatchRows {
			cancel()
			fctx = ctx
			if !send(true) {
				return
			}
		}
	}
}

// loadStored reads the highest Kafka offset per partition already stored, so
// that messages inserted before a crash but never committed are skipped.
func (w *fetcher) loadStored(ctx context.Context) error {
	w.stored = map[topicPartition]int64{}
	queries := []struct {
		sql   string
		topic func(string) string
	}{
		{fmt.Sprintf("SELECT toString(log_type) AS t, %s AS p, max(%s) AS o FROM %s GROUP BY t, p",
			schemas.ColKafkaPartition, schemas.ColKafkaOffset, schemas.EventsTable), schemas.TopicOf},
		{fmt.Sprintf("SELECT '' AS t, %s AS p, max(%s) AS o FROM %s GROUP BY p",
			schemas.ColKafkaPartition, schemas.ColKafkaOffset, schemas.RejectedTable), func(string) string { return schemas.RejectedTopic }},
	}
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	for _, q := range queries {
		for {
			out, err := w.p.store.QueryJSON(ctx, q.sql)
			if err == nil {
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if line == "" {
						continue
					}
					var r struct {
						T string      `json:"t"`
						P int         `json:"p"`
						O json.Number `json:"o"`
					}
					if err := json.Unmarshal([]byte(line), &r); err != nil {
						return fmt.Errorf("processor: read stored offsets: %w", err)
					}
					o, _ := strconv.ParseInt(r.O.String(), 10, 64)
					w.stored[topicPartition{q.topic(r.T), r.P}] = o
				}
				break
			}
			level.Warn(w.logger).Log("msg", "store not ready; retrying", "err", err)
			if !backoff.wait(ctx) {
				return ctx.Err()
			}
		}
	}
	return w.loadSeen(ctx)
}

// partition returns the state of a message's partition.
func (w *fetcher) partition(msg *kafka.Message) *partState {
	if p := w.cur; p != nil && p.tp.partition == msg.Partition && p.tp.topic == msg.Topic {
		return p
	}
	tp := topicPartition{msg.Topic, msg.Partition}
	p, ok := w.parts[tp]
	if !ok {
		tm := w.topics[msg.Topic]
		if tm == nil {
			tm = w.p.metrics.forTopic(msg.Topic)
			w.topics[msg.Topic] = tm
		}
		p = &partState{tp: tp, tm: tm, stored: -1, next: -1}
		if o, ok := w.stored[tp]; ok {
			p.stored = o
		}
		w.parts[tp] = p
	}
	w.cur = p
	return p
}

// add cleans one message into the current batch.
func (w *fetcher) add(msg kafka.Message) {
	p := w.partition(&msg)
	tm := p.tm
	tm.consumed.Inc()
	if len(w.inBatch) == 0 {
		w.opened = time.Now()
		w.cleaner.At = w.opened
		w.seen.tick(w.opened)
	}
	if !p.inBatch {
		p.inBatch, p.first = true, msg.Offset
		w.inBatch = append(w.inBatch, p)
	}
	p.last = msg

	w.track(p, &msg)
	if msg.Offset <= p.stored {
		tm.replayed.Inc()
		return
	}
	if msg.Topic == schemas.RejectedTopic {
		r, ok := w.rej.parse(msg.Value)
		if !ok {
			tm.rejected(schemas.ReasonInvalidJSON).Inc()
		}
		// A client's retry of a malformed request, or a dead-letter record
		// produced again after a crash (store), carries the same ids.
		var h uint64
		if len(r.eventID) > 0 {
			h = dedupKey(&w.keybuf, rejectedSalt, []byte(r.appID()), []byte(r.eventID))
		} else {
			h = dedupBytesKey(rejectedSalt, msg.Value)
		}
		if w.seen.seen(h) {
			tm.duplicates.Inc()
			return
		}
		w.rej.add(&r, msg.Partition, msg.Offset)
		w.nrej++
		w.perTopic[msg.Topic]++
		return
	}
	var err error
	w.fields, err = flatjson.ParseObject(w.fields, msg.Value)
	if err != nil {
		code := schemas.ReasonInvalidJSON
		if errors.Is(err, flatjson.ErrNotObject) {
			code = schemas.ReasonNotObject
		}
		w.reject(tm, msg, &schemas.Reject{Code: code, Msg: err.Error()})
		return
	}
	if rej := w.cleaner.Clean(w.fields, &w.ev); rej != nil {
		w.reject(tm, msg, rej)
		return
	}
	if schemas.TopicOf(w.ev.Type.Name) != msg.Topic {
		w.reject(tm, msg, &schemas.Reject{Code: schemas.ReasonNotAllowed, Field: "log_type",
			Msg: fmt.Sprintf("log_type %s does not belong on topic %s", w.ev.Type.Name, msg.Topic)})
		return
	}
	for _, u := range w.ev.Unknown {
		tm.unknownField(string(u))
	}
	// Without an event_id (only when produced straight to Kafka) the bytes
	// are the id, remembered until a restart.
	var h uint64
	if id := w.ev.Vals[schemas.ColEventID].S; len(id) > 0 {
		h = dedupKey(&w.keybuf, eventsSalt, w.ev.Vals[schemas.ColAppID].S, id)
	} else {
		h = dedupBytesKey(eventsSalt, msg.Value)
	}
	if w.seen.seen(h) {
		tm.duplicates.Inc()
		return
	}
	if !w.ev.Vals[schemas.ColReceivedAt].Set {
		w.ev.Vals[schemas.ColReceivedAt] = schemas.Value{Set: true, I: time.Now().UnixMilli()}
	}
	w.rows.Append(&w.ev, int32(msg.Partition), msg.Offset)
	w.sessions.Observe(&w.ev)
	w.nrows++
	w.perTopic[msg.Topic]++
}

// reject dead-letters a message. The record is the same whenever the
// message is handled again after a crash (its id names the message, its time
// is the message's), so the copies a replay produces are one record (store).
func (w *fetcher) reject(tm *topicMetrics, msg kafka.Message, rej *schemas.Reject) {
	tm.rejected(rej.Code).Inc()
	at := msg.Time
	if at.IsZero() {
		at = time.Now()
	}
	rec := schemas.RejectedRecord{
		ReceivedAt: at.UnixMilli(), Stage: "processor", Code: rej.Code, Field: rej.Field,
		Reason: rej.Msg, EventIndex: -1, LogType: strings.TrimPrefix(msg.Topic, schemas.TopicPrefix),
		EventID: msg.Topic + ":" + strconv.Itoa(msg.Partition) + ":" + strconv.FormatInt(msg.Offset, 10),
	}
	rec.FillIDs(w.fields)
	raw := msg.Value
	if len(raw) > 16<<10 {
		raw = raw[:16<<10]
	}
	rec.Raw = string(raw)
	v, _ := json.Marshal(rec)
	w.dlq = append(w.dlq, kafka.Message{Topic: schemas.RejectedTopic, Key: []byte(rec.DeviceID), Value: v})
}

// cut closes the current batch and starts a new one; nil when empty.
func (w *fetcher) cut() *batch {
	if len(w.inBatch) == 0 {
		return nil
	}
	b := &batch{dlq: w.dlq, rows: w.perTopic, opened: w.opened}
	if w.nrows > 0 {
		b.events = w.rows.Build()
		b.sessions = w.sessions.Build()
	}
	if w.nrej > 0 {
		b.rejected = w.rej.Build()
	}
	sort.Slice(w.inBatch, func(i, j int) bool {
		a, c := w.inBatch[i].tp, w.inBatch[j].tp
		if a.topic != c.topic {
			return a.topic < c.topic
		}
		return a.partition < c.partition
	})
	h := sha256.New()
	for _, p := range w.inBatch {
		b.commits = append(b.commits, p.last)
		fmt.Fprintf(h, "%s:%d@%d-%d,", p.tp.topic, p.tp.partition, p.first, p.last.Offset)
		p.inBatch, p.last = false, kafka.Message{}
	}
	b.token = "kafka:" + hex.EncodeToString(h.Sum(nil)[:16])
	w.nrows, w.nrej = 0, 0
	w.dlq = nil
	w.perTopic = map[string]int{}
	w.inBatch = w.inBatch[:0]
	return b
}

// store sends a batch's rejects to the dead-letter topic, inserts the batch,
// and commits; on an error it retries with backoff until ctx ends, never
// committing what was not stored.
func (w *fetcher) store(ctx context.Context, b *batch) error {
	start := time.Now()
	backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
	m := w.p.metrics
	insert := func(table string, rec arrow.RecordBatch, token string) error {
		if rec == nil {
			return nil
		}
		defer rec.Release()
		for {
			t0 := time.Now()
			err := w.p.store.InsertArrow(ctx, table, rec, token)
			if err == nil {
				m.InsertDuration.Observe(time.Since(t0).Seconds())
				m.StoreUp.Set(1)
				return nil
			}
			m.InsertErrors.Inc()
			m.StoreUp.Set(0)
			level.Warn(w.logger).Log("msg", "insert failed; retrying, nothing committed", "table", table, "rows", rec.NumRows(), "err", err)
			if !backoff.wait(ctx) {
				return fmt.Errorf("insert into %s: %w", table, err)
			}
		}
	}
	release := func() {
		for _, r := range []arrow.RecordBatch{b.sessions, b.events, b.rejected} {
			if r != nil {
				r.Release()
			}
		}
	}
	// The dead-letter records go first: once a row of the batch is stored,
	// a restart may skip the batch's messages by offset and never make
	// them again. A crash after this produce makes the same records again
	// (reject), which the rejected topic's dedup drops (add).
	if len(b.dlq) > 0 && w.p.dlq != nil {
		for {
			err := w.p.dlq.Produce(ctx, b.dlq)
			if err == nil {
				break
			}
			level.Warn(w.logger).Log("msg", "dead-letter produce failed; retrying, nothing stored", "records", len(b.dlq), "err", err)
			if !backoff.wait(ctx) {
				release()
				return fmt.Errorf("produce %s: %w", schemas.RejectedTopic, err)
			}
		}
	}
	// The sessions' index rows go next: a session whose events can be
	// read is always in the index (a retry writes them again, which the
	// table's min/max fold away).
	nsessions := 0
	if b.sessions != nil {
		nsessions = int(b.sessions.NumRows())
	}
	if err := insert(schemas.TraceSessionsTable, b.sessions, b.token); err != nil {
		for _, r := range []arrow.RecordBatch{b.events, b.rejected} {
			if r != nil {
				r.Release()
			}
		}
		return err
	}
	if err := insert(schemas.EventsTable, b.events, b.token); err != nil {
		if b.rejected != nil {
			b.rejected.Release()
		}
		return err
	}
	if err := insert(schemas.RejectedTable, b.rejected, b.token); err != nil {
		return err
	}
	for {
		err := w.reader.CommitMessages(ctx, b.commits...)
		if err == nil {
			break
		}
		// kafka-go fails the first commit after a broker restart; retry.
		level.Warn(w.logger).Log("msg", "commit failed; retrying", "err", err)
		if !backoff.wait(ctx) {
			// The rows are stored; a restart skips them by offset.
			return fmt.Errorf("commit: %w", err)
		}
	}
	total := 0
	for topic, n := range b.rows {
		tm := w.p.metrics.forTopic(topic)
		tm.inserted.Add(float64(n))
		tm.lastFlush.SetToCurrentTime()
		total += n
	}
	m.BatchRows.Observe(float64(total))
	m.SessionRows.Add(float64(nsessions))
	m.FlushDuration.Observe(time.Since(start).Seconds())
	m.IngestDelay.Observe(time.Since(b.opened).Seconds())
	return nil
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
