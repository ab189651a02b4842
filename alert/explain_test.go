package alert

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
	"github.com/lastmile-qoe/lastmile/localize"
)

func TestScopeFits(t *testing.T) {
	node := map[string]string{"node_id": "n1", "cdn": "cdn-a", "region": "north"}
	rendition := map[string]string{"stream_id": "live/r1", "rendition": "480p"}
	for _, c := range []struct {
		scope  string
		labels map[string]string
		want   bool
	}{
		{"edge", node, true},
		{"transcode", node, false},
		{"source", node, false},
		{"transcode", rendition, true},
		{"push", rendition, true},
		{"transcode", map[string]string{"stream_id": "live/r1", "rendition": "source"}, false},
		{"rollout", map[string]string{"app_version": "6.0.0"}, true},
		{"rollout", map[string]string{"isp": "isp-a"}, false},
		{"client", map[string]string{"isp": "isp-a"}, true},
		{"system", node, false},
	} {
		if got := ScopeFits(c.scope, c.labels); got != c.want {
			t.Errorf("ScopeFits(%s, %v) = %v, want %v", c.scope, c.labels, got, c.want)
		}
	}
}

// TestExplainScope: the verdict becomes the scope label when the group can
// be that scope, else the rule's stays (and says why); a failed verdict
// keeps the rule's. The label is decided once: an evaluator restarted
// while the alert fires repeats it with the same scope and start even if
// the verdict would now differ.
func TestExplainScope(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-8 * time.Hour).Truncate(time.Hour).UTC()
	const app = "ex-a"
	var evs []map[string]any
	for _, n := range []string{"e1", "e2", "e3"} {
		n := n
		evs = append(evs, timeline(app, n, "cdn-a", "north", base, 13*time.Minute, 12, func(d time.Duration) int {
			if n == "e1" && d >= 10*time.Minute {
				return 6
			}
			return 0
		})...)
	}
	insert(t, st, evs)
	for i, c := range []struct {
		verdict    Verdict
		err        error
		scope      string
		annotation string // a substring of verdict, evidence or ruled_out
	}{
		{Verdict{Scope: "edge", Evidence: "edge_access: 40% of e1's requests refused"}, nil, "edge", "40% of e1's"},
		{Verdict{Scope: "client", Evidence: "isp-x fails on every node"}, nil, "client", "isp-x"},
		{Verdict{Scope: "transcode", Evidence: "480p behind"}, nil, "edge", "cannot be it"},
		{Verdict{}, errors.New("store down"), "edge", ""},
	} {
		rs := mustRules(t, "rules:\n"+nodeRule("TestExplainScope"+string(rune('A'+i)), app, "30s", "    peers: [cdn, region]\n"))
		c := c
		plan := Plan{Step: Step, Resend: time.Hour, Granularity: DefaultGranularity,
			Explain: func(context.Context, time.Time, time.Time, string, map[string]string) (Verdict, error) {
				return c.verdict, c.err
			}}
		nf := &fakeNotifier{}
		e := NewEvaluator(plan, rs, st, nf, log.NewNopLogger())
		evalRange(ctx, e, base, 9*time.Minute, 11*time.Minute)
		if len(nf.got) != 1 {
			t.Fatalf("case %d: notified %v", i, nf.log("node_id", base))
		}
		a := nf.got[0].alerts[0]
		ann := a.Annotations["verdict"] + " " + a.Annotations["evidence"] + " " + a.Annotations["ruled_out"]
		if a.Labels["scope"] != c.scope || !strings.Contains(ann, c.annotation) {
			t.Errorf("case %d: scope %q annotations %q, want scope %q with %q", i, a.Labels["scope"], ann, c.scope, c.annotation)
		}
		if i != 1 {
			continue
		}
		// Restart while firing, with a verdict that would now say edge.
		plan.Explain = func(context.Context, time.Time, time.Time, string, map[string]string) (Verdict, error) {
			return Verdict{Scope: "edge"}, nil
		}
		nf2 := &fakeNotifier{rule: rs[0].Name}
		e2 := NewEvaluator(plan, rs, st, nf2, log.NewNopLogger())
		if err := e2.Load(ctx); err != nil {
			t.Fatal(err)
		}
		evalRange(ctx, e2, base, 11*time.Minute+Step, 12*time.Minute)
		mine := nf2.mine()
		if len(mine) == 0 || mine[0].event != "repeat" || mine[0].alerts[0].Labels["scope"] != "client" || !mine[0].alerts[0].StartsAt.Equal(a.StartsAt) {
			t.Errorf("after a restart: %+v, want the alert repeated with scope client and its start", mine)
		}
		for _, n := range mine {
			if n.event == StateFiring {
				t.Errorf("after a restart, a second firing notice: %+v", n.alerts[0].Labels)
			}
		}
	}
}

// TestLocalizerExplain: the real verdict on a group with no server logs
// rests on its cohort: a node's group is an edge's, a rendition's a
// transcode's, with the evidence and the alternatives in words.
func TestLocalizerExplain(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	to := time.Now().Add(-9 * time.Hour).Truncate(time.Hour).UTC()
	explain := Localizer(st, localize.DefaultScopePlan)
	for _, c := range []struct {
		dims  map[string]string
		scope string
	}{
		{map[string]string{"node_id": "n1", "cdn": "cdn-a", "region": "north", "app_id": "x"}, "edge"},
		{map[string]string{"rendition": "480p", "stream_id": "live/r1"}, "transcode"},
	} {
		v, err := explain(ctx, to.Add(-time.Minute), to, "video_start_failure_rate", c.dims)
		if err != nil {
			t.Fatal(err)
		}
		if v.Scope != c.scope || !strings.Contains(v.Evidence, "affected cohort") || v.RuledOut == "" {
			t.Errorf("%v: verdict %+v, want scope %s with evidence and ruled-out scopes", c.dims, v, c.scope)
		}
	}
}

func TestThresholdFalls(t *testing.T) {
	rise := Threshold{Above: 10, Ratio: 3, Delta: 8}
	fall := Threshold{Below: 18, Ratio: 1.5, Delta: 5, Falls: true}
	for _, c := range []struct {
		th              Threshold
		value, expected float64
		want            bool
	}{
		{rise, 30, 5, true},
		{rise, 14, 5, false}, // under 3 × expected
		{rise, 9, 0, false},  // under above
		{fall, 7.5, 25, true},
		{fall, 19, 30, false}, // over below
		{fall, 17, 24, false}, // over expected ÷ 1.5
		{fall, 15, 19, false}, // less than delta under expected
		{fall, 25, 25, false},
	} {
		if got := c.th.Bad(c.value, c.expected); got != c.want {
			t.Errorf("%+v.Bad(%g, %g) = %v, want %v", c.th, c.value, c.expected, got, c.want)
		}
	}
}

func TestParseFallingRules(t *testing.T) {
	rule := func(metric, fire, resolve string) string {
		s := "rules:\n  - name: Fps\n    scope: push\n    metric: " + metric + "\n    group_by: [stream_id]\n    peers: [app_id]\n    window: 1m\n    fire: " + fire + "\n"
		if resolve != "" {
			s += "    resolve: " + resolve + "\n"
		}
		return s
	}
	rs, err := ParseRules("r.yaml", []byte(rule("frame_rate", "{below: 18, ratio: 1.5, delta: 5}", "")))
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; !r.Fire.Falls || !r.Resolve.Falls || r.Resolve.Below != 22.5 || r.Resolve.Ratio != 1.25 {
		t.Errorf("falling rule: fire %+v resolve %+v", r.Fire, r.Resolve)
	}
	for _, c := range []struct{ metric, fire, resolve, reason string }{
		{"frame_rate", "{above: 18, ratio: 1.5}", "", "give fire.below"},
		{"video_start_failure_rate", "{below: 5, ratio: 2}", "", "worse when higher"},
		{"frame_rate", "{above: 1, below: 18, ratio: 1.5}", "", "both above and below"},
		{"frame_rate", "{below: 18, ratio: 1.5}", "{below: 15}", "resolve.below must not be under"},
		{"play_success_rate", "{above: 5, ratio: 2}", "", "watch video_start_failure_rate"},
		{"video_start_failure_rate", "{above: 10, ratio: 2}", "{below: 5}", "resolve gives below"},
	} {
		_, err := ParseRules("r.yaml", []byte(rule(c.metric, c.fire, c.resolve)))
		if err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s fire %s resolve %s: error %v, want %q", c.metric, c.fire, c.resolve, err, c.reason)
		}
	}
}

// TestPeersStandIn: two nodes of a CDN × region; x1 fails from 10m, x2
// from 11m while x1's alert fires. x1 stands in as a peer with what was
// expected of it, so x2 fires too; against x1's failures it would not.
// A node alone, with no peer and no baseline, fires nothing: there is
// nothing to compare it with.
func TestPeersStandIn(t *testing.T) {
	st := storetest.Embedded(t)
	ctx := context.Background()
	base := time.Now().Add(-10 * time.Hour).Truncate(time.Hour).UTC()
	const app, lone = "si-a", "si-lone"
	var evs []map[string]any
	for _, n := range []struct {
		node string
		from time.Duration
	}{{"x1", 10 * time.Minute}, {"x2", 11 * time.Minute}} {
		n := n
		evs = append(evs, timeline(app, n.node, "cdn-a", "north", base.Add(5*time.Minute), 9*time.Minute, 12, func(d time.Duration) int {
			if d+5*time.Minute >= n.from {
				return 6
			}
			return 0
		})...)
	}
	evs = append(evs, timeline(lone, "y1", "cdn-a", "north", base.Add(10*time.Minute), 3*time.Minute, 12, func(time.Duration) int { return 6 })...)
	insert(t, st, evs)
	for _, c := range []struct{ app, want string }{
		{app, "firing node_id=x1 start 10m10s; firing node_id=x2 start 11m10s"},
		{lone, ""},
	} {
		rs := mustRules(t, "rules:\n"+nodeRule("TestStandIn", c.app, "30s", "    peers: [cdn, region]\n    baseline: 5m\n"))
		nf := &fakeNotifier{}
		e := NewEvaluator(Plan{Step: Step, Resend: time.Hour}, rs, st, nf, log.NewNopLogger())
		evalRange(ctx, e, base, 9*time.Minute, 13*time.Minute)
		if got := strings.Join(nf.log("node_id", base), "; "); got != c.want {
			t.Errorf("%s: notified %q, want %q", c.app, got, c.want)
		}
	}
}
