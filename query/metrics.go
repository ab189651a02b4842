package query

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Limits of GET /api/v1/metrics.
const (
	defaultMetricsWindow = time.Hour
	// maxPoints bounds the buckets of a series: a day of minutes.
	maxPoints = 1440
	// maxRawWindow bounds what the raw-event path scans: the rollups serve
	// anything longer.
	maxRawWindow       = 24 * time.Hour
	defaultSeriesLimit = 100
	maxSeriesLimit     = 10_000
)

// niceSteps are the steps a default is chosen from.
var niceSteps = []time.Duration{
	10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// defaultStep picks the smallest nice step that gives at most 300 points; a
// minute at least for windows of an hour or more, so that the rollup serves
// them.
func defaultStep(window time.Duration) time.Duration {
	for _, s := range niceSteps {
		if window >= time.Hour && s < time.Minute {
			continue
		}
		if window <= 300*s {
			return s
		}
	}
	return niceSteps[len(niceSteps)-1]
}

// MetricsAnswer is the body of GET /api/v1/metrics.
type MetricsAnswer struct {
	Metric   string              `json:"metric"`
	Unit     string              `json:"unit"`
	Quantile *float64            `json:"quantile,omitempty"`
	Phase    string              `json:"phase,omitempty"`
	From     time.Time           `json:"from"`
	To       time.Time           `json:"to"`
	Step     string              `json:"step"`
	StepMs   int64               `json:"step_ms"`
	Source   string              `json:"source"` // "raw" or "rollup"
	Table    string              `json:"table"`
	GroupBy  []string            `json:"group_by"`
	Filters  map[string][]string `json:"filters"`
	Series   []Series            `json:"series"`
	// Groups is how many groups had data; when more than limit, only the
	// limit with the most samples are in Series and Truncated is set.
	Groups    int  `json:"groups"`
	Truncated bool `json:"truncated,omitempty"`
}

// Series is one group's time series and its total over the window.
type Series struct {
	Group  map[string]string `json:"group"`
	Points []Point           `json:"points"`
	Total  *float64          `json:"total"`
	// Samples is how many stored events the total rests on, before
	// re-weighting: a rate over 3 samples is noise.
	Samples int64 `json:"samples"`
}

// Point is [bucket start in ms since the epoch, value]; value is null when
// the bucket has nothing to compute a rate or quantile from.
type Point struct {
	T int64
	V *float64
}

// MarshalJSON writes [t, v].
func (p Point) MarshalJSON() ([]byte, error) {
	b := strconv.AppendInt([]byte{'['}, p.T, 10)
	b = append(b, ',')
	if p.V == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendFloat(b, *p.V, 'g', -1, 64)
	}
	return append(b, ']'), nil
}

// UnmarshalJSON reads [t, v].
func (p *Point) UnmarshalJSON(b []byte) error {
	var raw [2]*float64
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw[0] == nil {
		return fmt.Errorf("point without a time: %s", b)
	}
	p.T, p.V = int64(*raw[0]), raw[1]
	return nil
}

// metricsRequest is a parsed and validated request.
type metricsRequest struct {
	m        *metric
	dist     *schemas.Distribution
	phase    string
	level    float64
	from, to time.Time
	step     time.Duration
	groupBy  []string
	filters  []filter
	read     string // auto, raw or rollup
	limit    int
	src      source
}

type filter struct {
	Dim    string
	Values []string
}

func (req *metricsRequest) filterDims() []string {
	var out []string
	for _, f := range req.filters {
		out = append(out, f.Dim)
	}
	return out
}

// metricsParams are the parameters besides the dimension filters.
var metricsParams = []string{"metric", "from", "to", "since", "step", "group_by", "quantile", "phase", "read", "limit"}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	req, err := parseMetricsRequest(newParams(r.URL.Query(), time.Now()))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	t0 := time.Now()
	ans, err := runMetrics(r.Context(), s.store, req)
	if err != nil {
		level.Error(s.logger).Log("msg", "metrics query failed", "metric", req.m.Name, "err", err)
		writeError(w, http.StatusInternalServerError, "metrics query failed: %v", err)
		return
	}
	level.Debug(s.logger).Log("msg", "metrics", "metric", req.m.Name, "source", ans.Table, "series", len(ans.Series), "took", time.Since(t0))
	writeJSON(w, http.StatusOK, ans)
}

func parseMetricsRequest(p *params) (*metricsRequest, error) {
	// Mark every known name first, so that an unknown one is reported as
	// such even when another parameter is also wrong.
	for _, n := range metricsParams {
		p.has(n)
	}
	for _, d := range schemas.RollupDims {
		p.has(d)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	req := &metricsRequest{read: "auto"}
	name := p.get("metric")
	if name == "" {
		return nil, fmt.Errorf("metric is required; metrics: %s", strings.Join(metricNames(), ", "))
	}
	if req.m = metricsByName[name]; req.m == nil {
		return nil, fmt.Errorf("unknown metric %q; metrics: %s", name, strings.Join(metricNames(), ", "))
	}
	from, to, err := p.window(defaultMetricsWindow, 0)
	if err != nil {
		return nil, err
	}
	if req.step, err = parseStep(p.get("step"), to.Sub(from)); err != nil {
		return nil, err
	}
	// Whole buckets only: a bucket's value never depends on where the window
	// happened to start, and the minute rollups cover every bucket exactly.
	req.from = truncTime(from, req.step)
	req.to = truncTime(to.Add(req.step-time.Millisecond), req.step)
	if n := int(req.to.Sub(req.from) / req.step); n > maxPoints {
		return nil, fmt.Errorf("step %s over %s gives %d points, more than the %d allowed: use a larger step",
			fmtDuration(req.step), fmtDuration(to.Sub(from)), n, maxPoints)
	}
	if req.groupBy, err = parseGroupBy(p.get("group_by")); err != nil {
		return nil, err
	}
	for _, d := range schemas.RollupDims {
		if _, ok := p.v[d]; ok {
			req.filters = append(req.filters, filter{Dim: d, Values: strings.Split(p.get(d), ",")})
		}
	}
	if err := req.checkDimKinds(); err != nil {
		return nil, err
	}
	if err := req.parseQuantile(p.get("quantile"), p.get("phase")); err != nil {
		return nil, err
	}
	switch req.read = p.get("read"); req.read {
	case "":
		req.read = "auto"
	case "auto", "raw", "rollup":
	default:
		return nil, fmt.Errorf("read=%q: want auto, raw or rollup", req.read)
	}
	if req.limit, err = p.intParam("limit", defaultSeriesLimit, 1, maxSeriesLimit); err != nil {
		return nil, err
	}
	if req.src, err = req.source(); err != nil {
		return nil, err
	}
	return req, nil
}

func parseStep(s string, window time.Duration) (time.Duration, error) {
	if s == "" {
		return defaultStep(window), nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("step=%q: want a duration such as 1m, 5m, 1h or 1d", s)
	}
	if d < time.Second || d%time.Second != 0 {
		return 0, fmt.Errorf("step=%q: want a whole number of seconds, at least 1s", s)
	}
	return d, nil
}

// truncTime rounds t down to a multiple of step since the epoch, so that
// buckets are the same whoever asks (days start at 00:00 UTC).
func truncTime(t time.Time, step time.Duration) time.Time {
	ms, sm := t.UnixMilli(), step.Milliseconds()
	return time.UnixMilli(ms - ((ms%sm)+sm)%sm).UTC()
}

func parseGroupBy(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d == "" || seen[d] {
			continue
		}
		if !isDim(d) {
			return nil, fmt.Errorf("unknown group_by dimension %q; dimensions: %s", d, strings.Join(schemas.RollupDims, ", "))
		}
		seen[d] = true
		out = append(out, d)
	}
	return out, nil
}

func isDim(d string) bool { return schemas.DimByName[d] != nil }

// checkDimKinds refuses a dimension of one log_type (a play_stop's code) on
// a metric that reads another: every row would have it empty.
func (req *metricsRequest) checkDimKinds() error {
	check := func(use, d string) error {
		k := schemas.DimByName[d].Kind
		if k == "" || k == req.m.Kind {
			return nil
		}
		var ok []string
		for _, m := range metricList {
			if m.Kind == k {
				ok = append(ok, m.Name)
			}
		}
		sort.Strings(ok)
		return fmt.Errorf("%s %s applies to the metrics that read %s (%s), not %s, which reads %s",
			use, d, k, strings.Join(ok, ", "), req.m.Name, req.m.Kind)
	}
	for _, d := range req.groupBy {
		if err := check("group_by", d); err != nil {
			return err
		}
	}
	for _, f := range req.filters {
		if err := check("filter", f.Dim); err != nil {
			return err
		}
	}
	return nil
}

func (req *metricsRequest) parseQuantile(q, phase string) error {
	m := req.m
	if !m.quantile() {
		if q != "" || phase != "" {
			return fmt.Errorf("quantile and phase apply to quantile metrics (video_startup_time, live_latency), not %s", m.Name)
		}
		return nil
	}
	req.level = 0.5
	if q != "" {
		v, ok := parseLevel(q)
		if !ok {
			return fmt.Errorf("quantile=%q: want a level in [0, 1] such as 0.95, or p95", q)
		}
		req.level = v
	}
	req.dist = &m.Dists[0]
	if phase != "" {
		if len(m.Phases) == 0 {
			return fmt.Errorf("phase applies to video_startup_time, not %s", m.Name)
		}
		i := indexOf(m.Phases, phase)
		if i < 0 {
			return fmt.Errorf("phase=%q: want one of %s", phase, strings.Join(m.Phases, ", "))
		}
		req.dist, req.phase = &m.Dists[i], phase
	} else if len(m.Phases) > 0 {
		req.phase = m.Phases[0]
	}
	return nil
}

// parseLevel reads 0.95 or p95 (p99.9 too).
func parseLevel(s string) (float64, bool) {
	scale := 1.0
	if rest, ok := strings.CutPrefix(s, "p"); ok {
		s, scale = rest, 100
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) {
		return 0, false
	}
	v /= scale
	return v, v >= 0 && v <= 1
}

func indexOf(xs []string, x string) int {
	for i, s := range xs {
		if s == x {
			return i
		}
	}
	return -1
}

// A source is where a metric is computed from: raw events, the first-frame
// copy, or an aggregated rollup.
type source struct {
	table  string
	rollup *schemas.Rollup // set for the aggregated rollups
}

func (s source) raw() bool { return s.table == schemas.EventsTable }

// latencyTable reports whether the source holds latency quantile states.
func (s source) latencyTable() bool {
	return s.rollup != nil && !s.rollup.Kind
}

// coarsest returns the rollup with the longest grain that divides step.
func coarsest(rs []schemas.Rollup, step time.Duration) *schemas.Rollup {
	var best *schemas.Rollup
	for i := range rs {
		if step%(time.Duration(rs[i].Grain)*time.Second) == 0 {
			best = &rs[i]
		}
	}
	return best
}

// source applies the raw-or-rollup rule. The finest rollups have one-minute
// buckets, so a step that is a whole number of minutes is served from the
// rollups (the window is already cut to whole steps), whatever the window:
// from the hourly tables when the step is whole hours, the minute tables
// otherwise. A finer step reads raw events, and so does read=raw, for at
// most maxRawWindow. live_latency grouped or filtered by a dimension its
// rollup lacks reads raw heartbeats too.
func (req *metricsRequest) source() (source, error) {
	whole := req.step%time.Minute == 0
	useRollup := false
	// Latency is rolled up by the dimensions of delivery only.
	latDims := schemas.LatencyRollups[0].Dims
	covered := !req.m.RawOnly && (!req.m.quantile() || req.dist.Kind != schemas.Latency.Kind ||
		schemas.LatencyRollups[0].Covers(append(req.filterDims(), req.groupBy...)))
	switch req.read {
	case "auto":
		useRollup = whole && covered
	case "rollup":
		if !whole {
			return source{}, fmt.Errorf("read=rollup: the rollups have one-minute buckets, so step must be a whole number of minutes, not %s", fmtDuration(req.step))
		}
		if req.m.RawOnly {
			return source{}, fmt.Errorf("read=rollup: %s is not rolled up", req.m.Name)
		}
		if !covered {
			return source{}, fmt.Errorf("read=rollup: the latency rollup is kept by %s only", strings.Join(latDims, ", "))
		}
		useRollup = true
	}
	if !useRollup {
		if w := req.to.Sub(req.from); w > maxRawWindow {
			why := "a step under a minute (or read=raw) reads raw events"
			switch {
			case req.m.RawOnly:
				why = req.m.Name + " is not rolled up: it reads raw events"
			case !covered:
				why = fmt.Sprintf("live_latency by a dimension other than %s reads raw heartbeats", strings.Join(latDims, ", "))
			}
			return source{}, fmt.Errorf("%s, for windows of at most %s, not %s", why, fmtDuration(maxRawWindow), fmtDuration(w))
		}
		return source{table: schemas.EventsTable}, nil
	}
	var r *schemas.Rollup
	switch {
	case !req.m.quantile():
		r = coarsest(schemas.SumsRollups, req.step)
	case req.dist.Kind == "first_frame":
		return source{table: schemas.FirstFrameTable}, nil
	default:
		r = coarsest(schemas.LatencyRollups, req.step)
	}
	return source{table: r.Table, rollup: r}, nil
}

// sql builds the one query that answers req from src: every bucket of every
// group, plus each group's total over the window. Values are computed in Go
// from the sums (or the quantile) it returns.
func (req *metricsRequest) sql(src source) string {
	stepMs := req.step.Milliseconds()
	var where []string
	var bucket string
	if r := src.rollup; r != nil {
		bucket = fmt.Sprintf("intDiv(toUnixTimestamp(%s), %d) * %d", r.Time, stepMs/1000, stepMs)
		where = append(where, fmt.Sprintf("%s >= toDateTime(%d, 'UTC') AND %s < toDateTime(%d, 'UTC')",
			r.Time, req.from.Unix(), r.Time, req.to.Unix()))
		if r.Kind {
			where = append([]string{"kind = " + sqlString(req.m.Kind)}, where...)
		}
	} else { // events and the first-frame copy have the raw ts
		bucket = fmt.Sprintf("intDiv(toUnixTimestamp64Milli(ts), %d) * %d", stepMs, stepMs)
		where = append(where, "ts >= "+sqlTime(req.from)+" AND ts < "+sqlTime(req.to))
		if src.raw() {
			where = append([]string{"log_type = " + sqlString(req.m.Kind)}, where...)
		}
		if req.m.quantile() {
			// Only rows with a value count, as in the latency rollup.
			where = append(where, req.dist.Field+" IS NOT NULL")
		}
	}
	// A rollup has each dimension as a column; events and the first-frame
	// copy compute the ones that are expressions.
	dim := func(d string) string {
		if src.rollup != nil {
			return d
		}
		return schemas.DimByName[d].Expr()
	}
	for _, f := range req.filters {
		q := make([]string, len(f.Values))
		for i, v := range f.Values {
			q[i] = sqlString(v)
		}
		where = append(where, fmt.Sprintf("%s IN (%s)", dim(f.Dim), strings.Join(q, ", ")))
	}

	// Two levels: partial aggregates per bucket and group, then the
	// buckets and the window's totals from those (GROUPING SETS). Merging
	// a day of hourly partials is much cheaper than aggregating every row
	// twice; it halved a 24 h quantile query over 1.8M first frames.
	inner := []string{bucket + " AS bucket_ms"}
	for _, d := range req.groupBy {
		if e := dim(d); e != d {
			inner = append(inner, e+" AS "+d)
		} else {
			inner = append(inner, d)
		}
	}
	outer := append(append([]string{"bucket_ms"}, req.groupBy...), "grouping(bucket_ms) AS is_total", "sum(samples) AS samples")
	lvl := strconv.FormatFloat(req.level, 'g', -1, 64)
	switch {
	case src.latencyTable():
		inner = append(inner, "toFloat64(sum(rows)) AS samples", "sum(w) AS qn", "quantileExactWeightedMergeState(q) AS st")
	case req.m.quantile(): // raw events or the first-frame copy
		inner = append(inner, "toFloat64(count()) AS samples", fmt.Sprintf("sum(%s) AS qn", schemas.Weight),
			fmt.Sprintf("quantileExactWeightedState(%s, %s) AS st", req.dist.ValueSQL(), schemas.QuantileWeight))
	case src.rollup != nil:
		inner = append(inner, "toFloat64(sum(rows)) AS samples")
		for _, name := range req.m.measures() {
			inner = append(inner, fmt.Sprintf("sum(%s) AS m_%s", name, name))
		}
	default:
		inner = append(inner, "toFloat64(count()) AS samples")
		for _, name := range req.m.measures() {
			inner = append(inner, fmt.Sprintf("%s AS m_%s", schemas.MeasureByName[name].SumSQL(false), name))
		}
	}
	if req.m.quantile() {
		outer = append(outer, "sum(qn) AS qn", fmt.Sprintf("toFloat64(quantileExactWeightedMerge(%s)(st)) AS q", lvl))
	} else {
		for _, name := range req.m.measures() {
			outer = append(outer, fmt.Sprintf("sum(m_%s) AS m_%s", name, name))
		}
	}
	keys := strings.Join(append([]string{"bucket_ms"}, req.groupBy...), ", ")
	return fmt.Sprintf("SELECT %s\nFROM (\n    SELECT %s\n    FROM %s\n    WHERE %s\n    GROUP BY %s\n)\nGROUP BY GROUPING SETS ((%s), (%s))",
		strings.Join(outer, ", "), strings.Join(inner, ", "), src.table, strings.Join(where, " AND "), keys, keys, strings.Join(req.groupBy, ", "))
}

// sums are what the query returns for one bucket (or total) of one group.
type sums struct {
	samples  float64
	measures map[string]float64
	q, qn    float64
}

func (req *metricsRequest) value(s *sums, lengthMs int64) *float64 {
	m := req.m
	if s == nil {
		if m.quantile() || len(m.Den) > 0 {
			return nil
		}
		z := 0.0
		return &z
	}
	if m.quantile() {
		if s.qn <= 0 {
			return nil
		}
		return &s.q
	}
	add := func(ts []term) float64 {
		var x float64
		for _, t := range ts {
			x += t.Sign * s.measures[t.Measure]
		}
		return x
	}
	num := add(m.Num)
	var v float64
	switch {
	case m.PerTime:
		v = num / float64(lengthMs)
	case len(m.Den) == 0:
		v = m.Scale * num
	default:
		den := add(m.Den)
		if den <= 0 {
			return nil
		}
		v = m.Scale * num / den
	}
	return &v
}

// Metrics computes a metric without HTTP: q holds the parameters of GET
// /api/v1/metrics (metric, from, to, step, group_by, filters, ...) and now is
// what relative times and the default window end are read against. The alert
// evaluator calls it, so that an alert and the metrics API agree on every
// number.
func Metrics(ctx context.Context, st Store, q url.Values, now time.Time) (*MetricsAnswer, error) {
	req, err := parseMetricsRequest(newParams(q, now))
	if err != nil {
		return nil, err
	}
	return runMetrics(ctx, st, req)
}

// CheckMetrics validates the parameters of a metrics request as Metrics
// would, without running it.
func CheckMetrics(q url.Values) error {
	_, err := parseMetricsRequest(newParams(q, time.Now()))
	return err
}

func runMetrics(ctx context.Context, st Store, req *metricsRequest) (*MetricsAnswer, error) {
	src := req.src
	out, err := st.QueryJSON(ctx, req.sql(src))
	if err != nil {
		return nil, err
	}
	type acc struct {
		group  []string
		points map[int64]*sums
		total  *sums
	}
	groups := map[string]*acc{}
	var order []*acc
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	for dec.More() {
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("decode metrics rows: %w", err)
		}
		g := make([]string, len(req.groupBy))
		for i, d := range req.groupBy {
			g[i], _ = row[d].(string)
		}
		key := strings.Join(g, "\x00")
		a := groups[key]
		if a == nil {
			a = &acc{group: g, points: map[int64]*sums{}}
			groups[key] = a
			order = append(order, a)
		}
		s := &sums{measures: map[string]float64{}}
		var bucket float64
		for k, v := range row {
			x, err := jsonFloat(v)
			switch {
			case k == "is_total" || indexOf(req.groupBy, k) >= 0:
				continue
			case err != nil:
				return nil, fmt.Errorf("metrics row %s: %w", k, err)
			case k == "bucket_ms":
				bucket = x
			case k == "samples":
				s.samples = x
			case k == "q":
				s.q = x
			case k == "qn":
				s.qn = x
			default:
				s.measures[strings.TrimPrefix(k, "m_")] = x
			}
		}
		if t, _ := jsonFloat(row["is_total"]); t == 1 {
			a.total = s
		} else {
			a.points[int64(bucket)] = s
		}
	}

	ans := &MetricsAnswer{
		Metric: req.m.Name, Unit: req.m.Unit, Phase: req.phase,
		From: req.from, To: req.to, Step: fmtDuration(req.step), StepMs: req.step.Milliseconds(),
		Source: "raw", Table: src.table, GroupBy: req.groupBy, Filters: map[string][]string{},
		Groups: len(order), Series: []Series{},
	}
	if !src.raw() {
		ans.Source = "rollup"
	}
	if ans.GroupBy == nil {
		ans.GroupBy = []string{}
	}
	if req.m.quantile() {
		l := req.level
		ans.Quantile = &l
	}
	for _, f := range req.filters {
		ans.Filters[f.Dim] = f.Values
	}
	if len(order) > req.limit {
		sort.SliceStable(order, func(i, j int) bool { return samplesOf(order[i].total) > samplesOf(order[j].total) })
		order, ans.Truncated = order[:req.limit], true
	}
	sort.Slice(order, func(i, j int) bool { return lessStrings(order[i].group, order[j].group) })
	stepMs := req.step.Milliseconds()
	for _, a := range order {
		s := Series{Group: map[string]string{}, Total: req.value(a.total, req.to.Sub(req.from).Milliseconds())}
		for i, d := range req.groupBy {
			s.Group[d] = a.group[i]
		}
		s.Samples = int64(samplesOf(a.total))
		for t := req.from.UnixMilli(); t < req.to.UnixMilli(); t += stepMs {
			s.Points = append(s.Points, Point{T: t, V: req.value(a.points[t], stepMs)})
		}
		ans.Series = append(ans.Series, s)
	}
	return ans, nil
}

func samplesOf(s *sums) float64 {
	if s == nil {
		return 0
	}
	return s.samples
}

func lessStrings(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// jsonFloat reads a number ClickHouse wrote, quoted or not.
func jsonFloat(v any) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		return x.Float64()
	case string:
		return strconv.ParseFloat(x, 64)
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

// fmtDuration prints a duration the way the API takes it: 90s, 5m, 1h30m, 2d.
func fmtDuration(d time.Duration) string {
	if d <= 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		s string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.s)
			d -= n * u.d
		}
	}
	return b.String()
}
