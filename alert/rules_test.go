package alert

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultRulesParse(t *testing.T) {
	rs := DefaultRules()
	want := map[string]string{"EdgeNodeStartFailures": "edge", "EdgeNodeSlowFirstByte": "edge", "CdnRegionSlowStartup": "edge",
		"CdnRegionRebuffering": "edge", "StreamStartFailures": "source", "RenditionStartFailures": "transcode",
		"AppVersionStartFailures": "rollout", "AppVersionRenderStalls": "rollout", "IspStartFailures": "client", "IspRenderStalls": "client",
		"StreamLowFrameRate": "push", "IspSlowStartup": "client", "NetworkRebuffering": "client", "EdgeNodeRebuffering": "edge", "RenditionRebuffering": "transcode"}
	if len(rs) != len(want) {
		t.Fatalf("%d built-in rules, want %d", len(rs), len(want))
	}
	for _, r := range rs {
		if want[r.Name] != r.Scope {
			t.Errorf("rule %s: scope %q, want %q", r.Name, r.Scope, want[r.Name])
		}
		if r.Resolve.Above > r.Fire.Above || r.Resolve.Ratio > r.Fire.Ratio || r.Resolve.Delta > r.Fire.Delta {
			t.Errorf("rule %s: no hysteresis: fire %+v resolve %+v", r.Name, r.Fire, r.Resolve)
		}
	}
}

const validRule = `rules:
  - name: NodeFailures
    scope: edge
    metric: video_start_failure_rate
    group_by: [node_id]
    peers: [cdn, region]
    window: 1m
    baseline: 30m
    fire: {above: 10, ratio: 3, delta: 8}
`

func TestParseRuleFields(t *testing.T) {
	rs, err := ParseRules("r.yaml", []byte(validRule))
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.Name != "NodeFailures" || r.Window != time.Minute || r.Baseline != 30*time.Minute || r.Line != 2 ||
		r.Severity != "warning" || r.MinCohort != defaultMinCohort || r.Persist != defaultPersist ||
		strings.Join(r.labelDims(), ",") != "node_id,cdn,region" {
		t.Errorf("parsed %+v", r)
	}
	// Without resolve, it resolves half-way between expected and firing.
	if r.Resolve != (Threshold{Above: 5, Ratio: 2, Delta: 4}) || r.ResolveAfter != defaultResolveAfter {
		t.Errorf("default resolve %+v after %d", r.Resolve, r.ResolveAfter)
	}
}

// TestParseRulesInvalid: each broken file is refused with the line of the
// fault and its reason.
func TestParseRulesInvalid(t *testing.T) {
	// edit replaces one line of validRule (1-based) with another text, or
	// appends when line is 0.
	edit := func(line int, text string) string {
		ls := strings.Split(strings.TrimSuffix(validRule, "\n"), "\n")
		if line == 0 {
			return strings.Join(append(ls, text), "\n")
		}
		ls[line-1] = text
		return strings.Join(ls, "\n")
	}
	for _, c := range []struct {
		name, file string
		line       int
		reason     string
	}{
		{"not yaml", "rules:\n  - name: a\n    scope: edge: x\n", 3, "not YAML: mapping values are not allowed"},
		// yaml.v3 names where the broken list or mapping began; the
		// broken line is wanted. A valid list over two lines before it
		// does not mislead the search.
		{"error after a multi-line list", "rules:\n  - name: a\n    group_by: [node_id,\n      cdn]\n    scope: edge\n   metric: x\n", 6, "not YAML"},
		{"unclosed flow list", "rules:\n  - name: a\n    group_by: [node_id\n    peers: [cdn]\n", 3, "not YAML: did not find expected ',' or ']'"},
		{"unclosed flow map", "rules:\n  - name: a\n    fire: {above: 1\n    persist: 2\n", 3, "not YAML: did not find expected ',' or '}'"},
		{"bad indent", "rules:\n  - name: a\n    scope: edge\n   metric: x\n", 4, "not YAML: did not find expected '-' indicator"},
		{"empty", "", 1, "empty file"},
		{"no rules key", "alerts: []\n", 1, `unknown key "alerts" in the file`},
		{"rules not a list", "rules: {a: 1}\n", 1, "rules must be a list"},
		{"unknown key", edit(0, "    windw: 2m"), 10, `unknown key "windw" in a rule`},
		{"bad name", edit(2, "  - name: node failures"), 2, `name "node failures": want letters, digits and _`},
		{"bad scope", edit(3, "    scope: cdn"), 3, `scope "cdn": want one of push, source, transcode, edge, client, rollout, system`},
		{"unknown metric", edit(4, "    metric: failures"), 4, `unknown metric "failures"`},
		{"better when higher", edit(4, "    metric: play_success_rate"), 4, "play_success_rate is better when higher"},
		{"unknown dimension", edit(5, "    group_by: [node]"), 5, `group_by: unknown dimension "node"`},
		{"dimension of another kind", strings.Replace(edit(5, "    group_by: [code]"), "video_start_failure_rate", "rebuffering_ratio", 1), 4, "group_by code applies to the metrics that read play_stop"},
		{"window not whole steps", edit(7, "    window: 15s"), 7, "window 15s must be a whole number of 10s"},
		{"window too long", edit(7, "    window: 5h"), 7, "longer than the 4h allowed"},
		{"bad duration", edit(7, "    window: soon"), 7, `bad duration "soon"`},
		{"baseline not whole minutes", edit(8, "    baseline: 90s"), 2, "baseline 1m30s must be a whole number of 1m"},
		{"negative threshold", edit(9, "    fire: {above: -1, ratio: 3}"), 9, `fire.above must be a number ≥ 0, not "-1"`},
		{"ratio below 1", edit(9, "    fire: {ratio: 0.5}"), 9, "fire.ratio 0.5 is below 1"},
		{"fire that always fires", edit(9, "    fire: {above: 3}"), 9, "fire needs a ratio above 1 or a delta above 0"},
		{"resolve above fire", edit(0, "    resolve: {above: 20, ratio: 2, after: 2}"), 10, "resolve thresholds must not exceed fire's"},
		{"resolve window longer", edit(0, "    resolve: {window: 2m}"), 10, "resolve.window 2m is longer than window 1m"},
		{"resolve after 0", edit(0, "    resolve: {after: 0}"), 10, `resolve.after must be a whole number ≥ 1, not "0"`},
		{"min_cohort 0", edit(0, "    min_cohort: 0"), 10, "min_cohort must be a whole number ≥ 1"},
		{"nothing to compare with", strings.Replace(strings.Replace(validRule, "    peers: [cdn, region]\n", "", 1), "    baseline: 30m\n", "", 1), 2, "give peers, baseline or both"},
		{"peer in group_by", edit(6, "    peers: [node_id]"), 2, "node_id is in both group_by and peers"},
		{"exclude outside group_by", edit(0, "    exclude: {cdn: [cdn-a]}"), 2, "exclude names cdn, which is not in group_by"},
		{"missing metric", strings.Replace(validRule, "    metric: video_start_failure_rate\n", "", 1), 2, "rule NodeFailures: metric is required"},
		{"quantile on a rate", edit(0, "    quantile: \"0.9\""), 4, "quantile and phase apply to quantile metrics"},
		{"duplicate rule", validRule + strings.TrimPrefix(validRule, "rules:\n"), 10, "rule NodeFailures is defined twice (first at line 2)"},
		{"duplicate key", edit(0, "    window: 2m"), 10, `key "window" given twice`},
		{"bad severity", edit(0, "    severity: page"), 10, `severity "page": want one of critical, warning, info`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRules("rules.yaml", []byte(c.file))
			var es RuleErrors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("got %v, want RuleErrors", err)
			}
			e := es[0]
			if e.File != "rules.yaml" || e.Line != c.line || !strings.Contains(e.Reason, c.reason) {
				t.Errorf("got %q, want rules.yaml:%d: ...%s...", err, c.line, c.reason)
			}
		})
	}
}

// FuzzParseRules: no rules file panics the parser.
func FuzzParseRules(f *testing.F) {
	f.Add([]byte(validRule))
	f.Add(DefaultRulesYAML())
	f.Add([]byte("rules:\n  - name: [\n"))
	f.Add([]byte("rules:\n  - name: Fps\n    scope: push\n    metric: frame_rate\n    group_by: [stream_id]\n    peers: [app_id]\n    window: 1m\n    fire: {below: 18, ratio: 1.5, delta: 5}\n    resolve: {below: 21}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseRules("f.yaml", b)
		if err == nil {
			for _, r := range rs {
				if r.Name == "" || r.Window <= 0 {
					t.Fatalf("accepted an incomplete rule %+v", r)
				}
				// A falling rule resolves falling, and not while it would
				// still fire.
				if r.Fire.Falls != r.Resolve.Falls || (r.Fire.Falls && r.Resolve.Below < r.Fire.Below) {
					t.Fatalf("accepted fire %+v with resolve %+v", r.Fire, r.Resolve)
				}
			}
		}
	})
}
