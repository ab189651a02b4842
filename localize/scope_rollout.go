package localize

import (
	"fmt"
	"math"
	"time"
)

// rolloutTest says whether version v is rolling out, from the first
// attempts to play by version and second (rows) over the history and the
// span (from: the span's start, Unix s), with the figures that decide it.
// Two count-based tests, either enough, each on at least RolloutMinStarts
// of v's starts and at level RolloutAlpha, so that a few starts of a
// steady version falling late by chance do not make it new:
//   - appeared: v's first start came after n0 starts of other versions;
//     at the share s it had from then to its last start, seeing none of
//     it in those n0 has probability (1-s)^n0.
//   - grew: v had a of the n1 starts before the span and b of the n2 in
//     it, its share at least RolloutRamp × larger; at a steady share, a
//     is Binomial(a+b, n1/(n1+n2)) and P(A ≤ a) is the p-value.
func (sp ScopePlan) rolloutTest(rows []versionRow, v string, from int64) (bool, string) {
	var first, last int64
	var k, a, n1, n2 float64
	for _, r := range rows {
		if r.Sec < from {
			n1 += r.N
		} else {
			n2 += r.N
		}
		if r.Version != v || r.N <= 0 {
			continue
		}
		k += r.N
		if r.Sec < from {
			a += r.N
		}
		if first == 0 || r.Sec < first {
			first = r.Sec
		}
		last = max(last, r.Sec)
	}
	var n0, during float64
	for _, r := range rows {
		switch {
		case r.Sec < first:
			n0 += r.N
		case r.Sec <= last:
			during += r.N
		}
	}
	b := k - a
	text := fmt.Sprintf("play_start: %s had %.0f of %.0f first attempts before the span and %.0f of %.0f in it", v, a, n1, b, n2)
	if k < sp.RolloutMinStarts {
		return false, text + fmt.Sprintf(" (too few to tell, under %.0f)", sp.RolloutMinStarts)
	}
	s := share(k, during)
	pAppeared := math.Pow(1-s, n0)
	text += fmt.Sprintf("; first seen %s after %.0f starts of other versions (p %.2g at its %.0f%% share since)",
		time.Unix(first, 0).UTC().Format("15:04:05"), n0, pAppeared, 100*s)
	if pAppeared < sp.RolloutAlpha {
		return true, text
	}
	if n1 > 0 && n2 > 0 && share(b, n2) >= sp.RolloutRamp*share(a, n1) {
		p := binomCDF(int(math.Round(a)), int(math.Round(k)), n1/(n1+n2))
		text += fmt.Sprintf("; its share grew from %.0f%% to %.0f%% (p %.2g)", pct(a, n1), pct(b, n2), p)
		return p < sp.RolloutAlpha, text
	}
	return false, text
}

// binomCDF is P(X ≤ x) for X ~ Binomial(n, p).
func binomCDF(x, n int, p float64) float64 {
	if x >= n {
		return 1
	}
	sum := 0.0
	for i := 0; i <= x; i++ {
		lg := lgamma(n+1) - lgamma(i+1) - lgamma(n-i+1)
		sum += math.Exp(lg + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return math.Min(1, sum)
}

func lgamma(n int) float64 {
	v, _ := math.Lgamma(float64(n))
	return v
}
