package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/segmentio/kafka-go"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/internal/retry"
)

// CMCDReportsTopic holds the CMCD event-mode reports /v1/cmcd accepted, as
// posted, keyed by app and sid: the pairing stage (Pairer) reads a session's
// reports from one partition, in order, whichever replica took them.
const CMCDReportsTopic = "lastmile.cmcd_reports"

// PairPlan holds the choices of the pairing stage.
type PairPlan struct {
	Brokers []string
	// Group is the Kafka consumer group of every collector's pairing stage.
	Group string
	// IdleTimeout: a session not heard from for this long is closed; its
	// reports no longer hold the partition's commit point back, so a
	// restart forgets it. Keep it well under the processor's dedup window
	// (1 h by default): a restart re-derives the events of open sessions and
	// relies on the processor to drop them as duplicates.
	IdleTimeout time.Duration
	// MaxHold: a session whose state was built from reports older than this
	// no longer holds the commit point either, so a restart re-reads at most
	// MaxHold of reports and every event it re-derives is one the processor
	// still remembers (its dedup window, 1 h by default, must exceed it). A
	// play that long is joined mid-play after a restart: no second
	// play_start or first_frame, its play_stop without the play's duration.
	MaxHold time.Duration
	// BatchWait and BatchReports bound a batch: reports read back to back
	// are mapped together, their events produced in one call, then committed.
	BatchWait    time.Duration
	BatchReports int
	// CommitEvery: how often a partition's commit point is worked out and
	// committed (it scans the sessions), also when the partition is quiet:
	// its sessions go idle.
	CommitEvery time.Duration
	// Retry of a failed produce or commit (until the partition is lost).
	Retry retry.Backoff
}

// DefaultPairPlan: pairing adds at most BatchWait plus a fetch's MaxWait.
var DefaultPairPlan = PairPlan{
	Group:        "lastmile-cmcd",
	IdleTimeout:  10 * time.Minute,
	MaxHold:      30 * time.Minute,
	BatchWait:    20 * time.Millisecond,
	BatchReports: 1000,
	CommitEvery:  5 * time.Second,
	Retry:        retry.Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second},
}

// reportEnvelope is a cmcd_reports record's value: one report line and
// what the post said around it.
type reportEnvelope struct {
	AppID      string `json:"app_id"`
	RequestID  string `json:"request_id"`
	Index      int    `json:"index"` // the report's line - 1
	ReceivedAt int64  `json:"received_at"`
	Device     string `json:"device,omitempty"`
	Report     string `json:"report"`
}

func reportKey(appID, sid string) []byte { return []byte(appID + "\x00" + sid) }

// pairSession is a session of a partition: its mapping state, the offset
// of the first report this state was built from, when it was last heard.
type pairSession struct {
	cmcdSession
	firstOff int64
	firstAt  int64 // received_at (ms) of the report at firstOff
	heard    int64 // received_at (ms) of its latest report
}

// open: not stopped and heard within idle of now; only open sessions hold
// the commit point.
func (s *pairSession) open(now, idle int64) bool {
	return !s.stopped && now-s.heard < idle
}

// pairPart is the pairing state of one partition, rebuilt from its
// committed offset whenever the partition is (re)assigned.
type pairPart struct {
	next     int64 // offset expected next; -1 before the first
	sessions map[string]*pairSession
}

func newPairPart() *pairPart { return &pairPart{next: -1, sessions: map[string]*pairSession{}} }

// admit reports whether offset follows the last one seen; if not (a rewind,
// a gap) the state is dropped first: the reports before it are not those
// it was built from.
func (p *pairPart) admit(offset int64) bool {
	cont := p.next < 0 || offset == p.next
	if !cont {
		clear(p.sessions)
	}
	p.next = offset + 1
	return cont
}

// session returns the session of key, heard at offset: a new one, or one
// that reopens (it was closed, so the commit point may have passed its
// first report), starts its state's history here.
func (p *pairPart) session(key string, offset, receivedAt, idle int64) (*pairSession, bool) {
	s, ok := p.sessions[key]
	if !ok {
		s = &pairSession{firstOff: offset, firstAt: receivedAt}
		p.sessions[key] = s
	} else if !s.open(receivedAt, idle) {
		s.firstOff, s.firstAt = offset, receivedAt
	}
	s.heard = max(s.heard, receivedAt)
	return s, !ok
}

// commitPoint is the offset to commit at now: the first report of the
// oldest open session begun less than hold ago, or, with none, the offset
// after the last seen. A restart that reads from it rebuilds every such
// session whole.
func (p *pairPart) commitPoint(now, idle, hold int64) int64 {
	c := p.next
	for _, s := range p.sessions {
		if s.open(now, idle) && now-s.firstAt < hold && s.firstOff < c {
			c = s.firstOff
		}
	}
	return c
}

// openSessions counts the open sessions at now.
func (p *pairPart) openSessions(now, idle int64) int {
	n := 0
	for _, s := range p.sessions {
		if s.open(now, idle) {
			n++
		}
	}
	return n
}

// evict makes room for one session under a bound: closed sessions go
// first, else the least recently heard (it is joined mid-play if heard again).
func (p *pairPart) evict(now, idle int64) int {
	n := 0
	var oldest string
	for k, s := range p.sessions {
		if !s.open(now, idle) {
			delete(p.sessions, k)
			n++
		} else if oldest == "" || s.heard < p.sessions[oldest].heard {
			oldest = k
		}
	}
	if n == 0 && oldest != "" {
		delete(p.sessions, oldest)
		n = 1
	}
	return n
}

// Pairer is the pairing stage: it maps the reports of cmcd_reports into
// catalog events, keeping each session's state per partition, and sends
// them the way of /v1/events. Every collector runs one; the consumer
// group spreads the partitions.
type Pairer struct {
	c        *Collector
	plan     PairPlan
	logger   log.Logger
	sessions atomic.Int64 // held, over all partitions, against CMCD.MaxSessions
}

// NewPairer returns the pairing stage of c (zero plan fields: DefaultPairPlan's).
func (c *Collector) NewPairer(plan PairPlan) *Pairer {
	d := DefaultPairPlan
	if plan.Group == "" {
		plan.Group = d.Group
	}
	plan.IdleTimeout = positive(plan.IdleTimeout, d.IdleTimeout)
	plan.MaxHold = positive(plan.MaxHold, d.MaxHold)
	plan.BatchWait = positive(plan.BatchWait, d.BatchWait)
	plan.BatchReports = positive(plan.BatchReports, d.BatchReports)
	plan.CommitEvery = positive(plan.CommitEvery, d.CommitEvery)
	if plan.Retry.Initial <= 0 {
		plan.Retry = d.Retry // a zero wait would spin on a broker that is down
	}
	return &Pairer{c: c, plan: plan, logger: log.With(c.logger, "stage", "cmcd-pairing")}
}

// positive is v, or d when v is not positive (a plan's unset field).
func positive[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// Run consumes until ctx ends. Each generation of the group starts every
// assigned partition from its committed offset with empty state.
func (p *Pairer) Run(ctx context.Context) error {
	g, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: p.plan.Group, Brokers: p.plan.Brokers, Topics: []string{CMCDReportsTopic},
		StartOffset: kafka.FirstOffset,
		// As the processor's reader: rebalances must not wait out 30 s defaults.
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		HeartbeatInterval: time.Second, JoinGroupBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("cmcd pairing: consumer group %s: %w", p.plan.Group, err)
	}
	defer g.Close()
	for {
		var gen *kafka.Generation
		_, err := retry.Do(ctx, p.plan.Retry, func(ctx context.Context) (err error) {
			gen, err = g.Next(ctx)
			return err
		}, func(attempt int, err error) {
			if ctx.Err() == nil {
				level.Warn(p.logger).Log("msg", "joining the consumer group failed; retrying", "group", p.plan.Group, "attempt", attempt, "err", err)
			}
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cmcd pairing: joining consumer group %s: %w", p.plan.Group, err)
		}
		for _, a := range gen.Assignments[CMCDReportsTopic] {
			part, off := a.ID, a.Offset
			gen.Start(func(gctx context.Context) { p.runPartition(gctx, gen, part, off) })
		}
	}
}

// runPartition pairs one partition's reports until its generation ends.
func (p *Pairer) runPartition(ctx context.Context, gen *kafka.Generation, partition int, offset int64) {
	logger := log.With(p.logger, "partition", partition)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: p.plan.Brokers, Topic: CMCDReportsTopic, Partition: partition,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond, QueueCapacity: 1000,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		level.Error(logger).Log("msg", "cannot start the partition", "offset", offset, "err", err)
		return
	}
	pp := newPairPart()
	label := strconv.Itoa(partition)
	defer func() {
		p.sessions.Add(-int64(len(pp.sessions)))
		p.c.metrics.CMCDOpenSessions.DeleteLabelValues(label)
		p.c.metrics.CMCDPairLag.DeleteLabelValues(label)
	}()
	committed := offset
	var lastCommit time.Time
	level.Info(logger).Log("msg", "pairing CMCD reports", "from_offset", offset)
	for ctx.Err() == nil {
		b := p.c.pool.Get().(*batch)
		b.reset()
		n, err := p.readBatch(ctx, r, pp, b)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			level.Warn(logger).Log("msg", "fetch failed", "err", err)
		}
		if n > 0 && !p.produce(ctx, b, logger) {
			return // uncommitted: the next owner maps these again
		}
		if !b.poisoned {
			b.shrink()
			p.c.pool.Put(b)
		}
		// The commit point scans the sessions: once per CommitEvery, not
		// per batch.
		if now := time.Now(); pp.next >= 0 && now.Sub(lastCommit) >= p.plan.CommitEvery {
			lastCommit = now
			ms, idle := now.UnixMilli(), p.plan.IdleTimeout.Milliseconds()
			if c := pp.commitPoint(ms, idle, p.plan.MaxHold.Milliseconds()); c > committed {
				if !p.commit(ctx, gen, partition, c, logger) {
					return
				}
				committed = c
			}
			p.c.metrics.CMCDOpenSessions.WithLabelValues(label).Set(float64(pp.openSessions(ms, idle)))
			p.c.metrics.CMCDPairLag.WithLabelValues(label).Set(float64(pp.next - committed))
		}
	}
}

// readBatch maps the reports read back to back (at most BatchReports, for
// at most BatchWait after the first) into b; it waits up to CommitEvery
// for the first. It returns the reports mapped.
func (p *Pairer) readBatch(ctx context.Context, r *kafka.Reader, pp *pairPart, b *batch) (int, error) {
	wait := p.plan.CommitEvery
	var deadline time.Time
	n := 0
	for n < p.plan.BatchReports {
		rctx, cancel := context.WithTimeout(ctx, wait)
		if n > 0 {
			rctx, cancel = context.WithDeadline(ctx, deadline)
		}
		msg, err := r.ReadMessage(rctx)
		cancel()
		if err != nil {
			return n, err
		}
		if n == 0 {
			deadline = time.Now().Add(p.plan.BatchWait)
		}
		n++
		p.pair(pp, msg, b)
	}
	return n, nil
}

// produce hands b's events to Kafka, retrying until they are durable or
// the partition is lost (false).
func (p *Pairer) produce(ctx context.Context, b *batch, logger log.Logger) bool {
	if len(b.spans) == 0 {
		return true
	}
	msgs := len(b.spans)
	_, err := retry.Do(ctx, p.plan.Retry, func(ctx context.Context) error {
		b.msgs = b.msgs[:0]
		return p.c.produce(ctx, b)
	}, func(attempt int, err error) {
		// A failed attempt may leave records in the writer's hands: the
		// batch's buffers must not be reused.
		b.poisoned = true
		level.Warn(logger).Log("msg", "producing paired events failed; retrying, nothing committed", "records", msgs, "attempt", attempt, "err", err)
	})
	return err == nil
}

// commit stores the partition's commit point, retrying until it is stored
// or the generation is over (false: another member owns it now).
func (p *Pairer) commit(ctx context.Context, gen *kafka.Generation, partition int, offset int64, logger log.Logger) bool {
	_, err := retry.Do(ctx, p.plan.Retry, func(context.Context) error {
		return gen.CommitOffsets(map[string]map[int]int64{CMCDReportsTopic: {partition: offset}})
	}, func(attempt int, err error) {
		level.Warn(logger).Log("msg", "commit failed; retrying", "offset", offset, "attempt", attempt, "err", err)
	})
	return err == nil
}

// pair maps one cmcd_reports record into b: its session's events, or its
// rejects. Records it cannot read are logged and skipped (the collector
// wrote them; a retry cannot fix them).
func (p *Pairer) pair(pp *pairPart, msg kafka.Message, b *batch) {
	if n := len(pp.sessions); !pp.admit(msg.Offset) {
		p.sessions.Add(-int64(n))
		level.Info(p.logger).Log("msg", "offsets not contiguous: session state dropped, rebuilt from here", "partition", msg.Partition, "offset", msg.Offset, "sessions", n)
	}
	var env reportEnvelope
	if err := json.Unmarshal(msg.Value, &env); err != nil {
		level.Error(p.logger).Log("msg", "unreadable CMCD report record; skipped", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	d, err := cmcd.ParseDict(env.Report)
	rep, rej := readReport(d, err, env.ReceivedAt, env.Device)
	// Rejected records of this report are named by its record: a re-read
	// gives them the same ids.
	b.body.Reset()
	b.body.Write(msg.Value)
	b.haveSum = false
	b.cleaner.At = time.UnixMilli(env.ReceivedAt)
	if rej != nil {
		// /v1/cmcd read it before producing it: a record of another version.
		b.fields = b.fields[:0] // no ids of another event
		p.c.addReject(b, env.AppID, env.RequestID, env.Index, []byte(env.Report), rej, env.ReceivedAt)
		return
	}
	idle := p.plan.IdleTimeout.Milliseconds()
	key := string(msg.Key)
	if _, ok := pp.sessions[key]; !ok && p.sessions.Load() >= int64(p.c.cfg.CMCD.MaxSessions) {
		p.sessions.Add(-int64(pp.evict(env.ReceivedAt, idle)))
	}
	s, isNew := pp.session(key, msg.Offset, env.ReceivedAt, idle)
	if isNew {
		p.sessions.Add(1)
	}
	was := s.cmcdSession
	evs := s.apply(rep, &p.c.cfg.CMCD)
	switch {
	case s.joined && was.first == 0:
		p.c.metrics.CMCDSessions.WithLabelValues("joined").Inc()
	case !s.joined && s.first != was.first:
		p.c.metrics.CMCDSessions.WithLabelValues("start").Inc()
	}
	var resp Response
	var buf []byte
	for i := range evs {
		buf = appendEventJSON(buf[:0], env.AppID, rep, &evs[i])
		p.c.handleEvent(b, env.AppID, env.RequestID, env.Index, buf, env.ReceivedAt, &resp)
	}
}
