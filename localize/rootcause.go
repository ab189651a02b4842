package localize

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// A Plan holds every strategy choice of the root-cause search as a field, so
// that a caller (or a tuning run) can see and change them. DefaultPlan is the
// one tuned on the RS development set (docs/localize.md has the figures).
//
// The method: each leaf of the anomalous minute gets an expected numerator,
// its viewers times its own baseline ratio (smoothed toward the table's
// baseline ratio when the leaf is sparse). Every conjunction of up to
// MaxOrder attribute values is a candidate; its score is the Poisson
// likelihood-ratio of "this set's numerator rose by one common factor"
// against "nothing changed", which is largest at the granularity where the
// rise is concentrated: a finer set misses part of the excess, a coarser one
// dilutes it with normal leaves. Causes are taken greedily: after each, its
// leaves count as explained and the scores are computed again.
type Plan struct {
	// BaselineMinutes is how many minutes before the anomalous one form the
	// baseline (the latest ones present in the table).
	BaselineMinutes int
	// PriorViewers is the weight, in denominator units, of the table-wide
	// baseline ratio in each leaf's baseline ratio: a leaf with few baseline
	// viewers is expected to behave like the whole table.
	PriorViewers float64
	// MaxOrder is the most attributes in one cause (1..4).
	MaxOrder int
	// MinSupport is the least denominator (viewers) a cause has in the
	// anomalous minute.
	MinSupport float64
	// MinDeviation is the least relative rise of a cause's numerator over its
	// expectation (V/E − 1).
	MinDeviation float64
	// MinScore is the least likelihood-ratio score (natural-log units) of a
	// cause; below it the minute counts as normal and no cause is returned.
	MinScore float64
	// MinShare is the least share of the minute's excess numerator a cause
	// explains.
	MinShare float64
	// OrderBias multiplies a candidate's score once per attribute beyond the
	// first: below 1 it prefers coarser causes, above 1 finer ones.
	OrderBias float64
	// NextGain: a second or later cause must score at least NextGain times
	// the first one's score.
	NextGain float64
	// MaxCauses is the most causes returned.
	MaxCauses int
}

// DefaultPlan is the plan tuned on the RS development set.
var DefaultPlan = Plan{
	BaselineMinutes: 4,
	PriorViewers:    10,
	MaxOrder:        3,
	MinSupport:      5,
	MinDeviation:    0.2,
	MinScore:        10,
	MinShare:        0.05,
	OrderBias:       1,
	NextGain:        0.3,
	MaxCauses:       3,
}

// A Cause is one conjunction of attribute values that explains part of an
// anomaly.
type Cause struct {
	Element    map[string]string `json:"element"`    // attribute → value
	Share      float64           `json:"share"`      // its excess numerator / the minute's excess
	KPI        float64           `json:"kpi"`        // its ratio in the anomalous minute
	Expected   float64           `json:"expected"`   // the ratio its leaves' baseline ratios predict
	Baseline   float64           `json:"baseline"`   // its own ratio over the baseline minutes
	Support    float64           `json:"support"`    // its denominator in the anomalous minute
	Excess     float64           `json:"excess"`     // numerator above expectation
	Score      float64           `json:"score"`      // likelihood-ratio score when chosen
	Confidence float64           `json:"confidence"` // 0..1, see docs/localize.md
}

// A Result is the root-cause answer for one minute.
type Result struct {
	At       int64   `json:"at"`
	Baseline []int64 `json:"baseline_minutes"`
	KPI      float64 `json:"kpi"`      // the whole table's ratio at At
	Expected float64 `json:"expected"` // what the baseline predicts for it
	Excess   float64 `json:"excess"`   // numerator above expectation
	Causes   []Cause `json:"causes"`   // best first; none for a normal minute
}

// ErrNoRows is returned when the table has no row at the requested minute.
var ErrNoRows = errors.New("no rows at that minute")

// group is one candidate: a conjunction over the attributes of its mask.
type group struct {
	mask  int   // index into masks
	vals  []uint32
	v, e  float64 // numerator, working expectation
	c     float64
	e0    float64 // expectation before any cause was taken
	vb    float64 // baseline numerator and denominator
	cb    float64
	score float64
}

// Localize finds the causes of the anomaly at minute at, against the
// BaselineMinutes minutes before it.
func (p Plan) Localize(t *Table, at int64) (*Result, error) {
	if p.MaxOrder < 1 {
		p.MaxOrder = 1
	}
	if p.MaxOrder > 4 {
		p.MaxOrder = 4
	}
	if p.MaxCauses < 1 {
		p.MaxCauses = 1
	}
	nb := max(p.BaselineMinutes, 1)
	mins := t.Minutes()
	i := sort.Search(len(mins), func(i int) bool { return mins[i] >= at })
	if i == len(mins) || mins[i] != at {
		return nil, fmt.Errorf("%w %d", ErrNoRows, at)
	}
	if i == 0 {
		return nil, fmt.Errorf("no minute before %d to form a baseline", at)
	}
	base := mins[max(0, i-nb):i]
	inBase := map[int64]bool{}
	for _, m := range base {
		inBase[m] = true
	}

	// Leaves: anomalous-minute and baseline sums per full key.
	na := len(t.Attrs)
	type leaf struct {
		key          []uint32
		v, c, vb, cb float64
	}
	idx := map[string]int{}
	var leaves []leaf
	buf := make([]byte, 0, 4*na)
	var vbT, cbT float64
	for _, r := range t.Rows {
		isAt := r.Min == at
		if !isAt && !inBase[r.Min] {
			continue
		}
		buf = buf[:0]
		for _, k := range r.Key {
			buf = append(buf, byte(k), byte(k>>8), byte(k>>16), byte(k>>24))
		}
		li, ok := idx[string(buf)]
		if !ok {
			li = len(leaves)
			idx[string(buf)] = li
			leaves = append(leaves, leaf{key: r.Key})
		}
		if isAt {
			leaves[li].v += r.Num
			leaves[li].c += r.Den
		} else {
			leaves[li].vb += r.Num
			leaves[li].cb += r.Den
			vbT += r.Num
			cbT += r.Den
		}
	}
	r0 := 0.0
	if cbT > 0 {
		r0 = vbT / cbT
	}
	e := make([]float64, len(leaves))
	var vT, cT, eT float64
	for li, l := range leaves {
		rate := r0
		if d := l.cb + p.PriorViewers; d > 0 {
			rate = (l.vb + p.PriorViewers*r0) / d
		}
		e[li] = l.c * rate
		vT += l.v
		cT += l.c
		eT += e[li]
	}
	res := &Result{At: at, Baseline: base, Excess: vT - eT}
	if cT > 0 {
		res.KPI, res.Expected = vT/cT, eT/cT
	}

	// Candidates: every conjunction of 1..MaxOrder attributes; each leaf
	// belongs to one group per mask.
	var masks [][]int
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) > 0 {
			masks = append(masks, slices.Clone(cur))
		}
		if len(cur) == p.MaxOrder {
			return
		}
		for j := start; j < na; j++ {
			rec(j+1, append(cur, j))
		}
	}
	rec(0, nil)
	var groups []group
	member := make([][]int32, len(masks)) // member[m][leaf] = group index
	for mi, m := range masks {
		gi := map[string]int32{}
		member[mi] = make([]int32, len(leaves))
		for li, l := range leaves {
			buf = buf[:0]
			for _, j := range m {
				k := l.key[j]
				buf = append(buf, byte(k), byte(k>>8), byte(k>>16), byte(k>>24))
			}
			g, ok := gi[string(buf)]
			if !ok {
				g = int32(len(groups))
				gi[string(buf)] = g
				vals := make([]uint32, len(m))
				for x, j := range m {
					vals[x] = l.key[j]
				}
				groups = append(groups, group{mask: mi, vals: vals})
			}
			member[mi][li] = g
			gr := &groups[g]
			gr.v += l.v
			gr.c += l.c
			gr.e0 += e[li]
			gr.vb += l.vb
			gr.cb += l.cb
		}
	}

	total := res.Excess
	excessPos := 0.0
	for li, l := range leaves {
		excessPos += max(0, l.v-e[li])
	}
	if total <= 0 {
		total = excessPos
	}
	shareOf := func(x float64) float64 {
		if total <= 0 {
			return 0
		}
		return min(1, max(0, x/total))
	}

	explained := make([]bool, len(leaves))
	var chosen []int
	var firstScore float64
	for len(chosen) < p.MaxCauses {
		// Recompute the working expectations: explained leaves expect what
		// they got.
		for g := range groups {
			groups[g].e = 0
		}
		for mi := range masks {
			for li := range leaves {
				ex := e[li]
				if explained[li] {
					ex = leaves[li].v
				}
				groups[member[mi][li]].e += ex
			}
		}
		best, bestScore := -1, 0.0
		for g := range groups {
			gr := &groups[g]
			gr.score = 0
			if gr.c < p.MinSupport || gr.v <= gr.e {
				continue
			}
			ee := max(gr.e, 0.5)
			if gr.v/ee-1 < p.MinDeviation || shareOf(gr.v-gr.e) < p.MinShare {
				continue
			}
			lr := gr.v*math.Log(gr.v/ee) - (gr.v - ee)
			if lr < p.MinScore {
				continue
			}
			gr.score = lr * math.Pow(p.OrderBias, float64(len(masks[gr.mask])-1))
			if gr.score > bestScore && !nested(masks, groups, chosen, g) {
				best, bestScore = g, gr.score
			}
		}
		if best < 0 || (len(chosen) > 0 && bestScore < p.NextGain*firstScore) {
			break
		}
		if len(chosen) == 0 {
			firstScore = bestScore
		}
		chosen = append(chosen, best)
		gr := groups[best]
		c := Cause{
			Element:  map[string]string{},
			Share:    shareOf(gr.v - gr.e),
			Support:  gr.c,
			Excess:   gr.v - gr.e,
			Score:    gr.score,
		}
		if gr.c > 0 {
			c.KPI, c.Expected = gr.v/gr.c, gr.e0/gr.c
		}
		if gr.cb > 0 {
			c.Baseline = gr.vb / gr.cb
		}
		for x, j := range masks[gr.mask] {
			c.Element[t.Attrs[j]] = t.Values[j][gr.vals[x]]
		}
		// Confidence: its share of the anomaly, times its margin over the
		// best overlapping candidate one attribute coarser or finer.
		rival := 0.0
		for g := range groups {
			if g != best && adjacent(masks, groups, best, g) {
				rival = max(rival, groups[g].score)
			}
		}
		c.Confidence = c.Share * max(0, 1-rival/gr.score)
		res.Causes = append(res.Causes, c)
		for li := range leaves {
			if member[gr.mask][li] == int32(best) {
				explained[li] = true
			}
		}
	}
	return res, nil
}

// contains reports whether conjunction a implies b: b's attributes are a
// subset of a's with the same values.
func contains(masks [][]int, groups []group, a, b int) bool {
	ma, mb := masks[groups[a].mask], masks[groups[b].mask]
	for y, j := range mb {
		x := slices.Index(ma, j)
		if x < 0 || groups[a].vals[x] != groups[b].vals[y] {
			return false
		}
	}
	return true
}

// nested reports whether candidate g is a coarser or finer form of a cause
// already chosen.
func nested(masks [][]int, groups []group, chosen []int, g int) bool {
	for _, c := range chosen {
		if contains(masks, groups, c, g) || contains(masks, groups, g, c) {
			return true
		}
	}
	return false
}

// adjacent reports whether g is b with one attribute added or removed.
func adjacent(masks [][]int, groups []group, b, g int) bool {
	lb, lg := len(masks[groups[b].mask]), len(masks[groups[g].mask])
	switch lg - lb {
	case 1:
		return contains(masks, groups, g, b)
	case -1:
		return contains(masks, groups, b, g)
	}
	return false
}

// String renders a cause's element as attr=value pairs, sorted by attribute.
func (c Cause) String() string {
	keys := make([]string, 0, len(c.Element))
	for k := range c.Element {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + c.Element[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
