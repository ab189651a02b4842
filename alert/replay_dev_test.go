package alert

import (
	"bufio"
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

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/media/scenario"
)

// scenDataDir holds real scenario runs (events and labels) dumped by the e2e
// scenario tests with LASTMILE_E2E_DUMP; it is not in the repository.
var scenDataDir = func() string {
	if d := os.Getenv("LASTMILE_SCEN_DATA"); d != "" {
		return d
	}
	return "/work/scen-data"
}()

// replayTables are emptied between scenarios: the events, what the
// metrics read, and the alert state.
var replayTables = []string{"events", replayStaging, "qoe_1m", "qoe_1h", "qoe_latency_1m", "qoe_latency_1h", "qoe_first_frame", alertsTable, deliveriesTable}

// replayOffset shifts the evaluations off the step boundaries, as a live
// evaluator's are (REPLAY_OFFSET, a duration).
var replayOffset, _ = time.ParseDuration(os.Getenv("REPLAY_OFFSET"))

// replayStaging holds a run's events before they "arrive" (arrive).
const replayStaging = "events_replay"

// loadScenario loads a run's events into the events table, or with
// staged into replayStaging only, for arrive to feed in arrival order.
func loadScenario(t testing.TB, st *store.Embedded, path string, staged ...bool) {
	ctx := context.Background()
	for _, tb := range replayTables {
		if err := st.Exec(ctx, "TRUNCATE TABLE IF EXISTS "+tb); err != nil {
			t.Fatal(err)
		}
	}
	into := "events"
	if len(staged) > 0 && staged[0] {
		into = replayStaging
		if err := st.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+replayStaging+" AS events ENGINE = MergeTree ORDER BY received_at"); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var batch bytes.Buffer
	flush := func() {
		if batch.Len() == 0 {
			return
		}
		if err := st.Exec(ctx, "INSERT INTO "+into+" FORMAT JSONEachRow\n"+batch.String()); err != nil {
			t.Fatal(err)
		}
		batch.Reset()
	}
	for n := 1; sc.Scan(); n++ {
		batch.Write(sc.Bytes())
		batch.WriteByte('\n')
		if n%5000 == 0 {
			flush()
		}
	}
	flush()
}

// arrive moves the staged events received in (from, to] into events, as
// the processor stored them during the run: an evaluation sees what had
// arrived by its time, not the run's complete data.
func arrive(t testing.TB, st *store.Embedded, from, to time.Time) {
	q := fmt.Sprintf("INSERT INTO events SELECT * FROM %s WHERE received_at > fromUnixTimestamp64Milli(%d, 'UTC') AND received_at <= fromUnixTimestamp64Milli(%d, 'UTC')",
		replayStaging, from.UnixMilli(), to.UnixMilli())
	if err := st.Exec(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}

// TestReplayScenarios runs the built-in rules over real scenario runs, one
// evaluation every step from the run's start to two minutes after its end,
// feeding the events as they arrived (received_at), and reports per labelled fault the delay from its start to the first
// evaluation that fired an alert on its dimensions, and every alert that
// matches no fault. A measurement for development (skipped without the
// data); it asserts only that the baseline run fires nothing.
func TestReplayScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("replays scenario runs")
	}
	paths, _ := filepath.Glob(filepath.Join(scenDataDir, "*.labels.json"))
	if len(paths) == 0 {
		t.Skipf("SKIPPED: no scenario runs in %s (set LASTMILE_SCEN_DATA)", scenDataDir)
	}
	st := storetest.Embedded(t)
	ctx := context.Background()
	var report []string
	for _, lp := range paths {
		var lb scenario.Labels
		b, err := os.ReadFile(lp)
		if err != nil || json.Unmarshal(b, &lb) != nil {
			t.Fatalf("labels %s: %v", lp, err)
		}
		loadScenario(t, st, strings.TrimSuffix(lp, ".labels.json")+".events.jsonl", true)
		arrive(t, st, lb.Start.Add(-24*time.Hour), lb.Start)
		nf := &fakeNotifier{}
		plan := DefaultPlan
		plan.Resend, plan.Explain = time.Hour, Localizer(st, localize.DefaultScopePlan)
		lg := log.NewNopLogger()
		if os.Getenv("REPLAY_LOG") != "" {
			lg = log.NewLogfmtLogger(os.Stderr)
		}
		e := NewEvaluator(plan, DefaultRules(), st, nf, lg)
		// An alert is its fingerprint and start: a group may fire twice.
		id := func(a Alert) string { return a.Fingerprint + "@" + a.StartsAt.String() }
		firedAt := map[string]time.Time{} // id → evaluation that fired it
		from, to := lb.Start.Truncate(Step).Add(Step+replayOffset), lb.End.Add(2*time.Minute)
		for tt, last := from, lb.Start; !tt.After(to); last, tt = tt, tt.Add(Step) {
			arrive(t, st, last, tt)
			before := len(nf.got)
			e.Eval(ctx, tt)
			for _, n := range nf.got[before:] {
				if n.event == StateFiring {
					firedAt[id(n.alerts[0])] = tt
				}
			}
		}
		var fired []Alert
		ended := map[string]time.Time{}
		for _, n := range nf.got {
			switch n.event {
			case StateFiring:
				fired = append(fired, n.alerts[0])
			case StateResolved:
				ended[id(n.alerts[0])] = *n.alerts[0].EndsAt
			}
		}
		name := strings.TrimSuffix(filepath.Base(lp), ".labels.json")
		report = append(report, fmt.Sprintf("%s (%s, %s of data): %d alerts", name, lb.Scenario, lb.End.Sub(lb.Start).Round(time.Second), len(fired)))
		matched := map[string]bool{}
		for _, f := range lb.Faults {
			first, by, fp := time.Time{}, "", ""
			var all []string
			for _, a := range fired {
				if matches(a.Labels, f.Dims) && firedAt[id(a)].After(f.Start) && firedAt[id(a)].Before(f.End.Add(2*time.Minute)) {
					matched[id(a)] = true
					all = append(all, a.Rule+" "+dimsOf(a.Labels))
					if first.IsZero() || firedAt[id(a)].Before(first) {
						first, by, fp = firedAt[id(a)], a.Rule+" "+dimsOf(a.Labels)+" scope="+a.Labels["scope"], id(a)
						if a.Labels["scope"] != f.Scope {
							by += " (WRONG SCOPE: " + a.Annotations["evidence"] + " / ruled out: " + a.Annotations["ruled_out"] + ")"
						}
					}
				}
			}
			if first.IsZero() {
				report = append(report, fmt.Sprintf("  %-9s %-24s %-34s missed", f.Scope, f.Kind, f.Name))
			} else {
				end := "  not resolved"
				if e, ok := ended[fp]; ok {
					end = fmt.Sprintf("%4.0fs", e.Sub(f.End).Seconds())
				}
				if len(all) > 1 {
					by += fmt.Sprintf(" (%d alerts: %s)", len(all), strings.Join(all, "; "))
				}
				report = append(report, fmt.Sprintf("  %-9s %-24s %-34s %4.0fs %s  %s", f.Scope, f.Kind, f.Name, first.Sub(f.Start).Seconds(), end, by))
			}
		}
		var unmatched []string
		for _, a := range fired {
			if !matched[id(a)] {
				unmatched = append(unmatched, fmt.Sprintf("  unmatched: %s %s scope=%s at +%s: %s", a.Rule, dimsOf(a.Labels), a.Labels["scope"], firedAt[id(a)].Sub(lb.Start).Round(time.Second), a.Annotations["summary"]))
			}
		}
		sort.Strings(unmatched)
		report = append(report, unmatched...)
		if len(lb.Faults) == 0 && len(fired) > 0 {
			t.Errorf("baseline run %s fired %d alerts", name, len(fired))
		}
	}
	t.Logf("built-in rules over %s (delays: fault start → the evaluation that fired, fault end → the one that resolved):\n%s", scenDataDir, strings.Join(report, "\n"))
}

// matches: the alert's dimension labels that the fault names agree with
// it, and there is at least one.
func matches(labels, dims map[string]string) bool {
	n := 0
	for k, v := range labels {
		if k == "alertname" || k == "scope" || k == "severity" {
			continue
		}
		if fv, ok := dims[k]; ok {
			if fv != v {
				return false
			}
			n++
		}
	}
	return n > 0
}

func dimsOf(labels map[string]string) string {
	var out []string
	for _, k := range sortedKeys(labels) {
		if k != "alertname" && k != "scope" && k != "severity" {
			out = append(out, k+"="+labels[k])
		}
	}
	return strings.Join(out, ",")
}

// BenchmarkReplayEval: one op evaluates the built-in rules over the demo
// run (every step from its start to two minutes after its end), with the
// rules alone, with the granularity pass, and with the localizer's verdict
// too: what the two passes cost an evaluation.
func BenchmarkReplayEval(b *testing.B) {
	lp := filepath.Join(scenDataDir, "demo.labels.json")
	raw, err := os.ReadFile(lp)
	if err != nil {
		b.Skipf("SKIPPED: no demo run in %s", scenDataDir)
	}
	var lb scenario.Labels
	if err := json.Unmarshal(raw, &lb); err != nil {
		b.Fatal(err)
	}
	st := storetest.Embedded(b)
	loadScenario(b, st, strings.TrimSuffix(lp, ".labels.json")+".events.jsonl")
	ctx := context.Background()
	for _, c := range []struct {
		name        string
		granularity bool
		verdict     bool
	}{{"rules", false, false}, {"granularity", true, false}, {"granularity+verdict", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			steps := 0
			for i := 0; i < b.N; i++ {
				for _, tb := range []string{alertsTable, deliveriesTable} {
					if err := st.Exec(ctx, "TRUNCATE TABLE IF EXISTS "+tb); err != nil {
						b.Fatal(err)
					}
				}
				plan := DefaultPlan
				plan.Resend, plan.Granularity.Off = time.Hour, !c.granularity
				if c.verdict {
					plan.Explain = Localizer(st, localize.DefaultScopePlan)
				}
				e := NewEvaluator(plan, DefaultRules(), st, &fakeNotifier{}, log.NewNopLogger())
				for tt := lb.Start.Truncate(Step).Add(Step); !tt.After(lb.End.Add(2 * time.Minute)); tt = tt.Add(Step) {
					e.Eval(ctx, tt)
					steps++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(steps), "ms/eval")
		})
	}
}
