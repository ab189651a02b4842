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
// dilutes it with normal leaves. The chosen set is then split when its rise
// sits in a few children that each also rise outside it (two bitrates both
// mostly under p2p=1), and widened to a parent while the parent's other
// leaves rise too (the ripple of one cause). Causes are taken greedily:
// after each, its leaves count as explained and the scores are computed
// again.
type Plan struct {
	// Baseline and expectation.

	// BaselineMinutes is how many minutes before the anomalous one form the
	// baseline (the latest ones present in the table).
	BaselineMinutes int
	// PriorViewers is the weight, in denominator units, of the table-wide
	// baseline ratio in each leaf's baseline ratio: a leaf with few baseline
	// viewers is expected to behave like the whole table.
	PriorViewers float64

	// Candidates: which conjunctions may be a cause.

	// MaxOrder is the most attributes in one cause (1..4).
	MaxOrder int
	// MinSupport is the least denominator (viewers) a cause has in the
	// anomalous minute.
	MinSupport float64
	// MinDeviation is the least relative rise of a cause's numerator over
	// its expectation (V/E − 1).
	MinDeviation float64
	// MinScore is the least likelihood-ratio score (natural-log units) of a
	// cause; when no candidate reaches it the minute counts as normal and no
	// cause is returned.
	MinScore float64
	// MinShare is the least share of the minute's excess numerator a cause
	// explains.
	MinShare float64
	// OrderBias multiplies a candidate's score once per attribute beyond the
	// first: below 1 it prefers coarser causes, above 1 finer ones.
	OrderBias float64

	// Granularity.

	// Ripple: a chosen set is widened to its parent (one attribute
	// dropped) when the parent's other leaves rise too, by at least Ripple
	// times the set's own relative rise (0: never widen).
	Ripple float64
	// RippleScore: ... and with a likelihood-ratio score of at least this.
	RippleScore float64
	// RippleBroad: ... and broadly, the siblings that rise holding at least
	// this share of the other leaves' expected numerator (0: no test). Off
	// by default: it cost RS dev F1.
	RippleBroad float64
	// CoarsenMass: a set is also widened when the parent's other leaves
	// hold less than this share of the parent's viewers (0: off; it cost RS
	// dev F1).
	CoarsenMass float64
	// RefineMass: a chosen set is split into its rising children along one
	// attribute when its normal children hold at least this share of its
	// expected numerator (0: never split).
	RefineMass float64
	// RefineExcess: ... and the rising children (two or more) hold at least
	// this share of its excess.
	RefineExcess float64
	// RefineLateral: keep a split only when every piece then widens out of
	// the split set (two causes across it, such as two bitrates that both
	// sit mostly under p2p=1), not when the pieces stay inside it.
	RefineLateral bool
	// RefineNormal: when splitting, a child whose relative rise is below
	// RefineNormal times the parent's counts as normal.
	RefineNormal float64

	// Several causes.

	// MaxCauses is the most causes returned.
	MaxCauses int
	// NextShare: a second or later cause must explain at least this share
	// of the minute's excess (on top of MinShare)...
	NextShare float64
	// NextGain: ... and score at least NextGain times the first cause.
	NextGain float64
	// Starts is how many of the best first-round candidates each start a
	// greedy answer (1: plain greedy, the default: more cost RS dev F1);
	// the answer with the highest total score, times CauseDiscount per
	// cause beyond the first, wins.
	Starts        int
	CauseDiscount float64

	// Denser breaks ties: of candidates with one score (sparse leaves
	// whose expectations are all under the score's floor), the one with
	// the higher ratio, without the other's unaffected viewers (a node
	// rather than its CDN). Off: the first in attribute order (RS dev F1
	// is lower with it).
	Denser bool
}

// DefaultPlan is the plan tuned on the RS development set.
var DefaultPlan = Plan{
	BaselineMinutes: 4,
	PriorViewers:    5,
	MaxOrder:        3,
	MinSupport:      5,
	MinDeviation:    0.2,
	MinScore:        10,
	MinShare:        0.1,
	OrderBias:       1,
	Ripple:          0.05,
	RippleScore:     10,
	RippleBroad:     0,
	CoarsenMass:     0,
	RefineMass:      0.05,
	RefineExcess:    0.8,
	RefineNormal:    0.2,
	RefineLateral:   true,
	MaxCauses:       3,
	NextShare:       0.1,
	NextGain:        0,
	Starts:          1,
	CauseDiscount:   0.8,
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
var ErrNoRows = errors.New("no rows at minute")

// group is one candidate: a conjunction over the attributes of its mask.
type group struct {
	mask  int // index into masks
	vals  []uint32
	v, e  float64 // numerator, working expectation
	c     float64
	e0    float64 // expectation before any cause was taken
	vb    float64 // baseline numerator and denominator
	cb    float64
	score float64
}

// denser says a has a higher ratio than b: of two candidates with one
// score (sparse leaves, expectations under the score's floor), the one
// without b's unaffected viewers (a node rather than its CDN).
func denser(a, b *group) bool { return a.v*b.c > b.v*a.c }

// Localize finds the causes of the anomaly at minute at, against the
// BaselineMinutes minutes before it.
func (p Plan) Localize(t *Table, at int64) (*Result, error) {
	nb := max(p.BaselineMinutes, 1)
	mins := t.Minutes()
	i := sort.Search(len(mins), func(i int) bool { return mins[i] >= at })
	if i == len(mins) || mins[i] != at {
		if len(mins) == 0 {
			return nil, fmt.Errorf("%w %d: the table is empty", ErrNoRows, at)
		}
		return nil, fmt.Errorf("%w %d: the table has %d minutes from %d to %d", ErrNoRows, at, len(mins), mins[0], mins[len(mins)-1])
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
	var leaves []Leaf
	idx := map[string]int{}
	buf := make([]byte, 0, 4*len(t.Attrs))
	var vbT, cbT float64
	for _, r := range t.Rows {
		isAt := r.Min == at
		if !isAt && !inBase[r.Min] {
			continue
		}
		buf = keyBytes(buf[:0], r.Key)
		li, ok := idx[string(buf)]
		if !ok {
			li = len(leaves)
			idx[string(buf)] = li
			leaves = append(leaves, Leaf{Key: r.Key})
		}
		if isAt {
			leaves[li].V += r.Num
			leaves[li].C += r.Den
		} else {
			leaves[li].VB += r.Num
			leaves[li].CB += r.Den
			vbT += r.Num
			cbT += r.Den
		}
	}
	// Expectation: each leaf's own baseline ratio, smoothed toward the
	// table's.
	r0 := 0.0
	if cbT > 0 {
		r0 = vbT / cbT
	}
	for li, l := range leaves {
		rate := r0
		if d := l.CB + p.PriorViewers; d > 0 {
			rate = (l.VB + p.PriorViewers*r0) / d
		}
		leaves[li].E = l.C * rate
	}
	res := &Result{At: at, Baseline: base}
	res.KPI, res.Expected, res.Excess = leafTotals(leaves)
	res.Causes = p.Search(t.Attrs, t.Values, leaves)
	return res, nil
}

// A Leaf is one full combination of attribute values (Key[j] indexes the
// values of attribute j) in the window being localized: its numerator V,
// denominator C and expected numerator E, and its baseline sums VB, CB
// (reported as a cause's Baseline; 0 when there is no own history).
type Leaf struct {
	Key     []uint32
	V, C, E float64
	VB, CB  float64
}

// leafTotals returns the leaves' ratio, expected ratio and excess numerator.
func leafTotals(leaves []Leaf) (kpi, expected, excess float64) {
	var vT, cT, eT float64
	for _, l := range leaves {
		vT += l.V
		cT += l.C
		eT += l.E
	}
	if cT > 0 {
		kpi, expected = vT/cT, eT/cT
	}
	return kpi, expected, vT - eT
}

func keyBytes(buf []byte, key []uint32) []byte {
	for _, k := range key {
		buf = append(buf, byte(k), byte(k>>8), byte(k>>16), byte(k>>24))
	}
	return buf
}

// Search finds the causes of the leaves' excess over their expectations:
// the conjunctions of attribute values (names attrs, values values[j] for
// attribute j) that explain it, best first; none when nothing rose enough.
// Localize supplies expectations from each leaf's own baseline; the live
// localizer supplies them from peers.
func (p Plan) Search(attrs []string, values [][]string, leaves []Leaf) []Cause {
	if p.MaxOrder < 1 {
		p.MaxOrder = 1
	}
	if p.MaxOrder > 4 {
		p.MaxOrder = 4
	}
	if p.MaxCauses < 1 {
		p.MaxCauses = 1
	}
	na := len(attrs)
	e := make([]float64, len(leaves))
	for li, l := range leaves {
		e[li] = l.E
	}
	_, _, excess := leafTotals(leaves)
	buf := make([]byte, 0, 4*na)

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
				k := l.Key[j]
				buf = append(buf, byte(k), byte(k>>8), byte(k>>16), byte(k>>24))
			}
			g, ok := gi[string(buf)]
			if !ok {
				g = int32(len(groups))
				gi[string(buf)] = g
				vals := make([]uint32, len(m))
				for x, j := range m {
					vals[x] = l.Key[j]
				}
				groups = append(groups, group{mask: mi, vals: vals})
			}
			member[mi][li] = g
			gr := &groups[g]
			gr.v += l.V
			gr.c += l.C
			gr.e0 += e[li]
			gr.vb += l.VB
			gr.cb += l.CB
		}
	}

	total := excess
	excessPos := 0.0
	for li, l := range leaves {
		excessPos += max(0, l.V-e[li])
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
	work := func(li int) float64 {
		if explained[li] {
			return leaves[li].V
		}
		return e[li]
	}
	aggr := func(cj conj) (s sums) {
		for li, l := range leaves {
			if cj.match(l.Key) {
				s.v += l.V
				s.c += l.C
				s.e += work(li)
				s.e0 += e[li]
				s.vb += l.VB
				s.cb += l.CB
			}
		}
		return s
	}
	groupConj := func(g int) conj {
		return conj{attrs: masks[groups[g].mask], vals: groups[g].vals}
	}
	keys := make([][]uint32, len(leaves))
	leafV := make([]float64, len(leaves))
	for li, l := range leaves {
		keys[li], leafV[li] = l.Key, l.V
	}
	// score recomputes the working expectations (explained leaves expect
	// what they got) and every candidate's score, skipping candidates nested
	// in chosen; it returns the best one (-1: none).
	score := func(chosen []conj) (int, float64) {
		for g := range groups {
			groups[g].e = 0
		}
		for mi := range masks {
			for li := range leaves {
				groups[member[mi][li]].e += work(li)
			}
		}
		best, bestScore := -1, 0.0
		for g := range groups {
			gr := &groups[g]
			gr.score = 0
			s := sums{v: gr.v, e: gr.e, c: gr.c}
			if !p.eligible(s, shareOf) {
				continue
			}
			gr.score = s.lr() * math.Pow(p.OrderBias, float64(len(masks[gr.mask])-1))
			if (gr.score > bestScore || p.Denser && gr.score == bestScore && best >= 0 && denser(gr, &groups[best])) && !nestedAny(chosen, groupConj(g)) {
				best, bestScore = g, gr.score
			}
		}
		return best, bestScore
	}
	// solve takes causes greedily, the first one forced when forced ≥ 0; it
	// returns them and the sum of their likelihood-ratio scores.
	solve := func(forced int) ([]Cause, float64) {
		clear(explained)
		var causes []Cause
		var chosen []conj
		var firstScore, total float64
		for len(causes) < p.MaxCauses {
			best, bestScore := score(chosen)
			if len(causes) == 0 && forced >= 0 {
				best, bestScore = forced, groups[forced].score
			}
			if best < 0 || bestScore <= 0 || (len(causes) > 0 && (bestScore < p.NextGain*firstScore ||
				shareOf(groups[best].v-groups[best].e) < p.NextShare)) {
				break
			}
			if len(causes) == 0 {
				firstScore = bestScore
			}

			// Granularity: split a set whose rise sits in a few children
			// along one attribute (several causes), then widen each piece
			// while the rest of its parent rises too (one cause's ripple).
			pieces, split := p.refine(groupConj(best), aggr, keys, shareOf)
			if split >= 0 && p.RefineLateral {
				// keep the split only when every piece widens out of the
				// set: the causes lie across it, not inside it
				for _, cj := range pieces {
					if p.coarsen(cj, split, aggr, keys).implies(groupConj(best)) {
						pieces, split = []conj{groupConj(best)}, -1
						break
					}
				}
			}
			took := false
			for _, cj := range pieces {
				if len(causes) >= p.MaxCauses {
					break
				}
				cj = p.coarsen(cj, split, aggr, keys)
				if nestedAny(chosen, cj) {
					continue
				}
				s := aggr(cj)
				c := Cause{
					Element: map[string]string{},
					Share:   shareOf(s.v - s.e),
					Support: s.c,
					Excess:  s.v - s.e,
					Score:   s.lr(),
				}
				if s.c > 0 {
					c.KPI, c.Expected = s.v/s.c, s.e0/s.c
				}
				if s.cb > 0 {
					c.Baseline = s.vb / s.cb
				}
				for x, j := range cj.attrs {
					c.Element[attrs[j]] = values[j][cj.vals[x]]
				}
				c.Confidence = c.Share * p.purity(cj, keys, leafV, e)
				causes = append(causes, c)
				chosen = append(chosen, cj)
				total += c.Score
				took = true
				for li, l := range leaves {
					if cj.match(l.Key) {
						explained[li] = true
					}
				}
			}
			if !took {
				break
			}
		}
		return causes, total
	}

	// Several starts: the greedy answer, and the answers that begin with
	// each of the next best first-round candidates; the best total score
	// wins, discounted per extra cause.
	clear(explained)
	score(nil)
	order := make([]int, 0, len(groups))
	for g := range groups {
		if groups[g].score > 0 {
			order = append(order, g)
		}
	}
	slices.SortFunc(order, func(x, y int) int {
		if c := cmpDesc(groups[x].score, groups[y].score); c != 0 || !p.Denser {
			return c
		}
		if denser(&groups[x], &groups[y]) {
			return -1
		}
		if denser(&groups[y], &groups[x]) {
			return 1
		}
		return 0
	})
	if len(order) > max(p.Starts, 1) {
		order = order[:max(p.Starts, 1)]
	}
	first := make([]float64, len(groups))
	for g := range groups {
		first[g] = groups[g].score
	}
	bestVal := -1.0
	var best []Cause
	for _, g := range order {
		// restore the first-round scores that solve's forced start reads
		for h := range groups {
			groups[h].score = first[h]
		}
		causes, total := solve(g)
		val := total * math.Pow(p.CauseDiscount, float64(max(len(causes)-1, 0)))
		if val > bestVal {
			bestVal, best = val, causes
		}
	}
	return best
}

// sums aggregates a set of leaves.
type sums struct{ v, e, c, e0, vb, cb float64 }

// dev is the relative rise of the numerator over its expectation.
func (s sums) dev() float64 { return s.v/max(s.e, 0.5) - 1 }

// lr is the Poisson log likelihood-ratio of "the set's numerator rose by one
// factor" against "as expected" (0 when it did not rise).
func (s sums) lr() float64 {
	ee := max(s.e, 0.5)
	if s.v <= ee {
		return 0
	}
	return s.v*math.Log(s.v/ee) - (s.v - ee)
}

func (p Plan) eligible(s sums, shareOf func(float64) float64) bool {
	return s.c >= p.MinSupport && s.v > s.e && s.dev() >= p.MinDeviation &&
		shareOf(s.v-s.e) >= p.MinShare && s.lr() >= p.MinScore
}

// A conj is a conjunction of attribute values, attributes ascending.
type conj struct {
	attrs []int
	vals  []uint32
}

func (c conj) match(key []uint32) bool {
	for x, j := range c.attrs {
		if key[j] != c.vals[x] {
			return false
		}
	}
	return true
}

func (c conj) has(j int) bool { return slices.Contains(c.attrs, j) }

func (c conj) with(j int, v uint32) conj {
	x, _ := slices.BinarySearch(c.attrs, j)
	return conj{attrs: slices.Insert(slices.Clone(c.attrs), x, j), vals: slices.Insert(slices.Clone(c.vals), x, v)}
}

func (c conj) without(j int) conj {
	x := slices.Index(c.attrs, j)
	return conj{attrs: slices.Delete(slices.Clone(c.attrs), x, x+1), vals: slices.Delete(slices.Clone(c.vals), x, x+1)}
}

// implies reports whether a implies b: b's attribute values are among a's.
func (a conj) implies(b conj) bool {
	for y, j := range b.attrs {
		x := slices.Index(a.attrs, j)
		if x < 0 || a.vals[x] != b.vals[y] {
			return false
		}
	}
	return true
}

func nestedAny(chosen []conj, g conj) bool {
	for _, c := range chosen {
		if c.implies(g) || g.implies(c) {
			return true
		}
	}
	return false
}

// adjacent reports whether g is b with one attribute added or removed.
func adjacent(b, g conj) bool {
	switch len(g.attrs) - len(b.attrs) {
	case 1:
		return g.implies(b)
	case -1:
		return b.implies(g)
	}
	return false
}

// refine splits s along the attribute where its rise is most concentrated:
// children rising less than Ripple times s's own rise are "normal"; when they
// hold at least RefineMass of s's expected numerator and two or more rising
// children hold at least RefineExcess of its excess, those children replace
// s. It returns the pieces and the split attribute (-1: none).
func (p Plan) refine(s conj, aggr func(conj) sums, keys [][]uint32, shareOf func(float64) float64) ([]conj, int) {
	if p.RefineMass <= 0 {
		return []conj{s}, -1
	}
	ss := aggr(s)
	devS, exS := ss.dev(), ss.v-ss.e
	if exS <= 0 {
		return []conj{s}, -1
	}
	na := 0
	if len(keys) > 0 {
		na = len(keys[0])
	}
	bestA, bestMass := -1, 0.0
	var bestKids []conj
	for a := 0; a < na; a++ {
		if s.has(a) {
			continue
		}
		seen := map[uint32]bool{}
		var normalE, anomEx float64
		var kids []conj
		for _, k := range keys {
			if !s.match(k) || seen[k[a]] {
				continue
			}
			seen[k[a]] = true
			cj := s.with(a, k[a])
			cs := aggr(cj)
			if cs.dev() < p.RefineNormal*devS {
				normalE += cs.e
			} else if p.eligible(cs, shareOf) {
				anomEx += cs.v - cs.e
				kids = append(kids, cj)
			}
		}
		mass := normalE / max(ss.e, 0.5)
		if len(kids) >= 2 && len(kids) <= p.MaxCauses && mass >= p.RefineMass && anomEx >= p.RefineExcess*exS && mass > bestMass {
			bestA, bestMass, bestKids = a, mass, kids
		}
	}
	if bestA < 0 {
		return []conj{s}, -1
	}
	slices.SortFunc(bestKids, func(x, y conj) int {
		ex, ey := aggr(x), aggr(y)
		return cmpDesc(ex.v-ex.e, ey.v-ey.e)
	})
	return bestKids, bestA
}

// purity is the share of s's expected numerator that sits in leaves which
// rose by at least MinDeviation themselves: 1 when the whole set is hit, low
// when s mixes hit and normal leaves (too coarse).
func (p Plan) purity(s conj, keys [][]uint32, v, e []float64) float64 {
	var all, hit float64
	for li, k := range keys {
		if !s.match(k) {
			continue
		}
		all += e[li]
		if v[li] >= (1+p.MinDeviation)*e[li] {
			hit += e[li]
		}
	}
	if all <= 0 {
		return 0
	}
	return hit / all
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// coarsen drops attributes from s (never keep) while the rest of the parent,
// the parent's leaves outside s, rises too: by at least Ripple times s's
// relative rise with a score of at least RippleScore, and broadly, its rising
// siblings (the rest split by the dropped attribute) holding at least
// RippleBroad of its expected numerator. Then the cause is the parent. The
// breadth test keeps a second, separate cause among the siblings from
// widening the first.
func (p Plan) coarsen(s conj, keep int, aggr func(conj) sums, keys [][]uint32) conj {
	if p.Ripple <= 0 {
		return s
	}
	for len(s.attrs) > 1 {
		ss := aggr(s)
		devS := ss.dev()
		best, bestLR := -1, 0.0
		for x, a := range s.attrs {
			if a == keep {
				continue
			}
			parent := s.without(a)
			ps := aggr(parent)
			r := sums{v: ps.v - ss.v, e: ps.e - ss.e, c: ps.c - ss.c}
			if r.c < p.MinSupport || r.v <= r.e || r.dev() < p.Ripple*devS || r.lr() < p.RippleScore {
				continue
			}
			if p.RippleBroad > 0 {
				seen := map[uint32]bool{s.vals[x]: true}
				risingE := 0.0
				for _, k := range keys {
					if seen[k[a]] || !parent.match(k) {
						continue
					}
					seen[k[a]] = true
					sib := aggr(parent.with(a, k[a]))
					if sib.dev() >= p.Ripple*devS {
						risingE += sib.e
					}
				}
				if risingE < p.RippleBroad*r.e {
					continue
				}
			}
			if lr := ps.lr(); lr > bestLR {
				best, bestLR = a, lr
			}
		}
		if best < 0 {
			return s
		}
		s = s.without(best)
	}
	return s
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
