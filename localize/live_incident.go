package localize

// The live localizer's search per bucket and run, and the incidents: causes
// merged over time, their cohorts, figures and affected sessions.

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// found is one cause in one bucket.
type found struct {
	b     int64
	last  int64 // the last bucket: b, or the end of a run of buckets
	cause Cause
	sums  // the cohort's numerator v, denominator c, expected numerator e
}

// add counts a leaf in s.
func (s *sums) add(l Leaf) {
	s.v += l.V
	s.c += l.C
	s.e += l.E
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
		fs := lp.searchLeaves(b, b, rd, keep, all)
		if kpiDefs[kpi].num != "" {
			fs = append(fs, lp.searchRest(b, rd, keep, all, fs, rd.rate[kpi][b], lp.Floor[kpi])...)
		}
		out = append(out, fs...)
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

// searchRest searches again the leaves of bucket b that none of the causes
// fs explains, their expected ratio their own peers' (never above rate nor
// under floor): two faults at once raise each other's peers, so the
// weaker one, searched against an expectation the stronger inflated, is
// diluted; without the stronger one's leaves it is not.
func (lp LivePlan) searchRest(b int64, rd *readout, keep []int, all []Leaf, fs []found, rate, floor float64) []found {
	if len(fs) == 0 {
		return nil
	}
	var rest []Leaf
	for _, l := range all {
		if !slices.ContainsFunc(fs, func(f found) bool { return matchNames(rd.attrs, rd.values, f.cause.Element, l.Key) }) {
			rest = append(rest, l)
		}
	}
	r := max(floor, min(rate, peerRatioLeaves(rest, len(rd.attrs), lp.PeerQuantile)))
	if len(rest) == 0 || r >= rate {
		return nil
	}
	for i := range rest {
		rest[i].E = rest[i].C * r
	}
	var out []found
	for _, f := range lp.searchLeaves(b, b, rd, keep, rest) {
		if !slices.ContainsFunc(fs, func(o found) bool { return maps.Equal(o.cause.Element, f.cause.Element) }) {
			out = append(out, f)
		}
	}
	return out
}

// searchLeaves searches leaves (their expectations set) of the buckets b
// to last over the attributes keep; no attribute left means the whole
// population is the cohort.
func (lp LivePlan) searchLeaves(b, last int64, rd *readout, keep []int, all []Leaf) []found {
	attrs, values, leaves := project(rd, keep, all)
	var s sums
	for _, l := range leaves {
		s.add(l)
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
				f.add(l)
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
			// the cohort that explains their joint span better names both,
			// and every cause of the other
			from, to := min(fs[i].b, fs[g].b), max(fs[i].last, fs[g].last)
			win, lose := fs[g].cause.Element, fs[i].cause.Element
			if rd.scoreOver(kpi, lose, from, to) > rd.scoreOver(kpi, win, from, to) {
				win, lose = lose, win
			}
			for k := range fs {
				if maps.Equal(fs[k].cause.Element, lose) {
					fs[k].cause.Element = win
				}
			}
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
				s.add(l)
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

// SQL literals, quoted in one place (internal/store).
var (
	sqlString = store.QuoteString
	sqlTime   = store.QuoteTime
)
