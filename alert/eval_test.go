package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// notice is what a fake notifier saw.
type notice struct {
	event  string // firing, resolved or repeat
	alerts []Alert
}

type fakeNotifier struct {
	mu   sync.Mutex
	got  []notice
	rule string // when set, log shows this rule's alerts only (the store is shared by the tests)
}

func (f *fakeNotifier) Notify(event string, as []Alert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, notice{event, as})
}

func (f *fakeNotifier) Repeat(as []Alert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, notice{"repeat", as})
}

// mine returns the notices of f.rule's alerts.
func (f *fakeNotifier) mine() []notice {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []notice
	for _, n := range f.got {
		if n.alerts[0].Rule == f.rule {
			out = append(out, n)
		}
	}
	return out
}

// log lists what was notified: "firing node_id=n1 @10m10s".
func (f *fakeNotifier) log(dim string, base time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.got {
		for _, a := range n.alerts {
			if f.rule == "" || a.Rule == f.rule {
				out = append(out, fmt.Sprintf("%s %s=%s start %s", n.event, dim, a.Labels[dim], a.StartsAt.Sub(base)))
			}
		}
	}
	return out
}

// playStops makes n play_stops of a node in [from, from+10s), failed of
// them failing before the first frame.
func playStops(app, node, cdn, region string, from time.Time, n, failed int) []map[string]any {
	return viewers(app, node, map[string]string{"node_id": node, "cdn": cdn, "region": region}, from, n, failed)
}

// viewers makes n play_stops with dims in [from, from+10s), failed of them
// failing before the first frame, spread inside the slot so that none
// falls on a boundary; id names their devices (id-dev-i) and sessions
// (id-ms-i).
func viewers(app, id string, dims map[string]string, from time.Time, n, failed int) []map[string]any {
	var out []map[string]any
	for i := 0; i < n; i++ {
		ts := from.Add(400*time.Millisecond + time.Duration(i)*(9*time.Second)/time.Duration(n))
		e := map[string]any{"log_type": "play_stop", "ts": ts.UnixMilli(), "received_at": ts.UnixMilli(), "app_id": app,
			"event_id": fmt.Sprintf("%s-%s-%d-%d", app, id, ts.UnixMilli(), i), "device_id": fmt.Sprintf("%s-dev-%d", id, i),
			"session_id": fmt.Sprintf("%s-%d-%d", id, ts.UnixMilli(), i), "sample_rate": 1.0, "play_duration_ms": 3000, "code": 0, "first_frame_blocked": ""}
		for k, v := range dims {
			e[k] = v
		}
		if i < failed {
			e["code"], e["first_frame_blocked"] = 1001, "tcp_connect"
		}
		out = append(out, e)
	}
	return out
}

// insert writes the events as stored rows (JSONEachRow, ts as text); the
// views fill the rollups as for ingested events.
func insert(t *testing.T, st *store.Embedded, events []map[string]any) {
	t.Helper()
	var b strings.Builder
	for _, e := range events {
		row := map[string]any{}
		for k, v := range e {
			row[k] = v
		}
		for _, k := range []string{"ts", "received_at"} {
			row[k] = time.UnixMilli(e[k].(int64)).UTC().Format("2006-01-02 15:04:05.000")
		}
		js, _ := json.Marshal(row)
		b.Write(js)
		b.WriteByte('\n')
	}
	if err := st.Exec(context.Background(), "INSERT INTO events FORMAT JSONEachRow\n"+b.String()); err != nil {
		t.Fatal(err)
	}
}

// timeline builds a node's events over [0, end) of base, 10 s at a time;
// failed gives the failures of the slot starting at offset d.
func timeline(app, node, cdn, region string, base time.Time, end time.Duration, n int, failed func(d time.Duration) int) []map[string]any {
	var out []map[string]any
	for d := time.Duration(0); d < end; d += Step {
		out = append(out, playStops(app, node, cdn, region, base.Add(d), n, failed(d))...)
	}
	return out
}

func between(d, from, to time.Duration) bool { return d >= from && d < to }

func mustRules(t *testing.T, y string) []Rule {
	t.Helper()
	rs, err := ParseRules("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// nodeRule is a test rule: an app's start failure rate per node over
// window, firing at 10% and 3× and +8 after 2 evaluations, plus extra lines.
func nodeRule(name, app, window, extra string) string {
	return fmt.Sprintf(`  - name: %s
    scope: edge
    metric: video_start_failure_rate
    group_by: [node_id]
    filter: {app_id: %s}
    window: %s
    min_cohort: 10
    fire: {above: 10, ratio: 3, delta: 8}
    persist: 2
%s`, name, app, window, extra)
}

func evalRange(ctx context.Context, e *Evaluator, base time.Time, from, to time.Duration) {
	for d := from; d <= to; d += Step {
		e.Eval(ctx, base.Add(d))
	}
}

// TestEvaluatorPersistenceHysteresisCohort: against its peers, node n1
// fails half its starts for 5 minutes, then 1 in 12 (between the resolve
// and the fire thresholds) for 2 minutes, then none. n2 fails for one
// evaluation only (less than persist), n3 hovers at 1 in 12 without ever
// firing, n5 fails everything on too few plays (under min_cohort). Exactly
// one alert: n1, from its first bad evaluation, held through the hover,
// resolved after two good evaluations. A second evaluator, started while
// it fires, takes it over with its start time and never announces it again.
func TestEvaluatorPersistenceHysteresisCohort(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Hour).UTC()
	const app = "ev-a"
	var evs []map[string]any
	evs = append(evs, timeline(app, "n1", "cdn-a", "north", base, 20*time.Minute, 12, func(d time.Duration) int {
		switch {
		case between(d, 10*time.Minute, 15*time.Minute):
			return 6
		case between(d, 15*time.Minute, 17*time.Minute):
			return 1
		}
		return 0
	})...)
	evs = append(evs, timeline(app, "n2", "cdn-a", "north", base, 20*time.Minute, 12, func(d time.Duration) int {
		if between(d, 5*time.Minute, 5*time.Minute+Step) {
			return 6
		}
		return 0
	})...)
	evs = append(evs, timeline(app, "n3", "cdn-a", "north", base, 20*time.Minute, 12, func(d time.Duration) int {
		if between(d, 5*time.Minute, 6*time.Minute) {
			return 1
		}
		return 0
	})...)
	evs = append(evs, timeline(app, "n5", "cdn-a", "north", base, 20*time.Minute, 2, func(time.Duration) int { return 2 })...)
	insert(t, st, evs)

	rulesA := "rules:\n" + nodeRule("TestNodeA", app, "10s", "    peers: [cdn, region]\n    resolve: {above: 5, ratio: 1.5, delta: 4, after: 2}\n")
	rules := mustRules(t, rulesA)
	plan := Plan{Step: Step, Resend: time.Hour, TraceHint: true}
	n1 := &fakeNotifier{rule: "TestNodeA"}
	e1 := NewEvaluator(plan, rules, st, n1, log.NewNopLogger())
	if err := e1.Load(ctx); err != nil {
		t.Fatal(err)
	}
	evalRange(ctx, e1, base, 10*time.Second, 12*time.Minute)
	if got, want := strings.Join(n1.log("node_id", base), "; "), "firing node_id=n1 start 10m10s"; got != want {
		t.Fatalf("first evaluator notified %q, want %q", got, want)
	}
	a := n1.mine()[0].alerts[0]
	if a.Labels["alertname"] != "TestNodeA" || a.Labels["scope"] != "edge" || a.Labels["cdn"] != "cdn-a" || a.Labels["region"] != "north" ||
		a.Value != 50 || a.Expected != 0 || a.Samples != 12 || !failedSession(a.Annotations["trace"], "n1", 6) ||
		a.Annotations["peers"] != "0.00" {
		t.Errorf("firing alert %+v", a)
	}

	// Restart while firing.
	n2 := &fakeNotifier{rule: "TestNodeA"}
	e2 := NewEvaluator(plan, rules, st, n2, log.NewNopLogger())
	if err := e2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	evalRange(ctx, e2, base, 12*time.Minute+Step, 20*time.Minute)
	if got, want := strings.Join(n2.log("node_id", base), "; "), "repeat node_id=n1 start 10m10s; resolved node_id=n1 start 10m10s"; got != want {
		t.Fatalf("restarted evaluator notified %q, want %q", got, want)
	}
	if end := n2.mine()[1].alerts[0].EndsAt; end == nil || !end.Equal(base.Add(17*time.Minute+20*time.Second)) {
		t.Errorf("resolved at %v, want 17m20s", end)
	}
	as, err := ReadAlerts(ctx, st, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, a := range as {
		if a.Rule == "TestNodeA" {
			mine = append(mine, fmt.Sprintf("%s %s %s-%s", a.State, a.Labels["node_id"], a.StartsAt.Sub(base), a.EndsAt.Sub(base)))
		}
	}
	if got := strings.Join(mine, "; "); got != "resolved n1 10m10s-17m20s" {
		t.Errorf("stored alerts: %s", got)
	}

	// Restarted while firing with a rules file that no longer has the
	// rule: the alert is resolved at once, not left firing for ever.
	e3 := NewEvaluator(plan, rules, st, &fakeNotifier{}, log.NewNopLogger())
	if err := e3.Load(ctx); err != nil {
		t.Fatal(err)
	}
	evalRange(ctx, e3, base, 10*time.Minute, 11*time.Minute)
	if _, _, firing := e3.Counts(); firing != 1 {
		t.Fatalf("%d firing, want n1 again", firing)
	}
	n4 := &fakeNotifier{}
	e4 := NewEvaluator(plan, mustRules(t, strings.Replace(rulesA, "TestNodeA", "TestNodeRenamed", 1)), st, n4, log.NewNopLogger())
	if err := e4.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// (Other tests' alerts in the shared store go the same way; only
	// this rule's are looked at.)
	var got []string
	for _, n := range n4.got {
		for _, a := range n.alerts {
			if a.Rule == "TestNodeA" {
				got = append(got, fmt.Sprintf("%s %s start %s: %s", n.event, a.Labels["node_id"], a.StartsAt.Sub(base), a.Annotations["resolved_by"]))
			}
		}
	}
	if want := "resolved n1 start 10m10s: rule TestNodeA is no longer in the rules"; strings.Join(got, "; ") != want {
		t.Errorf("after the rule went: %q, want %q", got, want)
	}
	as, _ = ReadAlerts(ctx, st, Filter{State: StateFiring})
	for _, a := range as {
		if a.Rule == "TestNodeA" {
			t.Errorf("still firing: %+v", a)
		}
	}
}

// TestEvaluatorPeersVersusBaseline: every node of a CDN in a region fails
// at once. Against their peers nothing stands out; against their own
// baseline each does; a rule with both fires only against both.
func TestEvaluatorPeersVersusBaseline(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-5 * time.Hour).Truncate(time.Hour).UTC()
	const app = "ev-b"
	insert(t, st, nodesFailingFrom10m(app, base, "m1", "m2", "m3"))
	rule := func(name, compare string) string { return nodeRule(name, app, "30s", compare+"\n") }
	rules := mustRules(t, "rules:\n"+rule("TestPeers", "    peers: [cdn, region]")+rule("TestBaseline", "    baseline: 5m")+
		rule("TestBoth", "    peers: [cdn, region]\n    baseline: 5m"))
	nf := &fakeNotifier{}
	e := NewEvaluator(Plan{Step: Step, Resend: time.Hour}, rules, st, nf, log.NewNopLogger())
	evalRange(ctx, e, base, 9*time.Minute, 12*time.Minute)
	var got []string
	for _, n := range nf.got {
		for _, a := range n.alerts {
			got = append(got, fmt.Sprintf("%s %s %s", n.event, a.Rule, a.Labels["node_id"]))
		}
	}
	want := "firing TestBaseline m1; firing TestBaseline m2; firing TestBaseline m3"
	if strings.Join(slices.Sorted(slices.Values(got)), "; ") != want {
		t.Errorf("notified %q, want %q", got, want)
	}
	for _, n := range nf.got {
		if a := n.alerts[0]; a.Annotations["baseline"] != "0.00" || a.StartsAt != base.Add(10*time.Minute+Step) {
			t.Errorf("%s: baseline %q start %s", a.Labels["node_id"], a.Annotations["baseline"], a.StartsAt.Sub(base))
		}
	}
}

// nodesFailingFrom10m is 13 minutes of 12 plays a minute on each node of
// cdn-a north, half of them failing from the 10th minute on.
func nodesFailingFrom10m(app string, base time.Time, nodes ...string) []map[string]any {
	var evs []map[string]any
	for _, node := range nodes {
		evs = append(evs, timeline(app, node, "cdn-a", "north", base, 13*time.Minute, 12, func(d time.Duration) int {
			if d >= 10*time.Minute {
				return 6
			}
			return 0
		})...)
	}
	return evs
}

// TestEvaluatorExclude: an excluded group is judged by nobody, yet stays
// the others' peer: of three nodes failing alike, the excluded one is not
// notified.
func TestEvaluatorExclude(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-6 * time.Hour).Truncate(time.Hour).UTC()
	const app = "ev-x"
	insert(t, st, nodesFailingFrom10m(app, base, "m1", "m2", "m3"))
	rules := mustRules(t, "rules:\n"+nodeRule("TestExclude", app, "30s", "    baseline: 5m\n    exclude: {node_id: [m2]}\n"))
	nf := &fakeNotifier{}
	e := NewEvaluator(Plan{Step: Step, Resend: time.Hour}, rules, st, nf, log.NewNopLogger())
	evalRange(ctx, e, base, 9*time.Minute, 12*time.Minute)
	var got []string
	for _, n := range nf.got {
		for _, a := range n.alerts {
			got = append(got, fmt.Sprintf("%s %s", n.event, a.Labels["node_id"]))
		}
	}
	if want := "firing m1; firing m3"; strings.Join(slices.Sorted(slices.Values(got)), "; ") != want {
		t.Errorf("notified %q, want %q", got, want)
	}
}

// TestEvaluatorPeerFallback: one node per CDN × region, as in the bundled
// topology, so no node has peers sharing its CDN and region; the rule's
// other groups stand in. All four failing together (a client-side
// problem) fires nothing; one failing alone fires for that one.
func TestEvaluatorPeerFallback(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-7 * time.Hour).Truncate(time.Hour).UTC()
	const app = "ev-c"
	var evs []map[string]any
	for _, n := range []struct{ node, cdn, region string }{{"x1", "cdn-a", "north"}, {"x2", "cdn-b", "north"}, {"x3", "cdn-a", "south"}, {"x4", "cdn-b", "south"}} {
		evs = append(evs, timeline(app, n.node, n.cdn, n.region, base, 15*time.Minute, 12, func(d time.Duration) int {
			if between(d, 5*time.Minute, 8*time.Minute) || (n.node == "x1" && between(d, 10*time.Minute, 13*time.Minute)) {
				return 6
			}
			return 0
		})...)
	}
	insert(t, st, evs)
	rulesYAML := "rules:\n" + nodeRule("TestFallback", app, "30s", "    peers: [cdn, region]\n")
	rules := mustRules(t, rulesYAML)
	nf := &fakeNotifier{}
	e := NewEvaluator(Plan{Step: Step, Resend: time.Hour}, rules, st, nf, log.NewNopLogger())
	evalRange(ctx, e, base, 4*time.Minute, 12*time.Minute)
	if got, want := strings.Join(nf.log("node_id", base), "; "), "firing node_id=x1 start 10m10s"; got != want {
		t.Errorf("notified %q, want %q", got, want)
	}

	// The verdict seam: Plan.Explain is asked about the group as it fires
	// and its scope and annotations replace the rule's.
	var asked []string
	plan := Plan{Step: Step, Resend: time.Hour, Explain: func(_ context.Context, from, to time.Time, metric string, dims map[string]string) (Verdict, error) {
		asked = append(asked, fmt.Sprintf("%s-%s %s %s", from.Sub(base), to.Sub(base), metric, fmtLabels(dims)))
		return Verdict{Scope: "client", Evidence: "isp-x is failing on every node"}, nil
	}}
	rules[0].Name = "TestExplain"
	nf = &fakeNotifier{}
	e = NewEvaluator(plan, rules, st, nf, log.NewNopLogger())
	evalRange(ctx, e, base, 9*time.Minute, 11*time.Minute)
	if len(nf.got) != 1 || nf.got[0].alerts[0].Labels["scope"] != "client" || nf.got[0].alerts[0].Annotations["evidence"] != "isp-x is failing on every node" {
		t.Fatalf("explained alert: %+v", nf.got)
	}
	if got := strings.Join(asked, "; "); got != "9m55s-10m20s video_start_failure_rate cdn=cdn-a,node_id=x1,region=north" {
		t.Errorf("Explain asked about %q", got)
	}

	// A resolve window shorter than the window: x1's fault ends at 13m;
	// over the last 20 s it is clean at 13m20s, over the whole minute
	// only at 14m.
	for _, c := range []struct{ resolve, end string }{{"{after: 1, window: 20s}", "13m20s"}, {"{after: 1}", "14m0s"}} {
		rs := mustRules(t, strings.Replace(strings.Replace(strings.Replace(rulesYAML, "TestFallback", "TestResolveWindow", 1),
			"window: 30s", "window: 1m", 1), "persist: 2", "persist: 1\n    resolve: "+c.resolve, 1))
		nf := &fakeNotifier{}
		e := NewEvaluator(Plan{Step: Step, Resend: time.Hour}, rs, st, nf, log.NewNopLogger())
		evalRange(ctx, e, base, 9*time.Minute, 15*time.Minute)
		if len(nf.got) != 2 || nf.got[1].event != StateResolved || nf.got[1].alerts[0].EndsAt.Sub(base).String() != c.end {
			t.Errorf("resolve %s: %v, want resolved at %s", c.resolve, nf.log("node_id", base), c.end)
		}
	}
}

// failedSession says a trace command names one of a node's failed sessions
// (playStops: the first failed of each slot, session "<node>-<ms>-<i>").
func failedSession(cmd, node string, failed int) bool {
	var ms int64
	var i int
	f := strings.Fields(cmd)
	if len(f) < 4 || f[2] != "--session" {
		return false
	}
	n, _ := fmt.Sscanf(f[3], node+"-%d-%d", &ms, &i)
	return n == 2 && i < failed
}
