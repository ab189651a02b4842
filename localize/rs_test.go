package localize

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The RS development set (68 live-streaming stall incidents with labels):
// $LASTMILE_RS_DEV, else shared/data/rs-dev in a parent folder of this
// package (../shared/data/rs-dev from a checkout at /work/main).

type rsCase struct {
	name  string
	at    int64
	table *Table
	truth []map[string]string
}

func rsDir(tb testing.TB) string {
	if d := os.Getenv("LASTMILE_RS_DEV"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "shared", "data", "rs-dev")
		if st, err := os.Stat(filepath.Join(c, "anomaly.yaml")); err == nil && !st.IsDir() {
			return c
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	tb.Skip("RS dev set not found: set LASTMILE_RS_DEV or put it at ../shared/data/rs-dev")
	return ""
}

var (
	rsEntry = regexp.MustCompile(`(?m)^- data:\s*(.+?)\s*\n\s*timestamp:\s*(\d+)\s*\n\s*cause:\s*(.+?)\s*$`)
	rsMap   = regexp.MustCompile(`\{[^}]*\}`)
	rsPair  = regexp.MustCompile(`'([^']+)'\s*:\s*('([^']*)'|[^,}\s]+)`)
)

// parseRSLabels reads anomaly.yaml: cause is one {'attr':value,...} mapping or
// a list of them; values compare as strings.
func parseRSLabels(b []byte) map[string]rsCase {
	out := map[string]rsCase{}
	for _, m := range rsEntry.FindAllStringSubmatch(string(b), -1) {
		at, _ := strconv.ParseInt(m[2], 10, 64)
		c := rsCase{name: m[1], at: at}
		for _, mp := range rsMap.FindAllString(m[3], -1) {
			el := map[string]string{}
			for _, p := range rsPair.FindAllStringSubmatch(mp, -1) {
				v := p[2]
				if strings.HasPrefix(v, "'") {
					v = p[3]
				}
				el[p[1]] = v
			}
			c.truth = append(c.truth, el)
		}
		out[c.name] = c
	}
	return out
}

var rsCache []rsCase

func loadRS(tb testing.TB) []rsCase {
	if rsCache != nil {
		return rsCache
	}
	dir := rsDir(tb)
	b, err := os.ReadFile(filepath.Join(dir, "anomaly.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	labels := parseRSLabels(b)
	files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	sort.Strings(files)
	var cases []rsCase
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".csv")
		c, ok := labels[name]
		if !ok {
			tb.Fatalf("%s: no label", name)
		}
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		c.table, err = ReadCSV(fh)
		fh.Close()
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		cases = append(cases, c)
	}
	if len(cases) != len(labels) || len(cases) == 0 {
		tb.Fatalf("%d csv files, %d labels", len(cases), len(labels))
	}
	rsCache = cases
	return cases
}

func sameElement(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// scoreCase counts exact-set matches (the RS customary rule).
func scoreCase(pred []Cause, truth []map[string]string) (tp, fp, fn int) {
	used := make([]bool, len(truth))
	for _, p := range pred {
		hit := false
		for i, t := range truth {
			if !used[i] && sameElement(p.Element, t) {
				used[i], hit = true, true
				break
			}
		}
		if hit {
			tp++
		} else {
			fp++
		}
	}
	return tp, fp, len(truth) - tp
}

type rsScore struct {
	tp, fp, fn     int
	confTP, confFP float64 // summed confidence of right and wrong causes
}

func (s rsScore) f1() float64 {
	if s.tp == 0 {
		return 0
	}
	return 2 * float64(s.tp) / float64(2*s.tp+s.fp+s.fn)
}

func (s *rsScore) add(o rsScore) {
	s.tp += o.tp
	s.fp += o.fp
	s.fn += o.fn
	s.confTP += o.confTP
	s.confFP += o.confFP
}

func evalPlan(tb testing.TB, p Plan, cases []rsCase, verbose bool) rsScore {
	var s rsScore
	for _, c := range cases {
		r, err := p.Localize(c.table, c.at)
		if err != nil {
			tb.Fatalf("%s: %v", c.name, err)
		}
		tp, fp, fn := scoreCase(r.Causes, c.truth)
		s.add(rsScore{tp: tp, fp: fp, fn: fn})
		for _, x := range r.Causes {
			hit := false
			for _, el := range c.truth {
				hit = hit || sameElement(x.Element, el)
			}
			if hit {
				s.confTP += x.Confidence
			} else {
				s.confFP += x.Confidence
			}
		}
		if verbose && (fp > 0 || fn > 0) {
			var got []string
			for _, x := range r.Causes {
				got = append(got, fmt.Sprintf("%s s=%.0f sh=%.2f c=%.2f", x, x.Score, x.Share, x.Confidence))
			}
			tb.Logf("%-40s truth %v got %v", c.name, c.truth, got)
		}
	}
	return s
}

// rsGrid is the small grid of plans the 2-fold figure chooses from.
func rsGrid() []Plan {
	var ps []Plan
	for _, ripple := range []float64{0.03, 0.05, 0.1} {
		for _, rscore := range []float64{5, 10, 30} {
			for _, mass := range []float64{0.02, 0.05, 0.2} {
				for _, normal := range []float64{0.2, 0.35} {
					for _, share := range []float64{0.05, 0.1} {
						p := DefaultPlan
						p.Ripple, p.RippleScore, p.RefineMass, p.RefineNormal, p.MinShare = ripple, rscore, mass, normal, share
						ps = append(ps, p)
					}
				}
			}
		}
	}
	return ps
}

func bestPlan(tb testing.TB, grid []Plan, cases []rsCase) (Plan, rsScore) {
	var best Plan
	bs := rsScore{fn: 1 << 30}
	for _, p := range grid {
		s := evalPlan(tb, p, cases, false)
		if s.f1() > bs.f1() {
			best, bs = p, s
		}
	}
	return best, bs
}

// TestRSDev prints micro-F1 of DefaultPlan over the 68 dev cases, and the
// 2-fold figure: a plan chosen from rsGrid on the even-numbered cases (sorted
// file names) scored on the odd ones, and the reverse, pooled.
func TestRSDev(t *testing.T) {
	cases := loadRS(t)
	verbose := os.Getenv("LASTMILE_RS_VERBOSE") != ""
	s := evalPlan(t, DefaultPlan, cases, verbose)
	t.Logf("RS dev, DefaultPlan: micro-F1 %.3f (tp %d fp %d fn %d, %d cases); mean confidence of right causes %.2f, of wrong ones %.2f",
		s.f1(), s.tp, s.fp, s.fn, len(cases), s.confTP/float64(max(s.tp, 1)), s.confFP/float64(max(s.fp, 1)))

	if testing.Short() {
		return
	}
	var even, odd []rsCase
	for i, c := range cases {
		if i%2 == 0 {
			even = append(even, c)
		} else {
			odd = append(odd, c)
		}
	}
	grid := rsGrid()
	var pooled rsScore
	for _, f := range []struct {
		name        string
		train, test []rsCase
	}{{"even→odd", even, odd}, {"odd→even", odd, even}} {
		p, in := bestPlan(t, grid, f.train)
		out := evalPlan(t, p, f.test, false)
		pooled.add(out)
		t.Logf("fold %s: chose Ripple=%g RippleScore=%g RefineMass=%g RefineNormal=%g MinShare=%g (train F1 %.3f), test F1 %.3f",
			f.name, p.Ripple, p.RippleScore, p.RefineMass, p.RefineNormal, p.MinShare, in.f1(), out.f1())
	}
	t.Logf("RS dev 2-fold micro-F1 %.3f (tp %d fp %d fn %d)", pooled.f1(), pooled.tp, pooled.fp, pooled.fn)
	if verbose {
		bp, bs := bestPlan(t, grid, cases)
		t.Logf("best in-sample on grid: %+v F1 %.3f", bp, bs.f1())
		for _, p := range grid {
			t.Logf("grid %+v F1 %.3f", p, evalPlan(t, p, cases, false).f1())
		}
	}
}

// TestRSDevTime reports the per-case time of DefaultPlan (median, max); a
// report, not an assertion.
func TestRSDevTime(t *testing.T) {
	cases := loadRS(t)
	var ds []time.Duration
	var worst string
	for _, c := range cases {
		st := time.Now()
		if _, err := DefaultPlan.Localize(c.table, c.at); err != nil {
			t.Fatal(err)
		}
		d := time.Since(st)
		if len(ds) == 0 || d > slices.Max(ds) {
			worst = c.name
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	t.Logf("RS dev per-case localize time: median %v, max %v (%s), %d cases", ds[len(ds)/2], ds[len(ds)-1], worst, len(ds))
}

// BenchmarkRSDev localizes every dev case once per iteration, CSV parse
// included (the CLI's work): ns/op divided by 68 is the mean per case.
func BenchmarkRSDev(b *testing.B) {
	dir := rsDir(b)
	files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	labels := loadRS(b)
	at := map[string]int64{}
	for _, c := range labels {
		at[c.name] = c.at
	}
	for b.Loop() {
		for _, f := range files {
			fh, _ := os.Open(f)
			tab, err := ReadCSV(fh)
			fh.Close()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := DefaultPlan.Localize(tab, at[strings.TrimSuffix(filepath.Base(f), ".csv")]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
