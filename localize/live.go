package localize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// KPILowFrameRate is the share of frames missing from what viewers should
// have seen: a frame rate well below the usual (a push uplink that cannot
// carry the stream, a transcode that falls behind). Live only.
const KPILowFrameRate = "low_frame_rate"

// LiveKPIs are the KPIs the live localizer watches, in report order.
var LiveKPIs = []string{KPIStartFailure, KPIPlaybackFailure, KPISlowStart, KPIRebuffering, KPIRenderStall, KPILowFrameRate}

// decideScope fills an incident's Scope, Evidence and RuledOut from its
// cohort and the server logs (the scope verdict, localize/scope.go).
var decideScope func(ctx context.Context, st Store, inc *Incident) error

// LivePlan holds every choice of the live localizer as a field: where it
// reads, how it cuts time, what it expects, when an anomaly counts.
// DefaultLivePlan is tuned on real scenario runs (docs/localize.md).
//
// The method (docs/localize.md, "Live localization"): per KPI and time
// bucket, the sums per dimension value give the bucket's expected ratio:
// the robust ratio of its peers (per dimension, a low weighted quantile of
// its values' ratios; the least of those, so that a cohort that rose does
// not lift its own expectation), capped by the median whole-population
// ratio of the range's buckets (own history: an everyone-at-once rise is
// not its own baseline), and never below the KPI's absolute floor (a quiet
// period, where the ratio is near zero, yields nothing). The buckets and
// dimensions where a value stands out are searched with Plan.Search on
// their leaves; causes of consecutive buckets with the same KPI and cohort
// merge into one incident.
type LivePlan struct {
	// Search is the root-cause search run on each bucket's leaves.
	Search Plan
	// Attrs are the dimensions a cause may combine: those of qoe_1m that
	// can be a cause. Context maps a dimension to others the cohort report
	// adds when they have one value in it (a node's CDN and region, a
	// stream's room); dimensions only in Context are read, not searched.
	Attrs   []string
	Context map[string][]string

	// RawWindow: ranges up to this long read raw events, in RawBucket
	// buckets; longer ones read the qoe_1m rollup, by the minute.
	RawWindow time.Duration
	RawBucket time.Duration

	// PeerQuantile is the quantile of an attribute's values' ratios
	// (weighted by their denominators) that the peers' ratio is.
	PeerQuantile float64
	// Floor is each KPI's least expected ratio.
	Floor map[string]float64
	// SlowStartFactor, SlowStartMinMs: a first frame is slow when its
	// total time exceeds both SlowStartFactor times the median of its
	// protocol's first frames in the range and SlowStartMinMs.
	SlowStartFactor float64
	SlowStartMinMs  float64
	// SlowStartStratum is a dimension whose values start at different
	// speeds by design (HLS waits for a segment, FLV does not): slow starts
	// are expected per value of it, each from its own peers and history
	// ("" for none).
	SlowStartStratum string
	// FrameUnitS is the viewing time, in seconds, that counts as one
	// sample of the low-frame-rate KPI (a heartbeat's interval), so its
	// counts are on the scale of the others'.
	FrameUnitS float64
	// LowFPSShare: the sessions a low-frame-rate incident names are those
	// with a heartbeat under this share of the usual frame rate.
	LowFPSShare float64
	// GateScore, GateDeviation: a bucket is searched, over an attribute,
	// when one of the attribute's values has a likelihood-ratio score of
	// at least GateScore and a relative rise of at least GateDeviation
	// against the attribute's other values (looser than the search's, so
	// that a finer cause diluted in its values still passes).
	GateScore     float64
	GateDeviation float64
	// GateSpread: a value also passes when it rose against the expected
	// ratio (GateScore, GateDeviation) and its ratio is at least
	// 1+GateSpread times its attribute's: another cause inflating the
	// attribute's other values (two faults at once) does not hide it.
	GateSpread float64
	// MinAffected is the least numerator (affected views) of an incident.
	MinAffected float64
	// MergeGap is how many empty buckets may lie between two buckets of one
	// incident.
	MergeGap int
	// MaxIncidents is the most incidents answered; Sessions the affected
	// sessions each names.
	MaxIncidents int
	Sessions     int
}

// DefaultLivePlan is the plan tuned on the scenario runs.
var DefaultLivePlan = LivePlan{
	Search: func() Plan {
		p := DefaultPlan
		p.MinSupport = 3
		p.MinScore = 8
		return p
	}(),
	Attrs: []string{"cdn", "region", "node_id", "isp", "app_version", "rendition", "stream_id", "protocol", "network", "os"},
	Context: map[string][]string{
		"node_id":   {"cdn", "region"},
		"stream_id": {"room_id"},
	},
	RawWindow:    15 * time.Minute,
	RawBucket:    30 * time.Second,
	PeerQuantile: 0.2,
	Floor: map[string]float64{
		KPIStartFailure:    0.02,
		KPIPlaybackFailure: 0.02,
		KPISlowStart:       0.03,
		KPIRebuffering:     0.05,
		KPIRenderStall:     0.03,
		KPILowFrameRate:    0.05,
	},
	SlowStartFactor:  3,
	SlowStartMinMs:   1000,
	SlowStartStratum: "protocol",
	FrameUnitS:       10,
	LowFPSShare:      0.5,
	GateScore:        5,
	GateDeviation:    0.1,
	GateSpread:       0.2,
	MinAffected:      3,
	MergeGap:         1,
	MaxIncidents:     10,
	Sessions:         3,
}

// LiveRequest is what to localize: a time range and optional filters.
type LiveRequest struct {
	From, To time.Time
	RoomID   string
	StreamID string
	AppID    string
	// KPI restricts the search to one KPI ("" for all of LiveKPIs).
	KPI string
}

// kpiDef says where a KPI's numerator and denominator come from: sums of
// schemas.Measures over play_stop rows; den "w" is their weighted count.
// The slow-start and low-frame-rate KPIs are computed in their own ways.
type kpiDef struct{ num, den string }

var kpiDefs = map[string]kpiDef{
	KPIStartFailure:    {"w_start_failed", "w"},
	KPIPlaybackFailure: {"w_play_failed", "w_started"},
	KPIRebuffering:     {"w_rebuffered", "w_started"},
	KPIRenderStall:     {"w_render_stalled", "w_started"},
}

// sumsMeasures are the measures the leaf query reads, in column order.
var sumsMeasures = []struct{ col, measure, kind string }{
	{"ps_w", "w", "play_stop"},
	{"w_start_failed", "w_start_failed", ""},
	{"w_play_failed", "w_play_failed", ""},
	{"w_started", "w_started", ""},
	{"w_rebuffered", "w_rebuffered", ""},
	{"w_render_stalled", "w_render_stalled", ""},
	{"w_frames_ms", "w_frames_ms", ""},
	{"w_fps_ms", "w_fps_ms", ""},
}

// Localize finds the anomalies of req's range and answers them as
// incidents, best first; none for a quiet range.
//
// It reads in two stages, so that a long range over many events stays
// cheap: first each bucket's sums per attribute value (the marginals),
// which give each bucket's expected ratio and show which buckets and
// attributes are anomalous (a value whose ratio stands out from its
// attribute's other values); then, for those buckets only, the leaves over
// those attributes, for the root-cause search.
func (lp LivePlan) Localize(ctx context.Context, st Store, req LiveRequest) ([]Incident, error) {
	if !req.To.After(req.From) {
		return nil, fmt.Errorf("empty range: from %s is not before to %s", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
	}
	if err := CheckKPI(req.KPI); err != nil {
		return nil, err
	}
	kpis := LiveKPIs
	if req.KPI != "" {
		kpis = []string{req.KPI}
	}
	rd := lp.newReadout(req)
	if err := lp.readMarginals(ctx, st, req, kpis, rd); err != nil {
		return nil, err
	}
	for _, kpi := range kpis {
		lp.gate(kpi, rd)
	}
	if err := lp.readLeaves(ctx, st, req, rd); err != nil {
		return nil, err
	}
	var found []Incident
	for _, kpi := range kpis {
		found = append(found, lp.merge(kpi, rd, lp.detect(kpi, rd))...)
	}
	slices.SortStableFunc(found, func(a, b Incident) int { return cmpDesc(a.Score, b.Score) })
	if len(found) > lp.MaxIncidents {
		found = found[:lp.MaxIncidents]
	}
	for i := range found {
		inc := &found[i]
		if err := lp.sessions(ctx, st, req, rd, inc); err != nil {
			return nil, err
		}
		if decideScope != nil {
			if err := decideScope(ctx, st, inc); err != nil {
				return nil, fmt.Errorf("scope of %s incident on %v: %w", inc.KPI, inc.Dims, err)
			}
		}
	}
	return found, nil
}

// CheckKPI checks a KPI name: one of LiveKPIs, or "" for all.
func CheckKPI(kpi string) error {
	if kpi != "" && !slices.Contains(LiveKPIs, kpi) {
		return fmt.Errorf("metric=%q: want one of %s", kpi, strings.Join(LiveKPIs, ", "))
	}
	return nil
}

// vc is a numerator and a denominator.
type vc struct{ v, c float64 }

// readout is what the store answered and what the gate made of it.
type readout struct {
	step    time.Duration
	buckets []int64
	attrs   []string
	values  [][]string
	index   []map[string]uint32
	ctx     map[string]map[string]map[string]bool // context dim → "dim\x00value" → its values
	slowMs  map[string]float64                    // protocol → slow first-frame threshold
	fpsRef  float64                               // the usual frame rate
	// marg[kpi][bucket][j][value id]: the marginal sums per attribute value.
	marg map[string]map[int64][]map[uint32]vc
	// rate[kpi][bucket]: the expected ratio; keep: the anomalous
	// attributes of a flagged bucket (empty: the whole population rose).
	rate map[string]map[int64]float64
	keep map[string]map[int64][]int
	// leaves[kpi][bucket]: the flagged buckets' leaves.
	leaves map[string]map[int64][]Leaf
}

func (lp LivePlan) newReadout(req LiveRequest) *readout {
	rd := &readout{
		step:   lp.RawBucket,
		attrs:  lp.Attrs,
		values: make([][]string, len(lp.Attrs)),
		index:  make([]map[string]uint32, len(lp.Attrs)),
		ctx:    map[string]map[string]map[string]bool{},
		slowMs: map[string]float64{},
		marg:   map[string]map[int64][]map[uint32]vc{},
		rate:   map[string]map[int64]float64{},
		keep:   map[string]map[int64][]int{},
		leaves: map[string]map[int64][]Leaf{},
	}
	if !lp.raw(req) {
		rd.step = time.Minute
	}
	for j := range rd.index {
		rd.index[j] = map[string]uint32{}
	}
	sec := int64(rd.step.Seconds())
	for b := req.From.Unix() / sec * sec; b < req.To.Unix(); b += sec {
		rd.buckets = append(rd.buckets, b)
	}
	return rd
}

func (rd *readout) id(j int, v string) uint32 {
	id, ok := rd.index[j][v]
	if !ok {
		id = uint32(len(rd.values[j]))
		rd.index[j][v] = id
		rd.values[j] = append(rd.values[j], v)
	}
	return id
}

func (rd *readout) addMarginal(kpi string, b int64, j int, val string, v, c float64) {
	if c <= 0 {
		return
	}
	byB := rd.marg[kpi]
	if byB == nil {
		byB = map[int64][]map[uint32]vc{}
		rd.marg[kpi] = byB
	}
	if byB[b] == nil {
		byB[b] = make([]map[uint32]vc, len(rd.attrs))
		for x := range byB[b] {
			byB[b][x] = map[uint32]vc{}
		}
	}
	id := rd.id(j, val)
	s := byB[b][j][id]
	byB[b][j][id] = vc{s.v + v, s.c + c}
}

func (rd *readout) addLeaf(kpi string, b int64, key []uint32, v, c float64) {
	if c <= 0 {
		return
	}
	byB := rd.leaves[kpi]
	if byB == nil {
		byB = map[int64][]Leaf{}
		rd.leaves[kpi] = byB
	}
	byB[b] = append(byB[b], Leaf{Key: key, V: v, C: c})
}

// raw reports whether the range reads raw events.
func (lp LivePlan) raw(req LiveRequest) bool { return req.To.Sub(req.From) <= lp.RawWindow }

// where is the WHERE clause of the range and filters over table.
func (lp LivePlan) where(req LiveRequest, timeCol string) string {
	conds := []string{
		fmt.Sprintf("%s >= %s AND %s < %s", timeCol, sqlTime(req.From), timeCol, sqlTime(req.To)),
	}
	for col, v := range map[string]string{"room_id": req.RoomID, "stream_id": req.StreamID, "app_id": req.AppID} {
		if v != "" {
			conds = append(conds, col+" = "+sqlString(v))
		}
	}
	slices.Sort(conds[1:])
	return strings.Join(conds, " AND ")
}

// source is where a query of the sums reads: its table with the WHERE
// clause, its bucket expression and its measure columns. Raw events and the
// rollup sum the same measures.
func (lp LivePlan) source(req LiveRequest, rd *readout) (from, bucket string, sel []string) {
	if lp.raw(req) {
		for _, m := range sumsMeasures {
			ms := *schemas.MeasureByName[m.measure]
			if m.kind != "" {
				ms.Kind = m.kind
			}
			sel = append(sel, ms.SumSQL(true)+" AS "+m.col)
		}
		return schemas.EventsTable + " WHERE log_type IN ('play_stop', 'heartbeat') AND " + lp.where(req, "ts"),
			fmt.Sprintf("toUnixTimestamp(toStartOfInterval(ts, INTERVAL %d SECOND))", int(rd.step.Seconds())), sel
	}
	for _, m := range sumsMeasures {
		if m.kind != "" {
			sel = append(sel, fmt.Sprintf("sumIf(%s, kind = '%s') AS %s", m.measure, m.kind, m.col))
		} else {
			sel = append(sel, fmt.Sprintf("sum(%s) AS %s", m.measure, m.col))
		}
	}
	return schemas.SumsRollups[0].Table + " WHERE kind IN ('play_stop', 'heartbeat') AND " + lp.where(req, "minute"), "toUnixTimestamp(minute)", sel
}

// attrPairs is the ARRAY JOIN list that turns a row into one row per
// attribute: (index, value).
func (lp LivePlan) attrPairs() string {
	ps := make([]string, len(lp.Attrs))
	for j, a := range lp.Attrs {
		ps[j] = fmt.Sprintf("(%d, %s)", j, a)
	}
	return "[" + strings.Join(ps, ", ") + "]"
}

// kpiValues maps one row of sums to each KPI's numerator and denominator.
func (lp LivePlan) kpiValues(r row, kpis []string, fpsRef float64, each func(kpi string, v, c float64)) {
	for _, kpi := range kpis {
		if d, ok := kpiDefs[kpi]; ok {
			den := r.num(d.den)
			if d.den == "w" {
				den = r.num("ps_w")
			}
			each(kpi, r.num(d.num), den)
		}
	}
	if slices.Contains(kpis, KPILowFrameRate) && fpsRef > 0 {
		// frames missing against the usual rate, in samples of FrameUnitS
		unit := lp.FrameUnitS * 1000
		ms := r.num("w_fps_ms")
		missing := max(0, fpsRef*ms-r.num("w_frames_ms")) / fpsRef
		each(KPILowFrameRate, missing/unit, ms/unit)
	}
}

// readMarginals reads each bucket's sums per attribute value, and the
// slow-start thresholds and usual frame rate they need.
func (lp LivePlan) readMarginals(ctx context.Context, st Store, req LiveRequest, kpis []string, rd *readout) error {
	if slices.ContainsFunc(kpis, func(k string) bool { return k != KPISlowStart }) {
		from, bucket, sel := lp.source(req, rd)
		rows, err := queryRows(ctx, st, fmt.Sprintf("SELECT %s AS b, a.1 AS j, a.2 AS val, %s FROM %s GROUP BY b, j, val",
			bucket, strings.Join(sel, ", "), strings.Replace(from, " WHERE ", " ARRAY JOIN "+lp.attrPairs()+" AS a WHERE ", 1)))
		if err != nil {
			return fmt.Errorf("reading the marginals: %w", err)
		}
		// the usual frame rate: the viewing-time-weighted median of the
		// attribute values'
		var fps []weighted
		for _, r := range rows {
			if ms := r.num("w_fps_ms"); ms > 0 {
				fps = append(fps, weighted{r.num("w_frames_ms") / ms, ms})
			}
		}
		rd.fpsRef = weightedMedian(fps)
		for _, r := range rows {
			b, j, val := int64(r.num("b")), int(r.num("j")), r.str("val")
			lp.kpiValues(r, kpis, rd.fpsRef, func(kpi string, v, c float64) { rd.addMarginal(kpi, b, j, val, v, c) })
		}
	}
	if slices.Contains(kpis, KPISlowStart) {
		if err := lp.readFirstFrameMarginals(ctx, st, req, rd); err != nil {
			return err
		}
	}
	return nil
}

// slowCond is the SQL of a slow first frame: slower than its protocol's
// threshold ("0" when there is none).
func (rd *readout) slowCond() string {
	var cases []string
	for p, thr := range rd.slowMs {
		cases = append(cases, fmt.Sprintf("protocol = %s, %g", sqlString(p), thr))
	}
	if len(cases) == 0 {
		return "0"
	}
	slices.Sort(cases)
	return fmt.Sprintf("total_ms > multiIf(%s, 1e18)", strings.Join(cases, ", "))
}

func (lp LivePlan) firstFrameBucket(rd *readout) string {
	return fmt.Sprintf("toUnixTimestamp(toStartOfInterval(ts, INTERVAL %d SECOND))", int(rd.step.Seconds()))
}

// readFirstFrameMarginals sets the slow thresholds from the range's
// medians per protocol and reads the slow-start marginals from the
// first-frame copy.
func (lp LivePlan) readFirstFrameMarginals(ctx context.Context, st Store, req LiveRequest, rd *readout) error {
	where := lp.where(req, "ts")
	meds, err := queryRows(ctx, st, fmt.Sprintf("SELECT protocol, quantileExactWeighted(0.5)(total_ms, %s) AS med FROM %s WHERE total_ms IS NOT NULL AND %s GROUP BY protocol",
		schemas.QuantileWeight, schemas.FirstFrameTable, where))
	if err != nil {
		return fmt.Errorf("reading first-frame medians: %w", err)
	}
	for _, m := range meds {
		rd.slowMs[m.str("protocol")] = max(lp.SlowStartMinMs, lp.SlowStartFactor*m.num("med"))
	}
	if len(meds) == 0 {
		return nil
	}
	stratum := "''"
	if lp.SlowStartStratum != "" {
		stratum = lp.SlowStartStratum
	}
	rows, err := queryRows(ctx, st, fmt.Sprintf("SELECT %s AS b, %s AS stratum, a.1 AS j, a.2 AS val, sum(%s) AS den, sumIf(%s, %s) AS num FROM %s ARRAY JOIN %s AS a WHERE total_ms IS NOT NULL AND %s GROUP BY b, stratum, j, val",
		lp.firstFrameBucket(rd), stratum, schemas.Weight, schemas.Weight, rd.slowCond(), schemas.FirstFrameTable, lp.attrPairs(), where))
	if err != nil {
		return fmt.Errorf("reading first frames: %w", err)
	}
	for _, r := range rows {
		rd.addMarginal(stratumKey(KPISlowStart, r.str("stratum")), int64(r.num("b")), int(r.num("j")), r.str("val"), r.num("num"), r.num("den"))
	}
	return nil
}

// gate sets each bucket's expected ratio of one KPI and flags the buckets
// worth a search, with the attributes to search: those with a value whose
// ratio stands out from the attribute's other values (GateScore,
// GateDeviation). A bucket whose whole population rose against the range's
// history, with no attribute standing out, is flagged with none.
func (lp LivePlan) gate(kpi string, rd *readout) {
	if kpi == KPISlowStart {
		lp.gateStrata(kpi, rd)
		return
	}
	lp.gateKey(kpi, kpi, rd)
}

// stratumKey names the marginals of one stratum of a KPI.
func stratumKey(kpi, stratum string) string { return kpi + "\x00" + stratum }

// gateStrata gates each stratum of a KPI on its own, then flags a bucket
// when any stratum is flagged, searching the union of their attributes and
// the stratum's dimension (leaves carry it: their expectation is their
// stratum's ratio).
func (lp LivePlan) gateStrata(kpi string, rd *readout) {
	js := slices.Index(lp.Attrs, lp.SlowStartStratum)
	rd.keep[kpi] = map[int64][]int{}
	for key := range rd.marg {
		if !strings.HasPrefix(key, kpi+"\x00") {
			continue
		}
		lp.gateKey(kpi, key, rd)
		for b, keep := range rd.keep[key] {
			all := append(rd.keep[kpi][b], keep...)
			if js >= 0 {
				all = append(all, js)
			}
			slices.Sort(all)
			rd.keep[kpi][b] = slices.Compact(all)
		}
	}
}

// gateKey gates the marginals under key, of KPI kpi.
func (lp LivePlan) gateKey(kpi, key string, rd *readout) {
	byB := rd.marg[key]
	total := func(ms []map[uint32]vc) (s vc) {
		for _, x := range ms[0] {
			s.v += x.v
			s.c += x.c
		}
		return s
	}
	// own history: the median whole-population ratio of the range's buckets
	var hist []weighted
	for _, b := range rd.buckets {
		if ms := byB[b]; ms != nil {
			if t := total(ms); t.c >= lp.Search.MinSupport {
				hist = append(hist, weighted{t.v / t.c, 1})
			}
		}
	}
	rHist := math.Inf(1)
	if len(hist) > 0 {
		rHist = weightedMedian(hist)
	}
	rd.rate[key] = map[int64]float64{}
	rd.keep[key] = map[int64][]int{}
	for _, b := range rd.buckets {
		ms := byB[b]
		if ms == nil {
			continue
		}
		rate := max(lp.Floor[kpi], min(peerRatio(ms, lp.PeerQuantile), rHist))
		rd.rate[key][b] = rate
		var keep []int
		for j, vals := range ms {
			var all vc
			for _, x := range vals {
				all.v += x.v
				all.c += x.c
			}
			for _, x := range vals {
				if x.v >= lp.MinAffected && lp.standsOut(x, all, rate) {
					keep = append(keep, j)
					break
				}
			}
		}
		t := total(ms)
		whole := sums{v: t.v, e: t.c * max(lp.Floor[kpi], rHist), c: t.c}
		if len(keep) > 0 || (t.v >= lp.MinAffected && whole.dev() >= lp.Search.MinDeviation && whole.lr() >= lp.Search.MinScore) {
			rd.keep[key][b] = keep
		}
	}
}

// standsOut says whether an attribute value x (all: the attribute's
// total) is worth searching: it rose against its attribute's other values
// (or the expected ratio when they are lower), or, when another cause
// inflates those, it rose against the expected ratio and its ratio is
// still GateSpread above its attribute's.
func (lp LivePlan) standsOut(x, all vc, rate float64) bool {
	rest := vc{all.v - x.v, all.c - x.c}
	r := rate
	if rest.c > 0 {
		r = max(rate, rest.v/rest.c)
	}
	if s := (sums{v: x.v, e: x.c * r, c: x.c}); s.dev() >= lp.GateDeviation && s.lr() >= lp.GateScore {
		return true
	}
	s := sums{v: x.v, e: x.c * rate, c: x.c}
	return all.c > 0 && x.v/x.c >= (1+lp.GateSpread)*all.v/all.c && s.dev() >= lp.GateDeviation && s.lr() >= lp.GateScore
}

// readLeaves reads the leaves of the flagged buckets, over the attributes
// any KPI keeps there (and their context).
func (lp LivePlan) readLeaves(ctx context.Context, st Store, req LiveRequest, rd *readout) error {
	sumsB, ffB := map[int64]bool{}, map[int64]bool{}
	keepSums, keepFF := map[int]bool{}, map[int]bool{}
	var sumsKPIs []string
	for kpi, byB := range rd.keep {
		if strings.Contains(kpi, "\x00") {
			continue // a stratum's: its KPI's keep has it
		}
		bs, ks := sumsB, keepSums
		if kpi == KPISlowStart {
			bs, ks = ffB, keepFF
		} else if len(byB) > 0 {
			sumsKPIs = append(sumsKPIs, kpi)
		}
		for b, keep := range byB {
			bs[b] = true
			for _, j := range keep {
				ks[j] = true
			}
		}
	}
	slices.Sort(sumsKPIs)
	if len(sumsB) > 0 {
		from, bucket, sel := lp.source(req, rd)
		cols := lp.leafCols(keepSums)
		rows, err := queryRows(ctx, st, fmt.Sprintf("SELECT %s AS b%s, %s FROM %s AND %s IN (%s) GROUP BY b%s",
			bucket, prefixed(cols), strings.Join(sel, ", "), from, bucket, bucketList(sumsB), prefixed(cols)))
		if err != nil {
			return fmt.Errorf("reading the leaves: %w", err)
		}
		for _, r := range rows {
			b, key := int64(r.num("b")), rd.rowKey(lp, r)
			lp.kpiValues(r, sumsKPIs, rd.fpsRef, func(kpi string, v, c float64) {
				if _, ok := rd.keep[kpi][b]; ok {
					rd.addLeaf(kpi, b, key, v, c)
				}
			})
		}
	}
	if len(ffB) > 0 {
		cols := lp.leafCols(keepFF)
		bucket := lp.firstFrameBucket(rd)
		rows, err := queryRows(ctx, st, fmt.Sprintf("SELECT %s AS b%s, sum(%s) AS den, sumIf(%s, %s) AS num FROM %s WHERE total_ms IS NOT NULL AND %s AND %s IN (%s) GROUP BY b%s",
			bucket, prefixed(cols), schemas.Weight, schemas.Weight, rd.slowCond(), schemas.FirstFrameTable, lp.where(req, "ts"), bucket, bucketList(ffB), prefixed(cols)))
		if err != nil {
			return fmt.Errorf("reading first-frame leaves: %w", err)
		}
		for _, r := range rows {
			rd.addLeaf(KPISlowStart, int64(r.num("b")), rd.rowKey(lp, r), r.num("num"), r.num("den"))
		}
	}
	return nil
}

// leafCols are the columns a leaf query groups by: the kept attributes and
// their Context.
func (lp LivePlan) leafCols(keep map[int]bool) []string {
	var cols []string
	for j, a := range lp.Attrs {
		if keep[j] {
			cols = append(cols, a)
		}
	}
	for _, a := range slices.Clone(cols) {
		for _, c := range lp.Context[a] {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

func prefixed(cols []string) string {
	if len(cols) == 0 {
		return ""
	}
	return ", " + strings.Join(cols, ", ")
}

func bucketList(bs map[int64]bool) string {
	xs := make([]string, 0, len(bs))
	for b := range bs {
		xs = append(xs, strconv.FormatInt(b, 10))
	}
	slices.Sort(xs)
	return strings.Join(xs, ", ")
}

// rowKey is a leaf row's key over every attribute ("" for the attributes
// the query did not group by), and notes its context values.
func (rd *readout) rowKey(lp LivePlan, r row) []uint32 {
	key := make([]uint32, len(rd.attrs))
	for j, a := range rd.attrs {
		key[j] = rd.id(j, r.str(a))
	}
	for from, tos := range lp.Context {
		v, ok := r[from].(string)
		if !ok {
			continue
		}
		for _, to := range tos {
			if _, ok := r[to]; !ok {
				continue
			}
			m := rd.ctx[to]
			if m == nil {
				m = map[string]map[string]bool{}
				rd.ctx[to] = m
			}
			k := from + "\x00" + v
			if m[k] == nil {
				m[k] = map[string]bool{}
			}
			m[k][r.str(to)] = true
		}
	}
	return key
}

// row is one JSONEachRow row of a query: the bucket, dimension values and
// sums.
type row map[string]any

func (r row) str(k string) string {
	s, _ := r[k].(string)
	return s
}

func (r row) num(k string) float64 {
	switch v := r[k].(type) {
	case float64:
		return v
	case string: // ClickHouse quotes 64-bit integers
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	return 0
}

func queryRows(ctx context.Context, st Store, sql string) ([]row, error) {
	out, err := st.QueryJSON(ctx, sql)
	if err != nil {
		return nil, err
	}
	var rows []row
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r row
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("decoding a row: %w", err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

type weighted struct{ x, w float64 }

// weightedMedian is the value below and above which half the weight lies (0
// when there is none).
func weightedMedian(xs []weighted) float64 { return weightedQuantile(xs, 0.5) }

// weightedQuantile is the least value with at least q of the weight at or
// below it (0 when there is none).
func weightedQuantile(xs []weighted, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.SortFunc(xs, func(a, b weighted) int { return cmpDesc(b.x, a.x) })
	var all float64
	for _, x := range xs {
		all += x.w
	}
	var acc float64
	for _, x := range xs {
		acc += x.w
		if acc >= q*all {
			return x.x
		}
	}
	return xs[len(xs)-1].x
}

// found is one cause in one bucket.
type found struct {
	b     int64
	last  int64 // the last bucket: b, or the end of a run of buckets
	cause Cause
	v, c  float64 // the cohort's numerator and denominator
	e     float64 // its expected numerator
}

// detect runs the search on each flagged bucket of one KPI, over the
// bucket's kept attributes; a bucket flagged with none is one cause of
// everyone.
func (lp LivePlan) detect(kpi string, rd *readout) []found {
	var out []found
	for _, b := range rd.buckets {
		keep, ok := rd.keep[kpi][b]
		if !ok {
			continue
		}
		all := rd.leaves[kpi][b]
		rate := func(Leaf) float64 { return rd.rate[kpi][b] }
		switch js := slices.Index(rd.attrs, lp.SlowStartStratum); {
		case kpi == KPILowFrameRate && len(all) > 0:
			// leaves clip their own missing frames at 0, the marginals
			// clipped sums: the peers' ratio is the leaves'
			r := max(lp.Floor[kpi], peerRatioLeaves(all, len(rd.attrs), lp.PeerQuantile))
			rate = func(Leaf) float64 { return r }
		case kpi == KPISlowStart && js >= 0:
			rate = func(l Leaf) float64 {
				if r, ok := rd.rate[stratumKey(kpi, rd.values[js][l.Key[js]])][b]; ok {
					return r
				}
				return lp.Floor[kpi]
			}
		}
		for i := range all {
			all[i].E = all[i].C * rate(all[i])
		}
		out = append(out, lp.searchLeaves(b, b, rd, keep, all)...)
	}
	// Runs: a fault split over buckets may be too weak in each; the leaves
	// of consecutive flagged buckets, searched together, add the cohorts
	// that no single bucket showed.
	step := int64(rd.step.Seconds())
	var run []int64
	flush := func() {
		if len(run) > 1 {
			var keep []int
			var all []Leaf
			for _, b := range run {
				keep = append(keep, rd.keep[kpi][b]...)
				all = append(all, rd.leaves[kpi][b]...)
			}
			slices.Sort(keep)
			for _, f := range lp.searchLeaves(run[0], run[len(run)-1], rd, slices.Compact(keep), all) {
				if !slices.ContainsFunc(out, func(o found) bool {
					return o.b >= f.b && o.b <= f.last && maps.Equal(o.cause.Element, f.cause.Element)
				}) {
					out = append(out, f)
				}
			}
		}
		run = run[:0]
	}
	for _, b := range rd.buckets {
		if _, ok := rd.keep[kpi][b]; !ok {
			continue
		}
		if len(run) > 0 && b-run[len(run)-1] > step*int64(1+lp.MergeGap) {
			flush()
		}
		run = append(run, b)
	}
	flush()
	return out
}

// searchLeaves searches leaves (their expectations set) of the buckets b
// to last over the attributes keep; no attribute left means the whole
// population is the cohort.
func (lp LivePlan) searchLeaves(b, last int64, rd *readout, keep []int, all []Leaf) []found {
	attrs, values, leaves := project(rd, keep, all)
	var s sums
	for _, l := range leaves {
		s.v += l.V
		s.c += l.C
		s.e += l.E
	}
	var causes []Cause
	if len(attrs) > 0 {
		causes = lp.Search.Search(attrs, values, leaves)
	} else if s.lr() > 0 {
		causes = []Cause{{Element: map[string]string{}, Share: 1, Score: s.lr(), Excess: s.v - s.e, Confidence: 1}}
	}
	var out []found
	for _, c := range causes {
		f := found{b: b, last: last, cause: c}
		for _, l := range leaves {
			if matchNames(attrs, values, c.Element, l.Key) {
				f.v += l.V
				f.c += l.C
				f.e += l.E
			}
		}
		if f.v >= lp.MinAffected {
			out = append(out, f)
		}
	}
	return out
}

// project returns leaves on the attributes keep (merging leaves that then
// share a key), leaving out those with a single value among them: a
// constant attribute adds nothing to a cohort but a tie with the cohort
// without it.
func project(rd *readout, keep []int, leaves []Leaf) ([]string, [][]string, []Leaf) {
	var js []int
	for _, j := range keep {
		if len(leaves) > 0 && slices.ContainsFunc(leaves, func(l Leaf) bool { return l.Key[j] != leaves[0].Key[j] }) {
			js = append(js, j)
		}
	}
	attrs := make([]string, len(js))
	values := make([][]string, len(js))
	for x, j := range js {
		attrs[x], values[x] = rd.attrs[j], rd.values[j]
	}
	idx := map[string]int{}
	var out []Leaf
	buf := make([]byte, 0, 4*len(js))
	for _, l := range leaves {
		k := make([]uint32, len(js))
		for x, j := range js {
			k[x] = l.Key[j]
		}
		buf = keyBytes(buf[:0], k)
		if i, ok := idx[string(buf)]; ok {
			out[i].V += l.V
			out[i].C += l.C
			out[i].E += l.E
			continue
		}
		idx[string(buf)] = len(out)
		out = append(out, Leaf{Key: k, V: l.V, C: l.C, E: l.E})
	}
	return attrs, values, out
}

func matchNames(attrs []string, values [][]string, el map[string]string, key []uint32) bool {
	for j, a := range attrs {
		if v, ok := el[a]; ok && values[j][key[j]] != v {
			return false
		}
	}
	return true
}

// peerRatio is the ratio of a bucket's non-rising part from its marginals:
// per attribute, the denominator-weighted q-quantile of its values' ratios;
// the least of those over the attributes, so that a cohort's rise, even
// several at once over most of an attribute's values, does not lift it.
func peerRatio(ms []map[uint32]vc, q float64) float64 {
	best := math.Inf(1)
	for _, vals := range ms {
		xs := make([]weighted, 0, len(vals))
		for _, s := range vals {
			xs = append(xs, weighted{s.v / s.c, s.c})
		}
		if len(xs) > 0 {
			best = min(best, weightedQuantile(xs, q))
		}
	}
	if math.IsInf(best, 1) {
		return 0
	}
	return best
}

// peerRatioLeaves is peerRatio over leaves.
func peerRatioLeaves(leaves []Leaf, na int, q float64) float64 {
	ms := make([]map[uint32]vc, na)
	for j := range ms {
		ms[j] = map[uint32]vc{}
		for _, l := range leaves {
			s := ms[j][l.Key[j]]
			ms[j][l.Key[j]] = vc{s.v + l.V, s.c + l.C}
		}
	}
	return peerRatio(ms, q)
}

// merge joins one KPI's causes of consecutive buckets with the same cohort
// into incidents.
func (lp LivePlan) merge(kpi string, rd *readout, fs []found) []Incident {
	step := int64(rd.step.Seconds())
	// Two nested cohorts near in time (one contains the other, a node
	// counting with its CDN and region) are one incident seen in different
	// views (a bucket where only part of the cohort ended its plays, a
	// neighbouring fault's tail mixed in): the weaker joins the stronger.
	byScore := make([]int, len(fs))
	for i := range byScore {
		byScore[i] = i
	}
	slices.SortStableFunc(byScore, func(a, b int) int { return cmpDesc(fs[a].cause.Score, fs[b].cause.Score) })
	near := func(a, b found) bool {
		return b.b-a.last <= step*int64(1+lp.MergeGap) && a.b-b.last <= step*int64(1+lp.MergeGap)
	}
	for x, i := range byScore {
		ei := rd.withContext(lp, fs[i].cause.Element)
		for _, g := range byScore[:x] {
			eg := rd.withContext(lp, fs[g].cause.Element)
			if !near(fs[i], fs[g]) || maps.Equal(ei, eg) || !(subsetOf(ei, eg) || subsetOf(eg, ei)) {
				continue
			}
			// the cohort that explains their joint span better names both
			from, to := min(fs[i].b, fs[g].b), max(fs[i].last, fs[g].last)
			el := fs[g].cause.Element
			if rd.scoreOver(kpi, fs[i].cause.Element, from, to) > rd.scoreOver(kpi, el, from, to) {
				el = fs[i].cause.Element
			}
			fs[i].cause.Element, fs[g].cause.Element = el, el
			break
		}
	}
	groups := map[string][]found{}
	var order []string
	for _, f := range fs {
		k := f.cause.String()
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], f)
	}
	var out []Incident
	for _, k := range order {
		g := groups[k]
		sort.Slice(g, func(i, j int) bool { return g[i].b < g[j].b })
		start, end := 0, g[0].last
		for i := 1; i <= len(g); i++ {
			if i < len(g) && g[i].b-end <= step*int64(1+lp.MergeGap) {
				end = max(end, g[i].last)
				continue
			}
			out = append(out, lp.incident(kpi, rd, g[start:i]))
			if i < len(g) {
				start, end = i, g[i].last
			}
		}
	}
	return out
}

// scoreOver is the likelihood-ratio score of cohort el over the buckets
// from..to of one KPI's leaves.
func (rd *readout) scoreOver(kpi string, el map[string]string, from, to int64) float64 {
	var s sums
	for b, leaves := range rd.leaves[kpi] {
		if b < from || b > to {
			continue
		}
		for _, l := range leaves {
			if matchNames(rd.attrs, rd.values, el, l.Key) {
				s.v += l.V
				s.c += l.C
				s.e += l.E
			}
		}
	}
	return s.lr()
}

// withContext is el with its Context dimensions that have one value in
// the data read (a node's CDN and region, a stream's room).
func (rd *readout) withContext(lp LivePlan, el map[string]string) map[string]string {
	out := maps.Clone(el)
	for from, tos := range lp.Context {
		v, ok := el[from]
		if !ok {
			continue
		}
		for _, to := range tos {
			if _, has := out[to]; has {
				continue
			}
			if vs := rd.ctx[to][from+"\x00"+v]; len(vs) == 1 {
				for x := range vs {
					if x != "" {
						out[to] = x
					}
				}
			}
		}
	}
	return out
}

// subsetOf reports whether every attribute value of a is in b.
func subsetOf(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (lp LivePlan) incident(kpi string, rd *readout, run []found) Incident {
	step := int64(rd.step.Seconds())
	inc := Incident{
		From: time.Unix(run[0].b, 0).UTC(),
		To:   time.Unix(slices.MaxFunc(run, func(a, b found) int { return int(a.last - b.last) }).last+step, 0).UTC(),
		KPI:  kpi,
		Dims: map[string]string{},
	}
	var e, shareW float64
	for _, f := range run {
		inc.Views += f.c
		inc.Affected += f.v
		e += f.e
		inc.Score += f.cause.Score
		shareW += f.cause.Share * f.cause.Excess
		inc.Confidence = max(inc.Confidence, f.cause.Confidence)
	}
	if inc.Views > 0 {
		inc.Value, inc.Expected = inc.Affected/inc.Views, e/inc.Views
	}
	if ex := inc.Affected - e; ex > 0 {
		inc.Share = min(1, shareW/ex)
	}
	for a, v := range run[0].cause.Element {
		inc.Dims[a] = v
	}
	// the natural cohort: a node's CDN and region, a stream's room
	inc.Dims = rd.withContext(lp, inc.Dims)
	return inc
}

// affectedCond is the SQL over events rows of a view the KPI counts as
// affected, and the log_type it reads.
func (lp LivePlan) affectedCond(kpi string, rd *readout) string {
	if d, ok := kpiDefs[kpi]; ok {
		m := schemas.MeasureByName[d.num]
		return fmt.Sprintf("log_type = '%s' AND (%s)", m.Kind, m.Cond)
	}
	switch kpi {
	case KPISlowStart:
		return "log_type = 'first_frame' AND " + rd.slowCond()
	case KPILowFrameRate:
		return fmt.Sprintf("log_type = 'heartbeat' AND fps < %g", lp.LowFPSShare*rd.fpsRef)
	}
	return "0"
}

// sessions names a few affected sessions of the incident and the commands
// that trace them.
func (lp LivePlan) sessions(ctx context.Context, st Store, req LiveRequest, rd *readout, inc *Incident) error {
	if lp.Sessions <= 0 {
		return nil
	}
	conds := []string{lp.affectedCond(inc.KPI, rd)}
	dims := make([]string, 0, len(inc.Dims))
	for d := range inc.Dims {
		dims = append(dims, d)
	}
	slices.Sort(dims)
	for _, d := range dims {
		conds = append(conds, d+" = "+sqlString(inc.Dims[d]))
	}
	r := req
	r.From, r.To = inc.From, inc.To
	sql := fmt.Sprintf("SELECT device_id, session_id FROM %s WHERE %s AND %s AND session_id != '' GROUP BY device_id, session_id ORDER BY min(ts) LIMIT %d",
		schemas.EventsTable, lp.where(r, "ts"), strings.Join(conds, " AND "), lp.Sessions)
	rows, err := queryRows(ctx, st, sql)
	if err != nil {
		return fmt.Errorf("affected sessions of %s on %v: %w", inc.KPI, inc.Dims, err)
	}
	for _, row := range rows {
		s := SessionRef{DeviceID: row.str("device_id"), SessionID: row.str("session_id")}
		inc.Sessions = append(inc.Sessions, s)
		inc.Traces = append(inc.Traces, fmt.Sprintf("lastmile trace --session %s --from %s --to %s",
			s.SessionID, inc.From.Add(-time.Minute).Format(time.RFC3339), inc.To.Add(time.Minute).Format(time.RFC3339)))
	}
	return nil
}

// sqlString quotes s as a ClickHouse string literal.
func sqlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)
	return "'" + r.Replace(s) + "'"
}

// sqlTime is t as a ClickHouse DateTime64(3) literal, UTC.
func sqlTime(t time.Time) string {
	return "toDateTime64('" + t.UTC().Format("2006-01-02 15:04:05.000") + "', 3, 'UTC')"
}

// dimCols are the dimensions an incident may name: the searched ones and
// their Context.
func (lp LivePlan) dimCols() []string {
	cols := slices.Clone(lp.Attrs)
	for _, cs := range lp.Context {
		for _, c := range cs {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// SameCohort compares a cohort got (an incident's dims) with a wanted one
// (for example a scenario label's dims, whose other keys, strength
// parameters such as kbps or share, are ignored). exact: the same
// dimensions and values. same: they agree on every dimension both name, and
// each dimension only one names is either Context of one both name (a
// node's cdn, a stream's room) or has all its Context named by both (a node
// inside the cdn and region both name: one node per CDN and region cannot
// be told from the cohort).
func (lp LivePlan) SameCohort(want, got map[string]string) (same, exact bool) {
	dims := lp.dimCols()
	w := map[string]string{}
	for k, v := range want {
		if slices.Contains(dims, k) {
			w[k] = v
		}
	}
	if len(w) == 0 || len(got) == 0 {
		return len(w) == len(got), len(w) == len(got)
	}
	exact = len(w) == len(got)
	both := func(d string) bool {
		_, a := w[d]
		_, b := got[d]
		return a && b
	}
	for k, v := range w {
		if g, ok := got[k]; ok && g != v {
			return false, false
		} else if !ok {
			exact = false
		}
	}
	for _, m := range []map[string]string{w, got} {
		for k := range m {
			if both(k) {
				continue
			}
			ok := false
			for from, tos := range lp.Context {
				ok = ok || (both(from) && slices.Contains(tos, k))
			}
			if tos, isFrom := lp.Context[k]; isFrom && !ok {
				ok = !slices.ContainsFunc(tos, func(t string) bool { return !both(t) })
			}
			if !ok {
				return false, false
			}
		}
	}
	return true, exact
}

// OverlapGroups groups spans (from, to) that overlap in time, each group in
// start order, as indexes into spans: faults that overlap are localized
// together, and each should be matched by one of the group's top k
// incidents, k the group's size.
func OverlapGroups(spans [][2]time.Time) [][]int {
	order := make([]int, len(spans))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return spans[a][0].Compare(spans[b][0]) })
	var out [][]int
	var end time.Time
	for _, i := range order {
		if len(out) > 0 && spans[i][0].Before(end) {
			out[len(out)-1] = append(out[len(out)-1], i)
		} else {
			out = append(out, []int{i})
		}
		if spans[i][1].After(end) {
			end = spans[i][1]
		}
	}
	return out
}

// TopCohorts is the first k incidents with distinct cohorts (one fault may
// raise several KPIs of one cohort).
func TopCohorts(incs []Incident, k int) []Incident {
	var out []Incident
	for _, inc := range incs {
		if len(out) == k {
			break
		}
		if !slices.ContainsFunc(out, func(o Incident) bool { return maps.Equal(o.Dims, inc.Dims) }) {
			out = append(out, inc)
		}
	}
	return out
}
