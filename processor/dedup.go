package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Defaults of the event_id memory that drops client retries.
const (
	// DefaultDedupWindow is how long an event_id is remembered (docs/collector.md
	// promises a retried payload is safe for this long).
	DefaultDedupWindow = time.Hour
	// DefaultDedupMaxIDs caps the ids remembered: ~17 bytes each on average
	// (~140 MB at the cap, see BenchmarkDedup*). Past it the oldest
	// generation is forgotten early, counted and logged.
	DefaultDedupMaxIDs = 8_000_000
	// dedupGenerations split the window: ids are kept between the window and
	// a generation (1/4) longer, and a miss probes this many tables plus one.
	dedupGenerations = 4
)

// dedup remembers the event ids of a time window in generations: the open
// one is a map; closed ones are frozen into flat open-addressing tables (8
// bytes a slot, load 3/4) and dropped whole once all their ids are older
// than the window, or earlier, counted, when the id cap is reached. At start
// it is rebuilt from the store (loadSeen): only ids of stored rows, so a
// message replayed after a crash is never taken for a duplicate of itself.
type dedup struct {
	window, span time.Duration
	max, genMax  int
	cur          map[uint64]struct{}
	curStart     time.Time
	old          []frozenGen // oldest first
	nold         int         // ids in old
	now          time.Time   // of the last tick
	lastWarn     time.Time
	m            *dedupMetrics
	logger       log.Logger
}

type frozenGen struct {
	slots []uint64 // 0 is empty; ids are never 0 (see norm)
	n     int
	end   time.Time // no id in it is newer
}

func newDedup(window time.Duration, max int, m *dedupMetrics, logger log.Logger) *dedup {
	if m == nil {
		m = newDedupMetrics(nil)
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	d := &dedup{window: window, span: window / dedupGenerations, max: max, genMax: max / dedupGenerations,
		cur: map[uint64]struct{}{}, m: m, logger: logger}
	if d.span <= 0 {
		d.span = 1
	}
	if d.genMax < 1 {
		d.genMax = 1
	}
	d.tick(time.Now())
	return d
}

// norm keeps 0 free as the frozen tables' empty slot.
func norm(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// The memory holds the ids of two tables: events, and rejected (the
// dead-letter records, whose ids the collector and the processor derive,
// see collector/rejectid.go and fetcher.reject). A table's salt is XORed
// into the hash so that the same app and id in both are two records.
const (
	eventsSalt   uint64 = 0
	rejectedSalt uint64 = 0x9e3779b97f4a7c15
)

// dedupKey hashes a record's identity: its app and event_id (ids are
// unique within an app) and its table's salt. dedupKeySQL is the same in
// SQL for loadSeen: the one other place the key is derived.
func dedupKey(buf *[]byte, salt uint64, app, id []byte) uint64 {
	b := append(append(append((*buf)[:0], app...), 0), id...)
	*buf = b
	return norm(xxhash.Sum64(b) ^ salt)
}

// dedupKeySQL is dedupKey over a table's app_id and event_id columns
// (before norm, which load applies).
func dedupKeySQL(salt uint64) string {
	return fmt.Sprintf("bitXor(xxHash64(concat(toString(app_id), '\\0', event_id)), toUInt64(%d))", salt)
}

// dedupBytesKey is the key of a record without an event_id (only when
// produced straight to Kafka): its bytes, remembered until a restart.
func dedupBytesKey(salt uint64, value []byte) uint64 {
	return norm(xxhash.Sum64(value) ^ salt)
}

// tick moves the clock (once per batch, not per event): closes the open
// generation after a span and drops generations past the window.
func (d *dedup) tick(now time.Time) {
	d.now = now
	if now.Sub(d.curStart) >= d.span {
		if len(d.cur) > 0 {
			d.freeze()
		}
		d.curStart = now
	}
	for len(d.old) > 0 && now.Sub(d.old[0].end) >= d.window {
		d.drop()
	}
	d.m.ids.Set(float64(len(d.cur) + d.nold))
	oldest := d.curStart
	if len(d.old) > 0 {
		oldest = d.old[0].end // ids at least this old are still known
	}
	d.m.remembered.Set(now.Sub(oldest).Seconds())
}

// seen reports whether h was seen within the window, and remembers it.
func (d *dedup) seen(h uint64) bool {
	if _, ok := d.cur[h]; ok {
		return true
	}
	for i := len(d.old) - 1; i >= 0; i-- {
		if d.old[i].has(h) {
			return true
		}
	}
	if len(d.cur) >= d.genMax {
		d.freeze()
		d.curStart = d.now
	}
	for len(d.cur)+d.nold >= d.max && len(d.old) > 0 {
		d.forget()
	}
	d.cur[h] = struct{}{}
	return false
}

// freeze turns the open generation into a flat table and opens a new one.
func (d *dedup) freeze() {
	g := newFrozenGen(len(d.cur), d.now)
	for h := range d.cur {
		g.add(h)
	}
	d.old = append(d.old, g)
	d.nold += g.n
	clear(d.cur) // keeps its storage for the next generation
}

// drop forgets the oldest generation.
func (d *dedup) drop() {
	d.nold -= d.old[0].n
	d.old[0] = frozenGen{}
	d.old = d.old[1:]
}

// forget drops the oldest generation before its time because the id cap is
// reached: retries of its ids would be stored twice.
func (d *dedup) forget() {
	g := d.old[0]
	d.drop()
	if d.now.Sub(g.end) >= d.window {
		return
	}
	d.m.forgotten.Add(float64(g.n))
	if d.now.Sub(d.lastWarn) >= d.span {
		d.lastWarn = d.now
		oldest := d.curStart
		if len(d.old) > 0 {
			oldest = d.old[0].end
		}
		level.Warn(d.logger).Log("msg", "event_id memory full: forgetting ids before the dedup window; raise --dedup-max-ids to keep the window",
			"forgotten", g.n, "max_ids", d.max, "window", d.window, "remembered", d.now.Sub(oldest).Round(time.Second))
	}
}

func newFrozenGen(n int, end time.Time) frozenGen {
	return frozenGen{slots: make([]uint64, n+n/3+1), end: end}
}

// add inserts h (not 0); the table is sized for every id it will hold.
func (g *frozenGen) add(h uint64) {
	i, _ := bits.Mul64(h, uint64(len(g.slots)))
	for {
		switch g.slots[i] {
		case 0:
			g.slots[i] = h
			g.n++
			return
		case h:
			return
		}
		if i++; i == uint64(len(g.slots)) {
			i = 0
		}
	}
}

func (g *frozenGen) has(h uint64) bool {
	i, _ := bits.Mul64(h, uint64(len(g.slots)))
	for {
		switch g.slots[i] {
		case h:
			return true
		case 0:
			return false
		}
		if i++; i == uint64(len(g.slots)) {
			i = 0
		}
	}
}

// dedupMetrics of the event_id memory.
type dedupMetrics struct {
	ids        prometheus.Gauge
	remembered prometheus.Gauge
	forgotten  prometheus.Counter
	loaded     prometheus.Gauge
	loadTime   prometheus.Gauge
}

// newDedupMetrics creates the metrics and registers them when reg is set.
func newDedupMetrics(reg prometheus.Registerer) *dedupMetrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_processor_dedup_" + name, Help: help})
	}
	m := &dedupMetrics{
		ids: g("ids", "Event ids remembered to drop client retries."),
		remembered: g("remembered_seconds",
			"How far back event ids are remembered now: the dedup window, or less after the id cap forced forgetting."),
		forgotten: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_processor_dedup_forgotten_total",
			Help: "Event ids forgotten before the dedup window passed, because --dedup-max-ids was reached."}),
		loaded:   g("loaded_ids", "Event ids of the window read back from the store at start."),
		loadTime: g("load_seconds", "Time to read the window's event ids back from the store at start."),
	}
	if reg != nil {
		reg.MustRegister(m.ids, m.remembered, m.forgotten, m.loaded, m.loadTime)
	}
	return m
}

// loadSeen rebuilds the event_id memory from the rows of events and rejected
// that were received within the window (the newest max of them together), so
// that a client retry after a restart is still recognised, and so is a
// dead-letter record produced again. The store is the truth: an id is
// remembered only when its row is stored.
//
// Rows are found by received_at; the events table is partitioned by ts, so
// ts bounds the partitions read: the collector refuses ts older than
// schemas.DefaultMaxPast, and an older row (produced straight to Kafka) is
// only missed here, never wrongly remembered.
func (w *fetcher) loadSeen(ctx context.Context) error {
	d := w.seen
	t0 := time.Now()
	query := func(q string) ([]byte, error) {
		backoff := newBackoff(w.p.cfg.MaxRetryBackoff)
		for {
			out, err := w.p.store.QueryJSON(ctx, q)
			if err == nil {
				return out, nil
			}
			level.Warn(w.logger).Log("msg", "reading the dedup window's event ids failed; retrying", "err", err)
			if !backoff.wait(ctx) {
				return nil, fmt.Errorf("processor: load event ids: %w", err)
			}
		}
	}
	// First the ids per generation (received_at only), to read no more than
	// the cap: the newest generations that fit, whole.
	counts, err := query(fmt.Sprintf("SELECT intDiv(ra, %d) AS g, count() AS n FROM (%s) GROUP BY g ORDER BY g DESC",
		d.span.Milliseconds(), loadSeenRows(t0, d.window, -1, false)))
	if err != nil {
		return err
	}
	from, skipped, err := loadSeenFrom(counts, d.max, d.span)
	if err != nil {
		return err
	}
	n := 0
	var out []byte
	if from >= 0 {
		if out, err = query(loadSeenSQL(t0, d.window, from, d.span)); err != nil {
			return err
		}
		if n, err = d.load(out); err != nil {
			return err
		}
	}
	if skipped > 0 {
		d.m.forgotten.Add(float64(skipped))
		level.Warn(w.logger).Log("msg", "dedup window holds more ids than --dedup-max-ids; the oldest are not loaded",
			"not_loaded", skipped, "max_ids", d.max)
	}
	took := time.Since(t0)
	d.m.loaded.Set(float64(n))
	d.m.loadTime.Set(took.Seconds())
	level.Info(w.logger).Log("msg", "dedup window loaded from the store", "ids", n, "window", d.window,
		"took", took.Round(time.Millisecond), "result_bytes", len(out))
	return nil
}

// dedupTables are the tables whose ids the memory holds, with their salt
// and what selects the rows of the window that have an event_id. The events
// table is partitioned by ts, so ts bounds the partitions read; rejected is
// partitioned by received_at.
var dedupTables = []struct {
	table string
	salt  uint64
	where func(now time.Time, window time.Duration) string
}{
	{schemas.EventsTable, eventsSalt, func(now time.Time, window time.Duration) string {
		tsFrom := now.Add(-window - schemas.DefaultMaxPast - time.Hour).UnixMilli()
		return fmt.Sprintf("ts >= fromUnixTimestamp64Milli(%d) AND received_at >= fromUnixTimestamp64Milli(%d) AND event_id != ''",
			tsFrom, now.Add(-window).UnixMilli())
	}},
	{schemas.RejectedTable, rejectedSalt, func(now time.Time, window time.Duration) string {
		return fmt.Sprintf("received_at >= fromUnixTimestamp64Milli(%d) AND event_id != ''", now.Add(-window).UnixMilli())
	}},
}

// loadSeenRows selects, from every table of dedupTables, the rows of the
// window received since from (ms; -1: the whole window) as ra (received_at
// in ms) and, withKey, h (dedupKeySQL).
func loadSeenRows(now time.Time, window time.Duration, from int64, withKey bool) string {
	var parts []string
	for _, t := range dedupTables {
		cols := "toUnixTimestamp64Milli(received_at) AS ra"
		if withKey {
			cols += ", " + dedupKeySQL(t.salt) + " AS h"
		}
		where := t.where(now, window)
		if from >= 0 {
			where += fmt.Sprintf(" AND received_at >= fromUnixTimestamp64Milli(%d)", from)
		}
		parts = append(parts, fmt.Sprintf("SELECT %s FROM %s WHERE %s", cols, t.table, where))
	}
	return strings.Join(parts, "\n    UNION ALL\n    ")
}

// loadSeenFrom picks, from per-generation counts (newest first), the start
// in ms of the oldest generation that fits within max ids with the newer
// ones (-1: none), and how many ids are left out.
func loadSeenFrom(counts []byte, max int, span time.Duration) (from int64, skipped int, err error) {
	from, total := -1, 0
	for _, line := range strings.Split(strings.TrimSpace(string(counts)), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			G json.Number `json:"g"`
			N json.Number `json:"n"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return -1, 0, fmt.Errorf("processor: read stored event id counts: %w", err)
		}
		g, err1 := strconv.ParseInt(r.G.String(), 10, 64)
		n, err2 := strconv.Atoi(r.N.String())
		if err1 != nil || err2 != nil {
			return -1, 0, fmt.Errorf("processor: read stored event id counts: bad row %q", line)
		}
		if skipped > 0 || total+n > max {
			skipped += n
			continue
		}
		total += n
		from = g * span.Milliseconds()
	}
	return from, skipped, nil
}

// loadSeenSQL selects the ids (hashed as dedupKey does, 16 hex digits each)
// of the rows of the window received since from (ms), one row per
// generation.
func loadSeenSQL(now time.Time, window time.Duration, from int64, span time.Duration) string {
	return fmt.Sprintf(`SELECT intDiv(ra, %d) AS g, max(ra) AS hi,
    arrayStringConcat(groupArray(leftPad(lower(hex(h)), 16, '0'))) AS hs
FROM (
    %s
)
GROUP BY g
ORDER BY g`, span.Milliseconds(), loadSeenRows(now, window, from, true))
}

// load fills the memory from loadSeenSQL's rows (oldest generation first);
// it returns how many ids it read.
func (d *dedup) load(out []byte) (int, error) {
	total := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Hi json.Number `json:"hi"`
			HS string      `json:"hs"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return total, fmt.Errorf("processor: read stored event ids: %w", err)
		}
		hi, err := strconv.ParseInt(r.Hi.String(), 10, 64)
		if err != nil || len(r.HS)%16 != 0 {
			return total, fmt.Errorf("processor: read stored event ids: bad row (hi %q, %d hex digits)", r.Hi, len(r.HS))
		}
		g := newFrozenGen(len(r.HS)/16, time.UnixMilli(hi))
		for i := 0; i < len(r.HS); i += 16 {
			h, err := strconv.ParseUint(r.HS[i:i+16], 16, 64)
			if err != nil {
				return total, fmt.Errorf("processor: read stored event ids: %w", err)
			}
			g.add(norm(h))
		}
		total += len(r.HS) / 16
		d.old = append(d.old, g)
		d.nold += g.n
	}
	d.tick(d.now)
	return total, nil
}
