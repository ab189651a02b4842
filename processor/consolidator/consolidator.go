// Package consolidator merges each closed day of the events table, and of
// the trace lookup's trace_context, into one part.
//
// The merge policy (migration 0003) keeps background merges cheap at high
// ingest rates by leaving a day in many parts, and every part a trace lookup
// touches costs it a fixed share of its time (docs/storage.md). A day that
// no longer takes inserts can be merged once into a single part: one rewrite
// of the day, after which a lookup over it opens one part instead of 7–30.
// Days too large to rewrite cheaply (MaxBytes) are left as they are.
package consolidator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Store is what the consolidator needs of the store.
type Store interface {
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
	Exec(ctx context.Context, sql string) error
}

// Config says which days are consolidated and how often to look.
type Config struct {
	// Tables partitioned by day (toYYYYMMDD), looked at in this order;
	// default events and trace_context, the tables a trace lookup reads by
	// day (every part it opens costs it, docs/trace.md).
	Tables []string
	// MaxBytes is the largest day (bytes on disk) merged into one part; 0
	// turns the consolidator off. The merge reads and writes the whole day
	// once and holds its old parts until they are removed (old_parts_lifetime,
	// 8 minutes by default), so the disk briefly needs the day twice.
	MaxBytes int64
	// Interval between looks (default 10 minutes).
	Interval time.Duration
	// Quiet is how long a day must have gone without a new part before it
	// is merged (default 10 minutes; negative: no wait): the last batches
	// of a day that just ended still arrive, and merging before them would
	// merge twice.
	Quiet time.Duration
	// StopMerges: when the context ends during a merge, stop it with
	// SYSTEM STOP MERGES (and START again once it has stopped). Only for a
	// store of this process alone (embedded): on a shared server it would
	// stop every writer's merges for a while, and a crash between the two
	// would leave them stopped. Otherwise the merge is left to the server
	// and Once returns at once.
	StopMerges bool
	// MinShare: a day is merged when its parts besides the largest hold
	// this share of its rows together (default 0.05). Late events (a player
	// sending a day-old log) add small parts to a consolidated day; those
	// are left to the background merges rather than rewriting the day for
	// each.
	MinShare float64
}

func (c *Config) defaults() {
	if len(c.Tables) == 0 {
		c.Tables = []string{schemas.EventsTable, schemas.TraceContextTable}
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Minute
	}
	if c.Quiet < 0 {
		c.Quiet = 0
	} else if c.Quiet == 0 {
		c.Quiet = 10 * time.Minute
	}
	if c.MinShare <= 0 {
		c.MinShare = 0.05
	}
}

// Metrics of the consolidator.
type Metrics struct {
	Days    prometheus.Counter
	Bytes   prometheus.Counter
	Seconds prometheus.Counter
	Skipped prometheus.Counter
	Errors  prometheus.Counter
}

// NewMetrics creates and registers the consolidator's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_consolidator_" + name, Help: help})
		reg.MustRegister(x)
		return x
	}
	return &Metrics{
		Days:    c("days_total", "Closed days merged into one part (events, trace_context)."),
		Bytes:   c("bytes_total", "Bytes on disk of the days merged (before the merge)."),
		Seconds: c("seconds_total", "Time spent merging days."),
		Skipped: c("skipped_days_total", "Looks at a fragmented closed day that left it as it was because it is larger than the limit."),
		Errors:  c("errors_total", "Looks or merges that failed."),
	}
}

// Consolidator merges closed days of day-partitioned tables.
type Consolidator struct {
	cfg    Config
	st     Store
	m      *Metrics
	logger log.Logger
	warned map[string]bool // days reported as too large, once each
}

// New returns a Consolidator; with m nil its metrics are not registered.
func New(cfg Config, st Store, m *Metrics, logger log.Logger) *Consolidator {
	cfg.defaults()
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	return &Consolidator{cfg: cfg, st: st, m: m, logger: logger, warned: map[string]bool{}}
}

// Run looks every Interval until ctx ends. It returns at once when MaxBytes
// is 0.
func (c *Consolidator) Run(ctx context.Context) {
	if c.cfg.MaxBytes <= 0 {
		return
	}
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := c.Once(ctx); err != nil && ctx.Err() == nil {
			level.Warn(c.logger).Log("msg", "consolidating closed days failed; trying again later", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Day is a partition of a table as the consolidator sees it.
type Day struct {
	Table       string `json:"-"`
	PartitionID string `json:"partition_id"`
	// Rows of each of its parts.
	Rows  []int64 `json:"part_rows"`
	Bytes int64   `json:"bytes"`
	// IdleSeconds since its newest part was written.
	IdleSeconds int64 `json:"idle_s"`
	// Merging: a background merge is running in it.
	Merging bool `json:"merging"`
}

// daysSQL lists the closed days (partitions before today's, in the store's
// time zone, which is the partition key's) that have more than one part.
func daysSQL(table string) string {
	return fmt.Sprintf(`SELECT partition_id, toInt64(count()) AS parts, groupArray(toInt64(rows)) AS part_rows,
    toInt64(sum(bytes_on_disk)) AS bytes, toInt64(dateDiff('second', max(modification_time), now())) AS idle_s,
    toBool(partition_id IN (SELECT partition_id FROM system.merges WHERE database = currentDatabase() AND table = %[1]s)) AS merging
FROM system.parts
WHERE database = currentDatabase() AND table = %[1]s AND active
    AND length(partition_id) = 8 AND toUInt32OrZero(partition_id) > 0 AND toUInt32OrZero(partition_id) < toYYYYMMDD(now())
GROUP BY partition_id
HAVING parts > 1
ORDER BY partition_id`, store.QuoteString(table))
}

// Fragmented says whether the parts besides the day's largest hold minShare
// of its rows together: a day in many parts, or in one large part and many
// small ones (the merge policy leaves the last hours of a day so), but not a
// merged day and a few late events.
func (d Day) Fragmented(minShare float64) bool {
	var total, largest int64
	for _, r := range d.Rows {
		total += r
		largest = max(largest, r)
	}
	return len(d.Rows) > 1 && float64(total-largest) >= minShare*float64(total)
}

// Once looks at the closed days of each table and merges those due, one
// after the other. It returns the days it merged.
func (c *Consolidator) Once(ctx context.Context) ([]Day, error) {
	var done []Day
	for _, table := range c.cfg.Tables {
		d, err := c.once(ctx, table)
		done = append(done, d...)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (c *Consolidator) once(ctx context.Context, table string) ([]Day, error) {
	out, err := c.st.QueryJSON(ctx, daysSQL(table))
	if err != nil {
		c.m.Errors.Inc()
		return nil, fmt.Errorf("listing the days of %s: %w", table, err)
	}
	var done []Day
	for line := range bytes.SplitSeq(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		d := Day{Table: table}
		if err := json.Unmarshal(line, &d); err != nil {
			c.m.Errors.Inc()
			return done, fmt.Errorf("listing the days of %s: row %.200q: %w", table, line, err)
		}
		merge, tooBig := c.due(d)
		if tooBig {
			c.m.Skipped.Inc()
			if k := table + "/" + d.PartitionID; !c.warned[k] {
				c.warned[k] = true
				level.Info(c.logger).Log("msg", "closed day left in several parts: larger than --consolidate-max-bytes",
					"table", table, "day", d.PartitionID, "parts", len(d.Rows), "bytes", d.Bytes, "max_bytes", c.cfg.MaxBytes)
			}
			continue
		}
		if !merge {
			continue
		}
		if err := c.merge(ctx, d); err != nil {
			if ctx.Err() == nil {
				c.m.Errors.Inc()
			}
			return done, err
		}
		done = append(done, d)
	}
	return done, nil
}

// due says whether a closed day is merged now, or would be but is larger
// than MaxBytes.
func (c *Consolidator) due(d Day) (merge, tooBig bool) {
	if !d.Fragmented(c.cfg.MinShare) || d.Merging || d.IdleSeconds < int64(c.cfg.Quiet/time.Second) {
		return false, false
	}
	if d.Bytes > c.cfg.MaxBytes {
		return false, true
	}
	return true, false
}

func (c *Consolidator) merge(ctx context.Context, d Day) error {
	// The id goes into the statement: digits only (daysSQL selects those).
	if _, err := strconv.ParseUint(d.PartitionID, 10, 32); err != nil {
		return fmt.Errorf("merging day %q of %s: not a day partition", d.PartitionID, d.Table)
	}
	// Without FINAL: all the day's parts are merged into one, and a day
	// already in one part (another processor got there first) is left
	// alone.
	sql := fmt.Sprintf("OPTIMIZE TABLE %s PARTITION ID '%s'", store.QuoteTable(d.Table), d.PartitionID)
	t0 := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.st.Exec(context.WithoutCancel(ctx), sql) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		if !c.cfg.StopMerges {
			return ctx.Err()
		}
		// The store's call cannot be interrupted, a merge of a large day
		// takes minutes, and KILL QUERY does not stop a merge under way:
		// stopping the table's merges does, so that shutting down does not
		// wait for it. The day keeps its parts and is merged after the
		// restart; background merges cancelled meanwhile run again later.
		kctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stopErr := c.st.Exec(kctx, "SYSTEM STOP MERGES "+store.QuoteTable(d.Table))
		<-done
		if err := c.st.Exec(kctx, "SYSTEM START MERGES "+store.QuoteTable(d.Table)); err != nil && stopErr == nil {
			stopErr = err
		}
		if stopErr != nil {
			return fmt.Errorf("stopping the merge of day %s of %s: %w", d.PartitionID, d.Table, stopErr)
		}
		level.Info(c.logger).Log("msg", "merge of a closed day stopped for shutdown; it is redone after the restart", "table", d.Table, "day", d.PartitionID)
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("merging day %s of %s (%d parts, %d bytes): %w", d.PartitionID, d.Table, len(d.Rows), d.Bytes, err)
	}
	took := time.Since(t0)
	c.m.Days.Inc()
	c.m.Bytes.Add(float64(d.Bytes))
	c.m.Seconds.Add(took.Seconds())
	level.Info(c.logger).Log("msg", "closed day merged into one part", "table", d.Table, "day", d.PartitionID, "parts", len(d.Rows),
		"bytes", d.Bytes, "took", took.Round(time.Millisecond))
	return nil
}
