package localize

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// synth builds a leaf table over attributes a (5 values), b (4) and c (3):
// minutes 0..5 (Unix seconds 0, 60, ...), each leaf with den viewers a
// minute and a stall ratio of 5% ± noise; in the last minute the leaves
// matching any of causes stall at ratio hit.
func synth(seed uint64, den func(r *rand.Rand) float64, hit float64, causes ...map[string]string) (*Table, int64) {
	r := rand.New(rand.NewPCG(seed, 1))
	t := NewTable("a", "b", "c")
	const last = 5
	for m := int64(0); m <= last; m++ {
		for a := range 5 {
			for b := range 4 {
				for c := range 3 {
					vals := []string{"a" + string(rune('0'+a)), "b" + string(rune('0'+b)), "c" + string(rune('0'+c))}
					n := den(r)
					ratio := 0.05 * (0.8 + 0.4*r.Float64())
					if m == last {
						for _, cs := range causes {
							if matches(cs, t.Attrs, vals) {
								ratio = hit
							}
						}
					}
					// binomial-ish count, rounded, never above n
					v := min(n, float64(int(n*ratio+r.Float64())))
					t.Add(m*60, v, n, vals...)
				}
			}
		}
	}
	return t, last * 60
}

func matches(el map[string]string, attrs, vals []string) bool {
	for k, v := range el {
		if vals[slices.Index(attrs, k)] != v {
			return false
		}
	}
	return true
}

func elems(cs []Cause) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	slices.Sort(out)
	return out
}

func TestLocalizeSynthetic(t *testing.T) {
	dense := func(r *rand.Rand) float64 { return float64(200 + r.IntN(100)) }
	sparse := func(r *rand.Rand) float64 { return float64(2 + r.IntN(5)) }
	// skewed: under b=b0, a1 and a3 hold nearly all viewers, so {b=b0}
	// gathers most of a cause at a1 and a3 and outscores each of them.
	// Leaves are drawn in a, b, c order, 60 a minute.
	n := 0
	skewed := func(r *rand.Rand) float64 {
		a, b := n/12%5, n/3%4
		n++
		switch hot := a == 1 || a == 3; {
		case b == 0 && hot:
			return float64(600 + r.IntN(100))
		case b == 0:
			return float64(50 + r.IntN(10))
		case hot:
			return float64(60 + r.IntN(10))
		}
		return float64(100 + r.IntN(20))
	}
	for _, tc := range []struct {
		name   string
		den    func(*rand.Rand) float64
		hit    float64
		causes []map[string]string
		want   []string
	}{
		{"one cause at a 2-attribute conjunction", dense, 0.3,
			[]map[string]string{{"a": "a1", "b": "b2"}}, []string{"{a=a1, b=b2}"}},
		{"one cause at one attribute", dense, 0.3,
			[]map[string]string{{"c": "c0"}}, []string{"{c=c0}"}},
		{"two independent causes", dense, 0.3,
			[]map[string]string{{"a": "a3"}, {"b": "b0", "c": "c1"}}, []string{"{a=a3}", "{b=b0, c=c1}"}},
		{"sparse leaves, one cause", sparse, 0.6,
			[]map[string]string{{"a": "a2"}}, []string{"{a=a2}"}},
		{"two causes mostly under one value of another attribute", skewed, 0.3,
			[]map[string]string{{"a": "a1"}, {"a": "a3"}}, []string{"{a=a1}", "{a=a3}"}},
		{"no anomaly", dense, 0.05, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				tab, at := synth(seed, tc.den, tc.hit, tc.causes...)
				res, err := DefaultPlan.Localize(tab, at)
				if err != nil {
					t.Fatal(err)
				}
				if got := elems(res.Causes); !slices.Equal(got, tc.want) {
					t.Errorf("seed %d: causes %v, want %v (%+v)", seed, got, tc.want, res.Causes)
				}
				for _, c := range res.Causes {
					if c.Share <= 0 || c.Share > 1 || c.Confidence < 0 || c.Confidence > 1 || c.KPI <= c.Expected || c.Support <= 0 {
						t.Errorf("seed %d: implausible cause %+v", seed, c)
					}
				}
			}
		})
	}
}

func TestLocalizeErrors(t *testing.T) {
	tab, _ := synth(1, func(*rand.Rand) float64 { return 10 }, 0.05)
	if _, err := DefaultPlan.Localize(tab, 12345); err == nil || !strings.Contains(err.Error(), "no rows at minute 12345") {
		t.Errorf("missing minute: %v", err)
	}
	if _, err := DefaultPlan.Localize(tab, 0); err == nil || !strings.Contains(err.Error(), "no minute before") {
		t.Errorf("first minute: %v", err)
	}
}
