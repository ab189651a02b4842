package localize

// The live localizer's reading: the marginals per dimension value, the gate
// that picks the buckets and dimensions worth a search, and their leaves.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

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
		keep := lp.standingOut(ms, rate)
		t := total(ms)
		whole := sums{v: t.v, e: t.c * max(lp.Floor[kpi], rHist), c: t.c}
		if len(keep) > 0 || (t.v >= lp.MinAffected && whole.dev() >= lp.Search.MinDeviation && whole.lr() >= lp.Search.MinScore) {
			rd.keep[key][b] = keep
		}
	}
	if lp.GatePairs {
		lp.gatePairs(key, rd)
	}
}

// gatePairs flags, with the attributes that stand out in their summed
// marginals, each two consecutive unflagged buckets where a value stands
// out over both: a small cohort's views end on either side of a bucket's
// edge, too few in each to stand out (detect searches their run together).
func (lp LivePlan) gatePairs(key string, rd *readout) {
	byB := rd.marg[key]
	step := int64(rd.step.Seconds())
	for _, b := range rd.buckets {
		a, z := byB[b], byB[b+step]
		_, flagA := rd.keep[key][b]
		_, flagZ := rd.keep[key][b+step]
		if a == nil || z == nil || flagA || flagZ {
			continue // a flagged bucket's cohorts are searched on its own and in its run
		}
		pair := make([]map[uint32]vc, len(a))
		for j := range a {
			pair[j] = maps.Clone(a[j])
			for id, x := range z[j] {
				s := pair[j][id]
				pair[j][id] = vc{s.v + x.v, s.c + x.c}
			}
		}
		keep := lp.standingOut(pair, max(rd.rate[key][b], rd.rate[key][b+step]))
		if len(keep) == 0 {
			continue
		}
		rd.keep[key][b], rd.keep[key][b+step] = keep, slices.Clone(keep)
	}
}

// regate gates each KPI's flagged buckets again without the viewers of
// the value that stands out most over them (the strongest cause's): a
// second cause on another dimension, whose values that cause inflates
// alike (an app version failing while one ISP's DNS is down), then stands
// out against the rest, and its attribute is kept too. Rates from the
// play_stop sums only.
func (lp LivePlan) regate(ctx context.Context, st Store, req LiveRequest, kpis []string, rd *readout) error {
	for _, kpi := range kpis {
		if _, ok := kpiDefs[kpi]; !ok {
			continue
		}
		j, val, bs := lp.strongest(kpi, rd)
		if bs == nil {
			continue
		}
		from, bucket, sel := lp.source(req, rd)
		rows, err := queryRows(ctx, st, fmt.Sprintf("SELECT %s AS b, a.1 AS j, a.2 AS val, %s FROM %s AND NOT (%s = %s) AND %s IN (%s) GROUP BY b, j, val",
			bucket, strings.Join(sel, ", "), strings.Replace(from, " WHERE ", " ARRAY JOIN "+lp.attrPairs()+" AS a WHERE ", 1),
			rd.attrs[j], sqlString(val), bucket, bucketList(bs)))
		if err != nil {
			return fmt.Errorf("reading the marginals without %s=%s: %w", rd.attrs[j], val, err)
		}
		rest := map[int64][]map[uint32]vc{}
		for _, r := range rows {
			b, jj := int64(r.num("b")), int(r.num("j"))
			lp.kpiValues(r, []string{kpi}, rd.fpsRef, func(_ string, v, c float64) {
				if c <= 0 {
					return
				}
				if rest[b] == nil {
					rest[b] = make([]map[uint32]vc, len(rd.attrs))
					for x := range rest[b] {
						rest[b][x] = map[uint32]vc{}
					}
				}
				id := rd.id(jj, r.str("val"))
				s := rest[b][jj][id]
				rest[b][jj][id] = vc{s.v + v, s.c + c}
			})
		}
		for b, ms := range rest {
			ms[j] = nil // the attribute of the cause taken out
			add := lp.standingOut(ms, max(lp.Floor[kpi], peerRatio(ms, lp.PeerQuantile)))
			if len(add) > 0 {
				all := append(slices.Clone(rd.keep[kpi][b]), add...)
				slices.Sort(all)
				rd.keep[kpi][b] = slices.Compact(all)
			}
		}
	}
	return nil
}

// strongest is the attribute value that stands out most (by its score
// against its bucket's rate, summed over the flagged buckets) in a KPI's
// flagged buckets that keep its attribute, and those buckets.
func (lp LivePlan) strongest(kpi string, rd *readout) (j int, val string, bs map[int64]bool) {
	score := map[[2]uint32]float64{}
	for b, keep := range rd.keep[kpi] {
		ms := rd.marg[kpi][b]
		for _, jj := range keep {
			if ms == nil || jj >= len(ms) {
				continue
			}
			for id, x := range ms[jj] {
				score[[2]uint32{uint32(jj), id}] += sums{v: x.v, e: x.c * rd.rate[kpi][b], c: x.c}.lr()
			}
		}
	}
	best, top := [2]uint32{}, 0.0
	for k, s := range score {
		if s > top || (s == top && (k[0] < best[0] || (k[0] == best[0] && k[1] < best[1]))) {
			best, top = k, s
		}
	}
	if top < lp.GateScore {
		return 0, "", nil
	}
	j = int(best[0])
	bs = map[int64]bool{}
	for b, keep := range rd.keep[kpi] {
		if slices.Contains(keep, j) {
			bs[b] = true
		}
	}
	return j, rd.values[j][best[1]], bs
}

// standingOut is the attributes of marginals ms with a value that stands
// out against rate (standsOut) with at least MinAffected affected views.
func (lp LivePlan) standingOut(ms []map[uint32]vc, rate float64) []int {
	var keep []int
	for j, vals := range ms {
		if len(vals) < 2 {
			continue // its one value is everyone: the whole's rise is judged against history
		}
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
	return keep
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
	return lp.GateSpread > 0 && all.c > 0 && x.v/x.c >= (1+lp.GateSpread)*all.v/all.c && s.dev() >= lp.GateDeviation && s.lr() >= lp.GateScore
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

// leafCols are the columns a leaf query groups by: the kept attributes,
// the dimensions they may be split by, and their Context.
func (lp LivePlan) leafCols(keep map[int]bool) []string {
	var cols []string
	for j, a := range lp.Attrs {
		if keep[j] {
			cols = append(cols, a)
		}
	}
	for _, a := range slices.Clone(cols) {
		if b, ok := lp.Split[a]; ok && !slices.Contains(cols, b) {
			cols = append(cols, b)
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
