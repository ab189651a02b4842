package schemas

import (
	"fmt"
	"strings"
)

// The QoE rollups: what the metrics API reads instead of raw events. Each
// table is filled by one materialized view that fires on every insert into
// events (the hourly ones on every insert into their minute table):
//
//   - qoe_1m, qoe_1h (AggregatingMergeTree): per minute (hour), log_type and
//     combination of MetricDims, the weighted counts and sums that counts
//     and rates need (Measures). A play_stop's code and first_frame_blocked
//     are empty in the rows of the other kinds, so they multiply only the
//     play_stop rows.
//   - qoe_first_frame (MergeTree): the first_frame rows' dimensions, weight
//     and times, nothing else, in time order. Video startup time quantiles
//     are exact weighted quantiles over it. A first frame is one event per
//     play, so this is a few percent of the events and cheap to write and
//     scan, where quantile states per rollup row cost more at insert than
//     all the other rollup columns together (measured; see docs/metrics.md).
//   - qoe_latency_1m, qoe_latency_1h (AggregatingMergeTree): per minute
//     (hour), dimension of delivery, room and stream, an exact weighted
//     quantile state of heartbeat latency, rounded to three significant
//     digits so that a state stays small. Latency by the other dimensions
//     is read from raw heartbeats.
//
// Migration 0008 rebuilt the first three with the dimensions and measures
// of its time; migration 0009 rebuilt the sums rollups (frame-rate
// measures) and the latency rollups (room_id, stream_id) as defined below. The query package builds its raw-event SQL from the same definitions, so
// the raw path and the rollup path compute the same numbers by construction.

// Rollup is an aggregated table keyed by time bucket and dimensions.
type Rollup struct {
	Table string
	View  string // the materialized view that fills it
	Time  string // its time-bucket column
	Grain int64  // bucket length in seconds
	Dims  []string
	// Kind says rows are also keyed by log_type, in a kind column.
	Kind bool
	// From is the finer rollup whose inserts feed this one; "" is events.
	From string
}

// latencyDims are the dimensions of delivery, which decide latency: where
// the viewer is and how the stream reaches them, and which stream (a
// broadcaster's uplink and the stream's transcode add to every viewer's
// latency, so latency is read per stream). A quantile state per row is the
// costly part of a rollup (keyed by every dimension, latency cost as much
// insert CPU as all of qoe_1m), so latency by the other dimensions is
// served from raw heartbeats.
var latencyDims = []string{"app_id", "region", "isp", "cdn", "node_id", "protocol", "room_id", "stream_id"}

// The rollup tables, finest first in each family.
var (
	// SumsRollups hold the Measures of RollupKinds by every dimension.
	SumsRollups = []Rollup{
		{Table: "qoe_1m", View: "qoe_1m_mv", Time: "minute", Grain: 60, Dims: RollupDims, Kind: true},
		{Table: "qoe_1h", View: "qoe_1h_mv", Time: "hour", Grain: 3600, Dims: RollupDims, Kind: true, From: "qoe_1m"},
	}
	// LatencyRollups hold the Latency distribution by latencyDims.
	LatencyRollups = []Rollup{
		{Table: "qoe_latency_1m", View: "qoe_latency_1m_mv", Time: "minute", Grain: 60, Dims: latencyDims},
		{Table: "qoe_latency_1h", View: "qoe_latency_1h_mv", Time: "hour", Grain: 3600, Dims: latencyDims, From: "qoe_latency_1m"},
	}
)

// Covers reports whether the rollup keeps every one of dims.
func (r *Rollup) Covers(dims []string) bool {
	for _, d := range dims {
		found := false
		for _, x := range r.Dims {
			found = found || x == d
		}
		if !found {
			return false
		}
	}
	return true
}

// FirstFrameTable is the time-ordered copy of first_frame rows, and the view
// that fills it.
const (
	FirstFrameTable = "qoe_first_frame"
	FirstFrameView  = "qoe_first_frame_mv"
)

// RollupKinds are the log_types qoe_1m summarises; a row's kind column is its
// log_type. Other log_types are not rolled up.
var RollupKinds = []string{"play_start", "first_frame", "play_stop", "heartbeat", "edge_access"}

// Dim is a dimension metrics are grouped and filtered by.
type Dim struct {
	Name string
	// Kind is the one log_type it applies to; "" for every log_type. Rows of
	// other kinds have it empty.
	Kind string
	// SQL is its value, a string, over an events row; "" is the column.
	SQL string
}

// Expr is the dimension's value over events rows.
func (d *Dim) Expr() string {
	if d.SQL == "" {
		return d.Name
	}
	return d.SQL
}

// MetricDims are the dimensions of the metrics API, in the sums rollups'
// column order: each low-cardinality dimension common to all log_types
// (log_type itself is qoe_1m's kind column), the room and the stream (ids
// every event may carry), then a play_stop's outcome. code is qualified
// with its table because its string value is selected under its own name
// next to measures that compare the number (an alias would shadow it).
var MetricDims = func() []Dim {
	var out []Dim
	for _, f := range Common {
		if f.Kind == KindDim && f.Name != "log_type" {
			out = append(out, Dim{Name: f.Name})
		}
	}
	return append(out, Dim{Name: "room_id"}, Dim{Name: "stream_id"},
		Dim{Name: "code", Kind: "play_stop", SQL: "ifNull(toString(" + EventsTable + ".code), '')"},
		Dim{Name: "first_frame_blocked", Kind: "play_stop"})
}()

// DimByName indexes MetricDims.
var DimByName = func() map[string]*Dim {
	m := make(map[string]*Dim, len(MetricDims))
	for i := range MetricDims {
		m[MetricDims[i].Name] = &MetricDims[i]
	}
	return m
}()

// RollupDims are the names of MetricDims: qoe_1m and qoe_1h keep all of
// them.
var RollupDims = func() []string {
	var out []string
	for _, d := range MetricDims {
		out = append(out, d.Name)
	}
	return out
}()

// CommonDims are the names of the MetricDims of every log_type: the
// first-frame copy keeps them.
var CommonDims = func() []string {
	var out []string
	for _, d := range MetricDims {
		if d.Kind == "" {
			out = append(out, d.Name)
		}
	}
	return out
}()

// Weight is the SQL weight of an events row: the inverse of the probability
// it was kept. The pipeline never stores a rate of 0 (such events are
// dropped); one is read as 1 so that a hand-inserted row cannot poison a sum.
const Weight = "1 / if(sample_rate > 0, sample_rate, 1)"

// QuantileWeight is Weight as the integer ClickHouse's weighted quantiles
// take: 1000/sample_rate, rounded. Only ratios between weights matter to a
// quantile, so the scale of 1000 keeps three significant digits of any rate
// (1/0.3 becomes 3333, not 3) and stays far from overflow.
const QuantileWeight = "toUInt64(round(1000 / if(sample_rate > 0, sample_rate, 1)))"

// Measure is one weighted sum of qoe_1m: over the rows of log_type Kind
// (every kind when empty) that satisfy Cond, the sum of Value × Weight. As
// in SQL, a NULL in Cond counts as false; a NULL Value counts as 0.
type Measure struct {
	Name  string
	Kind  string // "" for every kind
	Cond  string // SQL over events columns; "" is every row
	Value string // SQL over events columns; "" is 1 (a weighted count)
	Doc   string
}

// notPausedOrSeeking keeps the heartbeat intervals that count as viewing time
// for rebuffering: time paused or seeking is neither playing nor rebuffering
// (CMCD v2 player states; Conviva's rebuffering ratio leaves it out too).
const notPausedOrSeeking = "state NOT IN ('paused', 'seeking')"

// rendered keeps the heartbeats that count for the frame rate: viewing time
// as for rebuffering, from a player that reported its rendered frame rate.
const rendered = notPausedOrSeeking + " AND fps IS NOT NULL"

// viewEnd keeps the play_stop that ends a view (a play session with its
// retries): the player does not try again after it. A sender that never
// sets will_retry makes each attempt a view.
const viewEnd = "NOT ifNull(will_retry, false)"

// Measures are the weighted sums of qoe_1m, in column order. events.code is
// qualified: see MetricDims.
var Measures = []Measure{
	{Name: "w", Doc: "events, weighted: Σ 1/sample_rate"},
	{Name: "w_started", Kind: "play_stop", Cond: "first_frame_blocked = ''",
		Doc: "ended attempts that reached the first frame (ended plays)"},
	{Name: "w_start_failed", Kind: "play_stop", Cond: "first_frame_blocked != '' AND events.code != 0",
		Doc: "ended attempts that failed with an error before the first frame"},
	{Name: "w_ebvs", Kind: "play_stop", Cond: "first_frame_blocked != '' AND events.code = 0",
		Doc: "ended attempts the viewer left before the first frame, without an error"},
	{Name: "w_ebvs_1s", Kind: "play_stop", Cond: "first_frame_blocked != '' AND events.code = 0 AND play_duration_ms >= 1000",
		Doc: "exits before video start after waiting at least 1 s"},
	{Name: "w_play_failed", Kind: "play_stop", Cond: "first_frame_blocked = '' AND events.code != 0",
		Doc: "ended plays that stopped with an error after the first frame"},
	{Name: "w_rebuffered", Kind: "play_stop", Cond: "first_frame_blocked = '' AND stall_count > 0",
		Doc: "ended plays with at least one stall"},
	{Name: "w_view_ms", Kind: "heartbeat", Value: "interval_ms",
		Doc: "viewing time in ms, any player state"},
	{Name: "w_play_ms", Kind: "heartbeat", Cond: notPausedOrSeeking, Value: "interval_ms",
		Doc: "viewing time in ms, playing or rebuffering"},
	{Name: "w_stall_ms", Kind: "heartbeat", Cond: notPausedOrSeeking, Value: "stall_ms",
		Doc: "rebuffering time in ms"},
	{Name: "w_stalls", Kind: "heartbeat", Cond: notPausedOrSeeking, Value: "stall_count",
		Doc: "rebuffering events"},
	{Name: "w_render_stall_ms", Kind: "heartbeat", Cond: notPausedOrSeeking, Value: "render_stall_ms",
		Doc: "render-stall time in ms"},
	{Name: "w_render_stalls", Kind: "heartbeat", Cond: notPausedOrSeeking, Value: "render_stall_count",
		Doc: "render stalls"},
	{Name: "w_render_stalled", Kind: "play_stop", Cond: "first_frame_blocked = '' AND render_stall_count > 0",
		Doc: "ended plays with at least one render stall"},
	{Name: "w_frames_ms", Kind: "heartbeat", Cond: rendered, Value: "fps * interval_ms",
		Doc: "rendered frames × 1000: Σ fps × interval_ms, playing or rebuffering"},
	{Name: "w_fps_ms", Kind: "heartbeat", Cond: rendered, Value: "interval_ms",
		Doc: "viewing time in ms, playing or rebuffering, of heartbeats that carry fps"},
	{Name: "w_view_end", Kind: "play_stop", Cond: viewEnd,
		Doc: "ended views: the play_stop after which the player does not retry"},
	{Name: "w_view_started", Kind: "play_stop", Cond: viewEnd + " AND first_frame_blocked = ''",
		Doc: "ended views whose last attempt reached the first frame"},
	{Name: "w_view_start_failed", Kind: "play_stop", Cond: viewEnd + " AND first_frame_blocked != '' AND events.code != 0",
		Doc: "ended views whose last attempt failed with an error before the first frame"},
	{Name: "w_view_play_failed", Kind: "play_stop", Cond: viewEnd + " AND first_frame_blocked = '' AND events.code != 0",
		Doc: "ended views that stopped with an error after the first frame"},
	{Name: "w_edge_error", Kind: "edge_access", Cond: "http_status >= 400",
		Doc: "edge responses with an HTTP status of 400 or more"},
	{Name: "w_cache_known", Kind: "edge_access", Cond: "cache_hit IS NOT NULL",
		Doc: "edge responses that said whether the edge had the stream"},
	{Name: "w_cache_miss", Kind: "edge_access", Cond: "cache_hit = false",
		Doc: "edge responses that went back to source"},
}

// MeasureByName indexes Measures.
var MeasureByName = func() map[string]*Measure {
	m := make(map[string]*Measure, len(Measures))
	for i := range Measures {
		m[Measures[i].Name] = &Measures[i]
	}
	return m
}()

// SumSQL is the SQL aggregate of a measure over events rows: what the minute
// rollup's view stores, and what the raw-event path computes. The kind
// condition is left out when the caller already filters on log_type.
func (m *Measure) SumSQL(withKind bool) string {
	var conds []string
	if withKind && m.Kind != "" {
		conds = append(conds, "log_type = '"+m.Kind+"'")
	}
	if m.Cond != "" {
		conds = append(conds, "("+m.Cond+")")
	}
	v := Weight
	if m.Value != "" {
		v = "ifNull(" + m.Value + ", 0) * (" + Weight + ")"
	}
	if len(conds) == 0 {
		return "sum(" + v + ")"
	}
	return "sumIf(" + v + ", " + strings.Join(conds, " AND ") + ")"
}

// Distribution is the values of one field a quantile metric reads: the
// field's non-NULL values on rows of Kind, each weighted by QuantileWeight.
type Distribution struct {
	Kind  string
	Field string
	// Round3 rounds values to three significant digits (at most 0.5% off)
	// before they are counted, on every path, so that a rollup state holds
	// few distinct values.
	Round3 bool
}

// FirstFrameTimes are the first_frame fields of video startup time: the
// total, then each phase.
var FirstFrameTimes = func() []Distribution {
	out := []Distribution{{Kind: "first_frame", Field: "total_ms"}}
	for _, p := range FirstFramePhases {
		out = append(out, Distribution{Kind: "first_frame", Field: p + "_ms"})
	}
	return out
}()

// Latency is the heartbeat's end-to-end live latency.
var Latency = Distribution{Kind: "heartbeat", Field: "latency_ms", Round3: true}

// ValueSQL is the value a distribution counts for an events row, for rows
// where the field is not NULL.
func (d *Distribution) ValueSQL() string {
	v := "assumeNotNull(" + d.Field + ")"
	if d.Round3 {
		return Round3SQL(v)
	}
	return v
}

// Round3SQL rounds a non-negative whole number to three significant digits,
// half up: 1234 → 1230, 98765 → 98800. Go's query.round3 is the same.
func Round3SQL(x string) string {
	return fmt.Sprintf("multiIf(%[1]s < 1000, %[1]s, %[1]s < 10000, intDiv(%[1]s + 5, 10) * 10, %[1]s < 100000, intDiv(%[1]s + 50, 100) * 100, %[1]s < 1000000, intDiv(%[1]s + 500, 1000) * 1000, intDiv(%[1]s + 5000, 10000) * 10000)", x)
}

// aggColumn is a column of a rollup family: its type, its aggregate over
// events rows, and its aggregate over the finer rollup's rows.
type aggColumn struct {
	Name, Type, FromEvents, FromFiner string
}

func sumsColumns() []aggColumn {
	cols := []aggColumn{{"rows", "SimpleAggregateFunction(sum, UInt64)", "count()", "sum(rows)"}}
	for _, m := range Measures {
		cols = append(cols, aggColumn{m.Name, "SimpleAggregateFunction(sum, Float64)", m.SumSQL(true), "sum(" + m.Name + ")"})
	}
	return cols
}

func latencyColumns() []aggColumn {
	d := Latency
	return []aggColumn{
		{"rows", "SimpleAggregateFunction(sum, UInt64)", "count()", "sum(rows)"},
		{"w", "SimpleAggregateFunction(sum, Float64)", "sum(" + Weight + ")", "sum(w)"},
		{"q", "AggregateFunction(quantileExactWeighted, Int64, UInt64)",
			fmt.Sprintf("quantileExactWeightedState(%s, %s)", d.ValueSQL(), QuantileWeight), "quantileExactWeightedMergeState(q)"},
	}
}

// RollupsVersion is the migration that last rebuilt the rollups:
// RollupMigration renders it.
const RollupsVersion = 9

// RollupMigration renders migration 0009 from the definitions above (0002
// and 0008, which built the rollups before, are released and stay as they
// were); the checked-in file must equal it (see
// TestRollupMigrationUpToDate). Once released, a change here goes into a
// new migration.
func RollupMigration() string {
	var b strings.Builder
	b.WriteString("-- 0009_qoe_rollups_fps_latency: the sums rollups with the frame-rate measures, and the latency\n")
	b.WriteString("-- rollups keyed by room_id and stream_id too. Generated from schemas/catalog.go and schemas/rollup.go\n")
	b.WriteString("-- by `go generate ./schemas`; see docs/metrics.md.\n")
	b.WriteString("-- The rebuilt tables are dropped and summarised again from the events table (they hold nothing the\n")
	b.WriteString("-- events do not, and have the same retention). A rerun after a crash drops and rebuilds again;\n")
	b.WriteString("-- migrations run before the processor starts, so nothing else writes meanwhile.\n")
	b.WriteString(ColumnsMigration(RollupsVersion))
	sumsWhere := fmt.Sprintf("log_type IN (%s)", kindList())
	latWhere := fmt.Sprintf("log_type = '%s' AND %s IS NOT NULL", Latency.Kind, Latency.Field)
	var sts []string
	// Hourly views first: each feeds on its minute table.
	for _, v := range []string{SumsRollups[1].View, SumsRollups[0].View, LatencyRollups[1].View, LatencyRollups[0].View} {
		sts = append(sts, "DROP VIEW IF EXISTS "+v)
	}
	for _, t := range []string{SumsRollups[0].Table, SumsRollups[1].Table, LatencyRollups[0].Table, LatencyRollups[1].Table} {
		sts = append(sts, "DROP TABLE IF EXISTS "+t)
	}
	sts = append(sts, family(SumsRollups, sumsColumns(), sumsWhere)...)
	sts = append(sts, family(LatencyRollups, latencyColumns(), latWhere)...)
	for _, st := range sts {
		b.WriteString("\n")
		b.WriteString(st)
		b.WriteString(";\n")
	}
	return b.String()
}

// family renders a minute rollup fed by events and an hourly one fed by it:
// both tables, the hourly view before the minute one (so the backfill of the
// minute table reaches it), then the backfill.
func family(rs []Rollup, cols []aggColumn, where string) []string {
	minute, hour := rs[0], rs[1]
	sel := func(guard string) string { return rollupSelect(minute, cols, where+and(guard)) }
	return []string{
		rollupTableDDL(minute, cols),
		rollupTableDDL(hour, cols),
		fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s TO %s AS\n%s", hour.View, hour.Table, rollupSelect(hour, cols, "")),
		fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s TO %s AS\n%s", minute.View, minute.Table, sel("")),
		backfillSQL(minute.Table, sel),
	}
}

// rollupSettings give every rollup the events table's deduplication window:
// a retried insert into events (same insert_deduplication_token) pushes its
// block to the views again, and each rollup drops the copy by the token the
// view derives from it. Without the window the retry would count twice.
const rollupSettings = "SETTINGS non_replicated_deduplication_window = 10000"

func rollupTableDDL(r Rollup, cols []aggColumn) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s\n(\n", r.Table)
	if r.Kind {
		b.WriteString("    kind LowCardinality(String),\n")
	}
	fmt.Fprintf(&b, "    %s DateTime('UTC')", r.Time)
	for _, d := range r.Dims {
		fmt.Fprintf(&b, ",\n    %s LowCardinality(String)", d)
	}
	for _, c := range cols {
		fmt.Fprintf(&b, ",\n    %s %s", c.Name, c.Type)
	}
	b.WriteString("\n)\nENGINE = AggregatingMergeTree\n")
	// Day partitions for minutes, month partitions for hours: either way a
	// partition holds tens of thousands of buckets, not a handful.
	if r.Grain < 3600 {
		fmt.Fprintf(&b, "PARTITION BY toYYYYMMDD(%s)\n", r.Time)
	} else {
		fmt.Fprintf(&b, "PARTITION BY toYYYYMM(%s)\n", r.Time)
	}
	// app_id leads (an app's dashboards read one app), then time.
	var key []string
	if r.Kind {
		key = append(key, "kind")
	}
	key = append(key, "app_id", r.Time)
	for _, d := range r.Dims {
		if d != "app_id" {
			key = append(key, d)
		}
	}
	fmt.Fprintf(&b, "ORDER BY (%s)\n", strings.Join(key, ", "))
	fmt.Fprintf(&b, "TTL %s + INTERVAL %s DAY\n%s", r.Time, TTLPlaceholder, rollupSettings)
	return b.String()
}

// rollupSelect aggregates rows of r's source (events, or the finer rollup)
// into r's rows.
func rollupSelect(r Rollup, cols []aggColumn, where string) string {
	var b strings.Builder
	b.WriteString("SELECT\n")
	keys := []string{r.Time}
	if r.Kind {
		if r.From == "" {
			b.WriteString("    log_type AS kind,\n")
		} else {
			b.WriteString("    kind,\n")
		}
		keys = []string{"kind", r.Time}
	}
	src, bucket := EventsTable, "toStartOfMinute(ts)"
	if r.From != "" {
		src, bucket = r.From, "toStartOfHour(minute)"
	}
	fmt.Fprintf(&b, "    %s AS %s", bucket, r.Time)
	for _, d := range r.Dims {
		if e := DimByName[d].Expr(); r.From == "" && e != d {
			fmt.Fprintf(&b, ",\n    %s AS %s", e, d)
		} else {
			fmt.Fprintf(&b, ",\n    %s", d)
		}
	}
	for _, c := range cols {
		agg := c.FromEvents
		if r.From != "" {
			agg = c.FromFiner
		}
		fmt.Fprintf(&b, ",\n    %s AS %s", agg, c.Name)
	}
	fmt.Fprintf(&b, "\nFROM %s\n", src)
	if where != "" {
		fmt.Fprintf(&b, "WHERE %s\n", where)
	}
	fmt.Fprintf(&b, "GROUP BY %s, %s", strings.Join(keys, ", "), strings.Join(r.Dims, ", "))
	return b.String()
}

func kindList() string {
	q := make([]string, len(RollupKinds))
	for i, k := range RollupKinds {
		q[i] = "'" + k + "'"
	}
	return strings.Join(q, ", ")
}

func and(cond string) string {
	if cond == "" {
		return ""
	}
	return " AND " + cond
}

// firstFrameColumns are the columns of qoe_first_frame, in events' order.
func firstFrameColumns() []string {
	cols := append([]string{"ts"}, CommonDims...)
	cols = append(cols, "sample_rate")
	for _, d := range FirstFrameTimes {
		cols = append(cols, d.Field)
	}
	return cols
}

func firstFrameTableDDL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s\n(\n", FirstFrameTable)
	for i, c := range firstFrameColumns() {
		f := EventColumns[EventColumnIndex[c]]
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "    %s %s", c, ColumnType(&f))
	}
	b.WriteString("\n)\nENGINE = MergeTree\nPARTITION BY toYYYYMMDD(ts)\nORDER BY (app_id, ts)\n")
	fmt.Fprintf(&b, "TTL toDateTime(ts) + INTERVAL %s DAY\n%s", TTLPlaceholder, rollupSettings)
	return b.String()
}

func firstFrameSelect(guard string) string {
	return fmt.Sprintf("SELECT %s\nFROM %s\nWHERE log_type = 'first_frame'%s",
		strings.Join(firstFrameColumns(), ", "), EventsTable, and(guard))
}

func firstFrameViewDDL() string {
	return fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s TO %s AS\n%s", FirstFrameView, FirstFrameTable, firstFrameSelect(""))
}

// backfillSQL fills table from the events stored before its view existed,
// unless table already has rows.
func backfillSQL(table string, sel func(guard string) string) string {
	return fmt.Sprintf("INSERT INTO %s\n%s", table, sel(fmt.Sprintf("(SELECT count() FROM %s) = 0", table)))
}
