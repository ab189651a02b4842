package localize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/media/scenario"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// scopeDumpDir holds dumps of real scenario runs (e2e LASTMILE_E2E_DUMP):
// <scenario>.events.jsonl and <scenario>.labels.json. It is not in the
// repository; LASTMILE_SCEN_DATA overrides where it is looked for.
func scopeDumpDir() string {
	if d := os.Getenv("LASTMILE_SCEN_DATA"); d != "" {
		return d
	}
	return "/work/scen-data"
}

// labelDims are the labels' dimension keys; the others are a fault's
// strength (kbps, delay_ms, share, defect), not a cohort.
var labelDims = []string{"room_id", "stream_id", "rendition", "node_id", "cdn", "region", "isp", "app_version", "network"}

// TestScopeScenarioDev loads each dumped scenario run into an emptied
// embedded store and, for each labelled fault, decides the scope of the
// incident a perfect cohort search would report (the label's window and
// dimension values). It prints accuracy per scenario and fails on a wrong
// verdict.
func TestScopeScenarioDev(t *testing.T) {
	dir := scopeDumpDir()
	files, _ := filepath.Glob(filepath.Join(dir, "*.labels.json"))
	if len(files) == 0 {
		t.Skipf("no scenario dumps in %s", dir)
	}
	sort.Strings(files)
	st := storetest.Embedded(t)
	total, right := map[bool]int{}, map[bool]int{}
	for _, lf := range files {
		ef := strings.TrimSuffix(lf, ".labels.json") + ".events.jsonl"
		if _, err := os.Stat(ef); err != nil {
			continue
		}
		lb := readLabels(t, lf)
		loadScopeDump(t, st, ef)
		for _, minutes := range []bool{false, true} {
			ok, n := decideLabels(t, st, &lb, windowName(minutes), labelSpan(minutes))
			t.Logf("SCOPE ACCURACY %s (%s): %d/%d", lb.Scenario, windowName(minutes), ok, n)
			right[minutes] += ok
			total[minutes] += n
		}
	}
	for _, minutes := range []bool{false, true} {
		t.Logf("SCOPE ACCURACY all (%s): %d/%d", windowName(minutes), right[minutes], total[minutes])
	}
}

func windowName(minutes bool) string {
	if minutes {
		return "whole minutes around the label window"
	}
	return "label window"
}

// readLabels reads a dump's labels file.
func readLabels(t *testing.T, path string) scenario.Labels {
	t.Helper()
	var lb scenario.Labels
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lb); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return lb
}

// labelSpan is a label's window, or (minutes) the whole minutes around
// it, as the live localizer's windows are; the wider window may take in a
// neighbouring fault.
func labelSpan(minutes bool) func(scenario.Label) (time.Time, time.Time) {
	return func(fl scenario.Label) (time.Time, time.Time) {
		if minutes {
			return fl.Start.Truncate(time.Minute), fl.End.Add(time.Minute - 1).Truncate(time.Minute)
		}
		return fl.Start, fl.End
	}
}

// decideLabels decides each labelled fault's incident: the label's
// dimension values over the span span gives (named name in the log).
func decideLabels(t *testing.T, st Store, lb *scenario.Labels, name string, span func(scenario.Label) (time.Time, time.Time)) (ok, n int) {
	t.Helper()
	for _, fl := range lb.Faults {
		from, to := span(fl)
		inc := &Incident{From: from, To: to, Dims: map[string]string{}, Confidence: 1}
		for _, k := range labelDims {
			if v := fl.Dims[k]; v != "" {
				inc.Dims[k] = v
			}
		}
		if err := DefaultScopePlan.Decide(context.Background(), st, inc); err != nil {
			t.Fatalf("%s %s: %v", lb.Scenario, fl.Name, err)
		}
		n++
		if inc.Scope == fl.Scope {
			ok++
		} else {
			t.Errorf("%s (%s): %q (%s/%s): scope %s, want %s", lb.Scenario, name, fl.Name, fl.Scope, fl.Kind, inc.Scope, fl.Scope)
		}
		t.Logf("%s (%s): %q (%s/%s) → %s, confidence %.2f", lb.Scenario, name, fl.Name, fl.Scope, fl.Kind, inc.Scope, inc.Confidence)
		for _, e := range inc.Evidence {
			t.Logf("    + [%s %s] %s", e.Scope, e.Source, e.Text)
		}
		for _, e := range inc.RuledOut {
			t.Logf("    - [%s %s] %s", e.Scope, e.Source, e.Text)
		}
	}
	return ok, n
}

// loadScopeDump empties the events table and inserts a JSONEachRow dump in
// batches.
func loadScopeDump(t *testing.T, st *store.Embedded, path string) {
	t.Helper()
	ctx := context.Background()
	if err := st.Exec(ctx, "TRUNCATE TABLE "+schemas.EventsTable); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	insertRows(t, st, b)
}

// insertRows inserts JSONEachRow bytes into events, about 1 MB at a time.
func insertRows(t testing.TB, st *store.Embedded, b []byte) {
	t.Helper()
	const batch = 1 << 20
	for len(b) > 0 {
		n := len(b)
		if n > batch {
			n = batch + bytes.IndexByte(b[batch:], '\n') + 1
			if n <= batch {
				n = len(b)
			}
		}
		sql := "INSERT INTO " + schemas.EventsTable + " FORMAT JSONEachRow\n" + string(b[:n])
		if err := st.Exec(context.Background(), sql); err != nil {
			t.Fatalf("insert: %v", err)
		}
		b = b[n:]
	}
}

// spanShifts are how far a loaded run's incident span may start from its
// fault's: later when the viewers' failures are counted late (its end as
// late), earlier when the fault starts late in a bucket (its end still
// after the failures).
var spanShifts = []time.Duration{-20 * time.Second, -10 * time.Second, 10 * time.Second, 20 * time.Second}

// TestScopeSpanShift decides each labelled fault of the dumps over its
// window with its start shifted by each of spanShifts (the label's dimension values, as
// TestScopeScenarioDev) and fails on a wrong verdict: the verdict must not
// hang on where the span starts. Skipped without the dumps.
func TestScopeSpanShift(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(scopeDumpDir(), "*.labels.json"))
	if len(files) == 0 {
		t.Skipf("no scenario dumps in %s", scopeDumpDir())
	}
	sort.Strings(files)
	st := storetest.Embedded(t)
	ok, n := 0, 0
	for _, lf := range files {
		lb := readLabels(t, lf)
		if len(lb.Faults) == 0 {
			continue
		}
		loadScopeDump(t, st, strings.TrimSuffix(lf, ".labels.json")+".events.jsonl")
		for _, d := range spanShifts {
			k, m := decideLabels(t, st, &lb, fmt.Sprintf("start shifted %v", d), func(fl scenario.Label) (time.Time, time.Time) {
				return fl.Start.Add(d), fl.End.Add(max(d, 0))
			})
			ok, n = ok+k, n+m
		}
	}
	t.Logf("SCOPE ACCURACY with shifted spans: %d/%d", ok, n)
}
