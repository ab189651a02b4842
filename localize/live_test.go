package localize

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/media/scenario"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// scenDataDir holds dumps of real scenario runs (e2e LASTMILE_E2E_DUMP):
// <name>.events.jsonl and <name>.labels.json. Not in the repository.
func scenDataDir() string {
	if d := os.Getenv("LASTMILE_SCEN_DATA"); d != "" {
		return d
	}
	return "/work/scen-data"
}

// resetStore empties every table of the shared test store, so that one
// dump's rows do not mix with another's.
func resetStore(t testing.TB, st *store.Embedded) {
	t.Helper()
	ctx := context.Background()
	out, err := st.QueryJSON(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var r struct{ Name string }
		if len(line) == 0 {
			continue
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if err := st.Exec(ctx, "TRUNCATE TABLE "+r.Name); err != nil {
			t.Fatalf("truncate %s: %v", r.Name, err)
		}
	}
}

// loadJSONEachRow inserts rows (JSONEachRow lines) into events in batches;
// the materialized views fill the rollups.
func loadJSONEachRow(t testing.TB, st *store.Embedded, r *bufio.Scanner, perturb func([]byte) []byte) int {
	t.Helper()
	var batch bytes.Buffer
	n := 0
	flush := func() {
		if batch.Len() == 0 {
			return
		}
		if err := st.Exec(context.Background(), "INSERT INTO events FORMAT JSONEachRow\n"+batch.String()); err != nil {
			t.Fatalf("insert: %v", err)
		}
		batch.Reset()
	}
	for r.Scan() {
		line := r.Bytes()
		if perturb != nil {
			if line = perturb(line); line == nil {
				continue
			}
		}
		batch.Write(line)
		batch.WriteByte('\n')
		n++
		if batch.Len() > 8<<20 {
			flush()
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return n
}

func loadDump(t testing.TB, st *store.Embedded, path string) int {
	t.Helper()
	return loadDumpVia(t, st, path, nil)
}

// loadDumpVia loads a dump, each row passed through perturb (nil: as is;
// a nil result drops the row).
func loadDumpVia(t testing.TB, st *store.Embedded, path string, perturb func([]byte) []byte) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	return loadJSONEachRow(t, st, sc, perturb)
}

// labelGrace is how long after a fault's end its effects are still
// reported: a view's play_stop comes when the view ends.
const labelGrace = 15 * time.Second

// faultGroups groups a scenario's faults that overlap in time.
func faultGroups(faults []scenario.Label) [][]scenario.Label {
	spans := make([][2]time.Time, len(faults))
	for i, f := range faults {
		spans[i] = [2]time.Time{f.Start, f.End}
	}
	var out [][]scenario.Label
	for _, g := range OverlapGroups(spans) {
		var ls []scenario.Label
		for _, i := range g {
			ls = append(ls, faults[i])
		}
		out = append(out, ls)
	}
	return out
}

// TestLiveScenarioDumps localizes every fault of every scenario dump in
// scenDataDir and reports cohort and scope accuracy; the baseline must
// yield no incident. Skipped without the dumps.
func TestLiveScenarioDumps(t *testing.T) {
	st := storetest.Embedded(t)
	tally := scoreDumps(t, st, DefaultLivePlan, nil)
	if tally.faults > 0 {
		t.Logf("scenario dumps: %s", tally)
	}
}

// dumpTally counts a run over the scenario dumps: faults, those whose
// cohort an incident among the top ones matched (exact: same dimensions),
// with the labelled scope, and baseline incidents; byName says per fault
// name "exact", "same" or "MISS" and ", scope ok" or the scope found.
type dumpTally struct {
	faults, same, exact, scope, baseline int
	byName                               map[string]string
}

func (d dumpTally) String() string {
	return fmt.Sprintf("%d faults: cohort same %d (exact %d), scope %d; baseline incidents %d", d.faults, d.same, d.exact, d.scope, d.baseline)
}

// scoreDumps loads each dump into the emptied store (its rows passed
// through perturb when not nil: a dev test's simulated load), localizes
// each group of overlapping faults and tallies the matches; the baseline
// dump must yield no incident.
func scoreDumps(t *testing.T, st *store.Embedded, lp LivePlan, perturb func([]byte) []byte) dumpTally {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(scenDataDir(), "*.labels.json"))
	if len(files) == 0 {
		t.Skipf("no scenario dumps in %s", scenDataDir())
	}
	d := dumpTally{byName: map[string]string{}}
	for _, lf := range files {
		name := strings.TrimSuffix(filepath.Base(lf), ".labels.json")
		b, err := os.ReadFile(lf)
		if err != nil {
			t.Fatal(err)
		}
		var labels scenario.Labels
		if err := json.Unmarshal(b, &labels); err != nil {
			t.Fatalf("%s: %v", lf, err)
		}
		resetStore(t, st)
		n := loadDumpVia(t, st, filepath.Join(scenDataDir(), name+".events.jsonl"), perturb)
		ctx := context.Background()
		if len(labels.Faults) == 0 {
			incs, err := lp.Localize(ctx, st, LiveRequest{From: labels.Start, To: labels.End.Add(labelGrace)})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%d events): baseline, %d incidents", name, n, len(incs))
			for _, inc := range incs {
				t.Errorf("%s: baseline incident %s", name, describe(inc))
				d.baseline++
			}
			continue
		}
		for _, g := range faultGroups(labels.Faults) {
			from, to := g[0].Start, g[0].End
			for _, f := range g {
				to = later(to, f.End)
			}
			incs, err := lp.Localize(ctx, st, LiveRequest{From: from, To: to.Add(labelGrace)})
			if err != nil {
				t.Fatal(err)
			}
			top := TopCohorts(incs, len(g))
			for _, f := range g {
				d.faults++
				hit := "MISS"
				for _, inc := range top {
					if same, exact := lp.SameCohort(f.Dims, inc.Dims); same {
						d.same++
						hit = "same"
						if exact {
							d.exact++
							hit = "exact"
						}
						if inc.Scope == f.Scope {
							d.scope++
							hit += ", scope ok"
						} else {
							hit += ", scope " + inc.Scope
						}
						break
					}
				}
				d.byName[f.Name] = hit
				t.Logf("%s: %s (%s %s %v): %s", name, f.Name, f.Scope, f.Kind, f.Dims, hit)
			}
			for i, inc := range incs {
				t.Logf("    #%d %s", i+1, describe(inc))
			}
		}
	}
	return d
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func describe(inc Incident) string {
	return fmt.Sprintf("%s %s..%s %s %v views %.0f affected %.1f value %.3f expected %.3f score %.1f conf %.2f",
		inc.Scope, inc.From.Format("15:04:05"), inc.To.Format("15:04:05"), inc.KPI, inc.Dims, inc.Views, inc.Affected, inc.Value, inc.Expected, inc.Score, inc.Confidence)
}
