package localize

import (
	"os"
	"testing"
)

// TestRSDiag is a development aid: RS_CASE=<case name> prints, for that RS
// dev case, every one-attribute candidate holding over 10% of the excess and
// its two-attribute refinements (numerator, expectation, viewers, rise,
// score), recomputed independently of Localize. Skipped without RS_CASE.
func TestRSDiag(t *testing.T) {
	name := os.Getenv("RS_CASE")
	if name == "" {
		t.Skip()
	}
	for _, c := range loadRS(t) {
		if c.name != name {
			continue
		}
		p := DefaultPlan
		p.MaxCauses = 1
		r, _ := p.Localize(c.table, c.at)
		t.Logf("total KPI %.4f exp %.4f excess %.1f", r.KPI, r.Expected, r.Excess)
		// print every order-1 and order-2 candidate with share >= 0.1
		tab := c.table
		for a := range tab.Attrs {
			for v := range tab.Values[a] {
				el := map[string]string{tab.Attrs[a]: tab.Values[a][v]}
				s := diagSums(tab, c.at, r.Baseline, p, el)
				if s.v-s.e > 0.1*r.Excess {
					t.Logf("%v v=%.0f e=%.1f c=%.0f dev=%.2f lr=%.0f", el, s.v, s.e, s.c, s.dev(), s.lr())
					for b := range tab.Attrs {
						if b == a {
							continue
						}
						for w := range tab.Values[b] {
							el2 := map[string]string{tab.Attrs[a]: tab.Values[a][v], tab.Attrs[b]: tab.Values[b][w]}
							s2 := diagSums(tab, c.at, r.Baseline, p, el2)
							if s2.c > 0 {
								t.Logf("    %v v=%.0f e=%.1f c=%.0f dev=%.2f lr=%.0f", el2, s2.v, s2.e, s2.c, s2.dev(), s2.lr())
							}
						}
					}
				}
			}
		}
	}
}

func diagSums(t *Table, at int64, base []int64, p Plan, el map[string]string) sums {
	// sub-table restricted to el, localize trivially by computing totals
	var vb, cb float64
	for _, r := range t.Rows {
		for _, m := range base {
			if r.Min == m {
				vb += r.Num
				cb += r.Den
			}
		}
	}
	r0 := vb / cb
	type lk = string
	lv := map[lk]*[4]float64{}
	for _, r := range t.Rows {
		ok := r.Min == at
		isb := false
		for _, m := range base {
			if r.Min == m {
				isb = true
			}
		}
		if !ok && !isb {
			continue
		}
		match := true
		k := ""
		for j, id := range r.Key {
			if w, has := el[t.Attrs[j]]; has && w != t.Values[j][id] {
				match = false
			}
			k += t.Values[j][id] + "|"
		}
		if !match {
			continue
		}
		if lv[k] == nil {
			lv[k] = &[4]float64{}
		}
		if ok {
			lv[k][0] += r.Num
			lv[k][1] += r.Den
		} else {
			lv[k][2] += r.Num
			lv[k][3] += r.Den
		}
	}
	var s sums
	for _, x := range lv {
		s.v += x[0]
		s.c += x[1]
		s.e += x[1] * (x[2] + p.PriorViewers*r0) / (x[3] + p.PriorViewers)
	}
	return s
}
