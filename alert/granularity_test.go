package alert

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// levelRules are two rules on start failures at two levels of the same
// viewers, for one app: narrow (its group_by) inside broad (its group_by),
// each against its own 5 minutes before.
func levelRules(t *testing.T, app string, narrow, broad []string) []Rule {
	rule := func(name string, by []string) string {
		return fmt.Sprintf(`  - name: %s
    scope: edge
    metric: video_start_failure_rate
    group_by: [%s]
    filter: {app_id: %s}
    window: 30s
    baseline: 5m
    min_cohort: 10
    fire: {above: 10, ratio: 3, delta: 8}
    persist: 2
`, name, strings.Join(by, ", "), app)
	}
	return mustRules(t, "rules:\n"+rule("Narrow", narrow)+rule("Broad", broad))
}

// TestGranularity: one fault, at one level, makes one alert at that level
// (Plan.Granularity); with the pass off, both levels fire. The viewers
// are healthy for 10 minutes (the baseline), then the fault lasts 3.
func TestGranularity(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-5 * time.Hour).Truncate(time.Hour).UTC()
	node := func(n, cdn, region string) map[string]string {
		return map[string]string{"node_id": n, "cdn": cdn, "region": region}
	}
	type member struct {
		dims   map[string]string
		n      int
		failed int // per 10 s during the fault
	}
	nodeLevels := [2][]string{{"node_id", "cdn", "region"}, {"cdn", "region"}}
	cases := []struct {
		name    string
		levels  [2][]string
		members []member
		want    []string // alerts with the pass: rule and labels
		off     []string // without it
	}{
		{name: "one node refusing among healthy peers: that node only", levels: nodeLevels,
			members: []member{{node("n1", "cdn-a", "north"), 12, 8}, {node("n2", "cdn-a", "north"), 12, 0},
				{node("n3", "cdn-a", "north"), 12, 0}, {node("n4", "cdn-a", "north"), 12, 0}},
			want: []string{"Narrow cdn=cdn-a,node_id=n1,region=north"},
			off:  []string{"Broad cdn=cdn-a,region=north", "Narrow cdn=cdn-a,node_id=n1,region=north"}},
		{name: "every node of a CDN × region: the CDN × region only", levels: nodeLevels,
			members: []member{{node("n1", "cdn-a", "north"), 12, 6}, {node("n2", "cdn-a", "north"), 12, 6},
				{node("n3", "cdn-a", "north"), 12, 6}, {node("n4", "cdn-a", "north"), 12, 6}},
			want: []string{"Broad cdn=cdn-a,region=north"},
			off: []string{"Broad cdn=cdn-a,region=north", "Narrow cdn=cdn-a,node_id=n1,region=north", "Narrow cdn=cdn-a,node_id=n2,region=north",
				"Narrow cdn=cdn-a,node_id=n3,region=north", "Narrow cdn=cdn-a,node_id=n4,region=north"}},
		{name: "a CDN × region of one node: one alert with both levels' labels", levels: nodeLevels,
			members: []member{{node("n1", "cdn-a", "north"), 12, 8}},
			want:    []string{"Narrow cdn=cdn-a,node_id=n1,region=north"},
			off:     []string{"Broad cdn=cdn-a,region=north", "Narrow cdn=cdn-a,node_id=n1,region=north"}},
		{name: "a failed rendition: the rendition, not its stream", levels: [2][]string{{"rendition", "stream_id"}, {"stream_id"}},
			members: []member{{map[string]string{"stream_id": "live/r1", "rendition": "480p"}, 12, 10},
				{map[string]string{"stream_id": "live/r1", "rendition": "source"}, 12, 0}},
			want: []string{"Narrow rendition=480p,stream_id=live/r1"},
			off:  []string{"Broad stream_id=live/r1", "Narrow rendition=480p,stream_id=live/r1"}},
	}
	for i, c := range cases {
		app := fmt.Sprintf("gran-%d", i)
		var evs []map[string]any
		for _, m := range c.members {
			for d := time.Duration(0); d < 13*time.Minute; d += Step {
				failed := 0
				if d >= 10*time.Minute {
					failed = m.failed
				}
				evs = append(evs, viewers(app, strings.ReplaceAll(fmtLabels(m.dims), ",", "."), m.dims, base.Add(d), m.n, failed)...)
			}
		}
		insert(t, st, evs)
		for _, off := range []bool{false, true} {
			plan := Plan{Step: Step, Resend: time.Hour, Granularity: DefaultGranularity}
			plan.Granularity.Off = off
			got := fired(ctx, plan, levelRules(t, app, c.levels[0], c.levels[1]), st, base, 9*time.Minute, 13*time.Minute)
			want := c.want
			if off {
				want = c.off
			}
			if strings.Join(got, "; ") != strings.Join(want, "; ") {
				t.Errorf("%s (granularity off %v): fired %q, want %q", c.name, off, got, want)
			}
		}
	}
}

// TestGranularityWholeGroupLabels: a narrower group that is all of a
// broader one fires once, with the broader group's labels too when its
// own rule does not carry them.
func TestGranularityWholeGroupLabels(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-6 * time.Hour).Truncate(time.Hour).UTC()
	const app = "gran-whole"
	var evs []map[string]any
	for d := time.Duration(0); d < 13*time.Minute; d += Step {
		failed := 0
		if d >= 10*time.Minute {
			failed = 8
		}
		evs = append(evs, viewers(app, "w1", map[string]string{"node_id": "w1", "cdn": "cdn-w", "region": "west"}, base.Add(d), 12, failed)...)
	}
	insert(t, st, evs)
	got := fired(ctx, Plan{Step: Step, Resend: time.Hour, Granularity: DefaultGranularity},
		levelRules(t, app, []string{"node_id"}, []string{"cdn", "region"}), st, base, 9*time.Minute, 13*time.Minute)
	// Both are ready at once: the first rule's (Broad) fires, with the
	// node's label too.
	if strings.Join(got, "; ") != "Broad cdn=cdn-w,node_id=w1,region=west" {
		t.Errorf("fired %q, want one alert for cdn-w west with node w1's label", got)
	}

	// A node rule that never fires still names the level: the CDN ×
	// region's alert carries its one node.
	rs := levelRules(t, app, []string{"node_id", "cdn", "region"}, []string{"cdn", "region"})
	rs[0].Fire.Above = 100
	nf := &fakeNotifier{}
	e := NewEvaluator(Plan{Step: Step, Resend: time.Hour, Granularity: DefaultGranularity}, rs, st, nf, log.NewNopLogger())
	evalRange(ctx, e, base, 9*time.Minute, 13*time.Minute)
	if len(nf.got) == 0 || dimsOf(nf.got[0].alerts[0].Labels) != "cdn=cdn-w,node_id=w1,region=west" {
		t.Errorf("notified %+v, want the CDN × region's alert with node_id w1", nf.got)
	}
}

// TestExplainAway: an ISP's viewers fail on every app version (its DNS)
// while one version also fails on its own for everyone else. Against the
// other versions, raised by the ISP's viewers, the version is not three
// times worse; judged without the viewers the ISP's alert explains, it
// is. Without the pass only the ISP fires.
func TestExplainAway(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-7 * time.Hour).Truncate(time.Hour).UTC()
	const app = "xa"
	var evs []map[string]any
	for _, v := range []string{"v1", "v2", "v3"} {
		for _, isp := range []string{"isp-x", "isp-y", "isp-z"} {
			for d := time.Duration(0); d < 4*time.Minute; d += Step {
				failed := 0
				switch {
				case isp == "isp-x":
					failed = 10
				case v == "v3":
					failed = 8
				}
				evs = append(evs, viewers(app, v+"."+isp, map[string]string{"app_version": v, "isp": isp}, base.Add(10*time.Minute+d), 12, failed)...)
			}
		}
	}
	insert(t, st, evs)
	rule := func(name, by string) string {
		return fmt.Sprintf(`  - name: %s
    scope: client
    metric: video_start_failure_rate
    group_by: [%s]
    peers: [app_id]
    filter: {app_id: %s}
    window: 30s
    min_cohort: 10
    fire: {above: 10, ratio: 3, delta: 8}
    persist: 2
`, name, by, app)
	}
	rs := mustRules(t, "rules:\n"+rule("IspFail", "isp")+rule("VersionFail", "app_version"))
	for _, c := range []struct {
		off  bool
		want string
	}{{false, "IspFail app_id=xa,isp=isp-x; VersionFail app_id=xa,app_version=v3"}, {true, "IspFail app_id=xa,isp=isp-x"}} {
		plan := Plan{Step: Step, Resend: time.Hour, Granularity: DefaultGranularity}
		plan.Granularity.Off = c.off
		got := fired(ctx, plan, rs, st, base, 10*time.Minute, 14*time.Minute)
		if strings.Join(got, "; ") != c.want {
			t.Errorf("granularity off %v: fired %q, want %q", c.off, got, c.want)
		}
	}
}

// TestGranularityAwaited: every 480p viewer fails from minute 10, and 480p
// viewers crowd node n1 (half its plays; a quarter of n2's and n3's). The
// node's 30 s window is bad two evaluations before the rendition's 3 min
// window: the node waits for the rendition (its excess is all 480p, and
// 480p fails on the other nodes too), and only the rendition fires. A
// rendition rule that never judges (its cohort too small) leaves the node
// to fire after Granularity.Wait, naming the rendition. A stream whose
// excess is one rendition of it waits for that rendition likewise.
func TestGranularityAwaited(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-8 * time.Hour).Truncate(time.Hour).UTC()
	const app = "await"
	var evs []map[string]any
	for _, m := range []struct {
		node, rendition string
		n               int
	}{{"n1", "source", 6}, {"n1", "480p", 6}, {"n2", "source", 6}, {"n2", "480p", 2}, {"n3", "source", 6}, {"n3", "480p", 2}} {
		dims := map[string]string{"node_id": m.node, "rendition": m.rendition, "stream_id": "live/r1"}
		for d := time.Duration(0); d < 14*time.Minute; d += Step {
			failed := 0
			if d >= 10*time.Minute && m.rendition == "480p" {
				failed = m.n
			}
			evs = append(evs, viewers(app, m.node+"."+m.rendition, dims, base.Add(d), m.n, failed)...)
		}
	}
	insert(t, st, evs)
	rule := func(name, by, window, extra string) string {
		return fmt.Sprintf(`  - name: %s
    scope: edge
    metric: video_start_failure_rate
    group_by: [%s]
    filter: {app_id: %s}
    window: %s
    baseline: 5m
    min_cohort: 10
    fire: {above: 30, ratio: 3, delta: 8}
    persist: 2
%s`, name, by, app, window, extra)
	}
	node := rule("Node", "node_id", "30s", "")
	stream := rule("Stream", "stream_id", "30s", "")
	rend := rule("Rend", "rendition", "3m", "    peers: [stream_id]\n")
	for _, c := range []struct {
		name, rules string
		cohort      int64 // the rendition rule's min_cohort
		want, off   string
	}{
		{"a rendition crowding a node", node + rend, 10, "Rend rendition=480p,stream_id=live/r1", "Node node_id=n1; Rend rendition=480p,stream_id=live/r1"},
		{"a rendition too small to judge", node + rend, 100000, "Node node_id=n1,rendition=480p,stream_id=live/r1", "Node node_id=n1"},
		{"a rendition of a stream", stream + rend, 10, "Rend rendition=480p,stream_id=live/r1", "Rend rendition=480p,stream_id=live/r1; Stream stream_id=live/r1"},
	} {
		rs := mustRules(t, "rules:\n"+c.rules)
		rs[1].MinCohort = c.cohort
		for _, off := range []bool{false, true} {
			plan := Plan{Step: Step, Resend: time.Hour, Granularity: DefaultGranularity}
			plan.Granularity.Off = off
			want := c.want
			if off {
				want = c.off
			}
			if got := strings.Join(fired(ctx, plan, rs, st, base, 9*time.Minute, 13*time.Minute), "; "); got != want {
				t.Errorf("%s (granularity off %v): fired %q, want %q", c.name, off, got, want)
			}
		}
	}
}

// fired evaluates the rules from base+from to base+to and lists the alerts
// that fired, "rule labels", sorted.
func fired(ctx context.Context, plan Plan, rs []Rule, st Store, base time.Time, from, to time.Duration) []string {
	nf := &fakeNotifier{}
	evalRange(ctx, NewEvaluator(plan, rs, st, nf, log.NewNopLogger()), base, from, to)
	var got []string
	for _, n := range nf.got {
		if n.event == StateFiring {
			got = append(got, n.alerts[0].Rule+" "+dimsOf(n.alerts[0].Labels))
		}
	}
	sort.Strings(got)
	return got
}
