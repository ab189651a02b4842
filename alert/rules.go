// Package alert evaluates alert rules over the store (with the metrics API's
// own definitions), keeps each alert's state in the store so that a restart
// neither loses nor re-announces it, and delivers alerts to Alertmanager and
// plain webhooks. docs/alerts.md is the user's guide.
package alert

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/query"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Rule is one alert rule: which metric, for which groups, over which window,
// compared with what, and when it fires and resolves.
type Rule struct {
	Name     string
	Scope    string // until the localizer's verdict replaces it (Plan.Explain)
	Severity string
	Doc      string
	// Metric is a metric of GET /api/v1/metrics; Quantile and Phase apply to
	// the quantile metrics as there.
	Metric   string
	Quantile string
	Phase    string
	// GroupBy are the dimensions an alert is per (its labels); Peers the
	// dimensions whose values a group shares with the groups it is compared
	// with (an edge node's CDN and region).
	GroupBy []string
	Peers   []string
	// Filter keeps only these values of a dimension.
	Filter map[string][]string
	// Exclude names values of a group dimension that are peers of the
	// others but never alert themselves (the source rendition, which no
	// transcode worker makes).
	Exclude map[string][]string
	// Window is what each evaluation looks at; Baseline, when set, is the
	// stretch before the window that gives the group's own expectation.
	Window   time.Duration
	Baseline time.Duration
	// MinCohort is the fewest stored events a group (and a peer, and a
	// baseline) needs in its window to be judged at all; MinPeers the fewest
	// peers that make a peer expectation.
	MinCohort int64
	MinPeers  int
	Fire      Threshold
	Resolve   Threshold
	// Persist is how many evaluations in a row a group must be bad before
	// it fires; ResolveAfter how many in a row it must be good to resolve.
	Persist      int
	ResolveAfter int
	// ResolveWindow, when shorter than Window, is what a firing group is
	// judged on for resolving: the fault's end shows sooner.
	ResolveWindow time.Duration

	File string // where the rule was read from, for messages
	Line int
}

// Threshold says when a value is bad: at least Above, at least Ratio times
// what is expected, and at least Delta more than expected (all three). A
// falling threshold (a metric better when higher, given with below) is the
// mirror: at most Below, at most expected ÷ Ratio, at least Delta less.
type Threshold struct {
	Above float64
	Below float64
	Ratio float64
	Delta float64
	Falls bool
}

// Bad reports whether value is bad against expected.
func (t Threshold) Bad(value, expected float64) bool {
	if t.Falls {
		return value <= t.Below && value*t.Ratio <= expected && value <= expected-t.Delta
	}
	return value >= t.Above && value >= t.Ratio*expected && value >= expected+t.Delta
}

// excess is how much worse than expected value is (0 when it is not).
func (t Threshold) excess(value, expected float64) float64 {
	if t.Falls {
		return math.Max(0, expected-value)
	}
	return math.Max(0, value-expected)
}

// Severities a rule may have (Alertmanager routes on them).
var Severities = []string{"critical", "warning", "info"}

// Scopes a rule may name: the localizer's vocabulary.
var Scopes = []string{localize.ScopePush, localize.ScopeSource, localize.ScopeTranscode, localize.ScopeEdge,
	localize.ScopeClient, localize.ScopeRollout, localize.ScopeSystem}

// betterHigh are the metrics that are better when higher: a rule on one
// fires when it falls (fire.below); frame_rate is the one that says more
// than its complement, the others are refused with it named.
var betterHigh = map[string]string{
	"play_success_rate":  "video_start_failure_rate or video_playback_failure_rate",
	"frame_rate":         "",
	"attempts":           "a failure rate",
	"plays":              "a failure rate",
	"views":              "a failure rate",
	"concurrent_viewers": "a failure rate",
}

//go:embed rules.yaml
var defaultRulesYAML []byte

// DefaultRulesFile names the shipped rules in messages.
const DefaultRulesFile = "(built-in rules)"

// DefaultRules are the shipped rules (alert/rules.yaml, docs/alerts.md).
func DefaultRules() []Rule {
	rs, err := ParseRules(DefaultRulesFile, defaultRulesYAML)
	if err != nil {
		panic("alert: the built-in rules are invalid: " + err.Error())
	}
	return rs
}

// DefaultRulesYAML returns the shipped rules file, a starting point for
// one's own.
func DefaultRulesYAML() []byte { return append([]byte(nil), defaultRulesYAML...) }

// LoadRules reads a rules file.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("alert rules: %w", err)
	}
	return ParseRules(path, b)
}

// RuleError is one problem in a rules file, where it is.
type RuleError struct {
	File   string
	Line   int
	Reason string
}

func (e RuleError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// RuleErrors are every problem found in a file.
type RuleErrors []RuleError

func (es RuleErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// ruleKeys are the keys of a rule; resolveKeys those of fire and resolve.
var (
	ruleKeys = []string{"name", "scope", "severity", "doc", "metric", "quantile", "phase", "group_by", "peers", "filter", "exclude",
		"window", "baseline", "min_cohort", "min_peers", "fire", "resolve", "persist"}
	thresholdKeys = []string{"above", "below", "ratio", "delta"}
	resolveKeys   = append(append([]string{}, thresholdKeys...), "after", "window")
	namePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	yamlLine      = regexp.MustCompile(`line (\d+)`)
)

// Limits of a rule.
const (
	maxWindow   = 4 * time.Hour
	maxBaseline = 7 * 24 * time.Hour
)

// ParseRules parses and validates a rules file; the error lists every
// problem with its file and line (RuleErrors).
func ParseRules(file string, b []byte) ([]Rule, error) {
	p := &ruleParser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		line, msg := yamlErrorLine(b, err)
		return nil, RuleErrors{{file, line, "not YAML: " + strings.TrimPrefix(msg, ": ")}}
	}
	if len(doc.Content) == 0 {
		return nil, RuleErrors{{file, 1, "empty file: want rules: [...]"}}
	}
	root := doc.Content[0]
	var rulesNode *yaml.Node
	p.mapping(root, "the file", []string{"rules"}, func(k string, v *yaml.Node) { rulesNode = v })
	if rulesNode == nil && len(p.errs) == 0 {
		p.fail(root, "no rules: want rules: [...]")
	}
	var rules []Rule
	if rulesNode != nil {
		if rulesNode.Kind != yaml.SequenceNode {
			p.fail(rulesNode, "rules must be a list")
		} else {
			seen := map[string]int{}
			for _, n := range rulesNode.Content {
				r, ok := p.rule(n)
				if !ok {
					continue
				}
				if prev, dup := seen[r.Name]; dup {
					p.fail(n, fmt.Sprintf("rule %s is defined twice (first at line %d)", r.Name, prev))
					continue
				}
				seen[r.Name] = r.Line
				rules = append(rules, r)
			}
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return rules, nil
}

type ruleParser struct {
	file string
	errs RuleErrors
}

// yamlErrorLine finds the line a YAML syntax error is on. yaml.v3 names
// the line where the broken list or mapping began, and for its parser's
// errors 0-based: the first prefix of the file that fails with the same
// message ends on the broken line.
func yamlErrorLine(b []byte, err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(yamlLine.ReplaceAllString(msg, ""), ": ")
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > maxSearchLines {
		return line, msg
	}
	var n yaml.Node
	for k := 1; k <= len(lines); k++ {
		perr := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		if perr != nil && strings.HasSuffix(perr.Error(), msg) {
			return k, msg
		}
	}
	return line, msg
}

// maxSearchLines bounds yamlErrorLine's search (a parse per line).
const maxSearchLines = 2000

func (p *ruleParser) fail(n *yaml.Node, reason string) {
	p.errs = append(p.errs, RuleError{p.file, n.Line, reason})
}

// mapping walks a mapping node, refusing keys not in known.
func (p *ruleParser) mapping(n *yaml.Node, what string, known []string, each func(k string, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		p.fail(n, what+" must be a mapping")
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !contains(known, k.Value):
			p.fail(k, fmt.Sprintf("unknown key %q in %s; keys: %s", k.Value, what, strings.Join(known, ", ")))
		case seen[k.Value]:
			p.fail(k, fmt.Sprintf("key %q given twice in %s", k.Value, what))
		default:
			seen[k.Value] = true
			each(k.Value, v)
		}
	}
	return true
}

// values reads a mapping of dimension → a value, a comma list or a list
// of values (filter, exclude).
func (p *ruleParser) values(n *yaml.Node, what string) map[string][]string {
	out := map[string][]string{}
	p.mapping(n, what, schemas.RollupDims, func(d string, vals *yaml.Node) {
		switch vals.Kind {
		case yaml.ScalarNode:
			out[d] = strings.Split(vals.Value, ",")
		case yaml.SequenceNode:
			for _, c := range vals.Content {
				if s, ok := p.str(c, what+"."+d); ok {
					out[d] = append(out[d], s)
				}
			}
		default:
			p.fail(vals, what+"."+d+" must be a value or a list of values")
		}
	})
	return out
}

// excluded: the group's labels name an Exclude value.
func (r *Rule) excluded(labels map[string]string) bool {
	for d, vs := range r.Exclude {
		if contains(vs, labels[d]) {
			return true
		}
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

func (p *ruleParser) str(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, key+" must be a string")
		return "", false
	}
	return n.Value, true
}

func (p *ruleParser) number(n *yaml.Node, key string) (float64, bool) {
	var f float64
	if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil || f < 0 || f != f {
		p.fail(n, fmt.Sprintf("%s must be a number ≥ 0, not %q", key, n.Value))
		return 0, false
	}
	return f, true
}

func (p *ruleParser) count(n *yaml.Node, key string, min int) (int, bool) {
	var i int
	if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil || i < min {
		p.fail(n, fmt.Sprintf("%s must be a whole number ≥ %d, not %q", key, min, n.Value))
		return 0, false
	}
	return i, true
}

func (p *ruleParser) duration(n *yaml.Node, key string, max time.Duration) (time.Duration, bool) {
	s, ok := p.str(n, key)
	if !ok {
		return 0, false
	}
	d, err := query.ParseDuration(s)
	switch {
	case err != nil:
		p.fail(n, fmt.Sprintf("%s: %v", key, err))
		return 0, false
	case d%Step != 0:
		p.fail(n, fmt.Sprintf("%s %s must be a whole number of %s (the evaluation step)", key, s, fmtDur(Step)))
		return 0, false
	case d > max:
		p.fail(n, fmt.Sprintf("%s %s is longer than the %s allowed", key, s, fmtDur(max)))
		return 0, false
	}
	return d, true
}

// dims reads a list of dimensions (or one, comma-separated).
func (p *ruleParser) dims(n *yaml.Node, key string) ([]string, bool) {
	var out []string
	switch n.Kind {
	case yaml.ScalarNode:
		for _, d := range strings.Split(n.Value, ",") {
			if d = strings.TrimSpace(d); d != "" {
				out = append(out, d)
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			s, ok := p.str(c, key)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
	default:
		p.fail(n, key+" must be a list of dimensions")
		return nil, false
	}
	for _, d := range out {
		if schemas.DimByName[d] == nil {
			p.fail(n, fmt.Sprintf("%s: unknown dimension %q; dimensions: %s", key, d, strings.Join(schemas.RollupDims, ", ")))
			return nil, false
		}
	}
	return out, true
}

func (p *ruleParser) threshold(n *yaml.Node, key string, t *Threshold, after *int, window *time.Duration) bool {
	known := thresholdKeys
	if after != nil {
		known = resolveKeys
	}
	ok := true
	p.mapping(n, key, known, func(k string, v *yaml.Node) {
		var good bool
		switch k {
		case "above":
			t.Above, good = p.number(v, key+"."+k)
		case "below":
			t.Below, good = p.number(v, key+"."+k)
			t.Falls = true
		case "ratio":
			t.Ratio, good = p.number(v, key+"."+k)
		case "delta":
			t.Delta, good = p.number(v, key+"."+k)
		case "after":
			*after, good = p.count(v, key+"."+k, 1)
		case "window":
			*window, good = p.duration(v, key+"."+k, maxWindow)
		}
		ok = ok && good
	})
	return ok
}

// unset marks the resolve thresholds not given (a given one is ≥ 0).
var unset = Threshold{Above: -1, Below: -1, Ratio: -1, Delta: -1}

// Rule defaults.
const (
	defaultMinCohort    = 20
	defaultMinPeers     = 1
	defaultPersist      = 2
	defaultResolveAfter = 3
)

func (p *ruleParser) rule(n *yaml.Node) (Rule, bool) {
	r := Rule{File: p.file, Line: n.Line, Severity: "warning", MinCohort: defaultMinCohort, MinPeers: defaultMinPeers,
		Persist: defaultPersist, ResolveAfter: defaultResolveAfter, Resolve: unset}
	before := len(p.errs)
	var fireNode, resolveNode, metricNode *yaml.Node
	var resolveSet bool
	if !p.mapping(n, "a rule", ruleKeys, func(k string, v *yaml.Node) {
		switch k {
		case "name":
			if s, ok := p.str(v, k); ok && !namePattern.MatchString(s) {
				p.fail(v, fmt.Sprintf("name %q: want letters, digits and _ (it becomes the alertname label)", s))
			} else {
				r.Name = s
			}
		case "scope":
			if s, ok := p.str(v, k); ok && !contains(Scopes, s) {
				p.fail(v, fmt.Sprintf("scope %q: want one of %s", s, strings.Join(Scopes, ", ")))
			} else {
				r.Scope = s
			}
		case "severity":
			if s, ok := p.str(v, k); ok && !contains(Severities, s) {
				p.fail(v, fmt.Sprintf("severity %q: want one of %s", s, strings.Join(Severities, ", ")))
			} else {
				r.Severity = s
			}
		case "doc":
			r.Doc, _ = p.str(v, k)
		case "metric":
			r.Metric, _ = p.str(v, k)
			metricNode = v
		case "quantile":
			r.Quantile, _ = p.str(v, k)
		case "phase":
			r.Phase, _ = p.str(v, k)
		case "group_by":
			r.GroupBy, _ = p.dims(v, k)
		case "peers":
			r.Peers, _ = p.dims(v, k)
		case "filter":
			r.Filter = p.values(v, k)
		case "exclude":
			r.Exclude = p.values(v, k)
		case "window":
			r.Window, _ = p.duration(v, k, maxWindow)
		case "baseline":
			r.Baseline, _ = p.duration(v, k, maxBaseline)
		case "min_cohort":
			c, _ := p.count(v, k, 1)
			r.MinCohort = int64(c)
		case "min_peers":
			r.MinPeers, _ = p.count(v, k, 1)
		case "persist":
			r.Persist, _ = p.count(v, k, 1)
		case "fire":
			fireNode = v
			p.threshold(v, k, &r.Fire, nil, nil)
		case "resolve":
			resolveNode, resolveSet = v, true
			p.threshold(v, k, &r.Resolve, &r.ResolveAfter, &r.ResolveWindow)
		}
	}) {
		return r, false
	}
	if len(p.errs) > before {
		return r, false
	}
	for _, req := range []struct {
		missing bool
		key     string
	}{{r.Name == "", "name"}, {r.Scope == "", "scope"}, {r.Metric == "", "metric"}, {r.Window == 0, "window"}, {fireNode == nil, "fire"}} {
		if req.missing {
			p.fail(n, fmt.Sprintf("rule %s: %s is required", orUnnamed(r.Name), req.key))
		}
	}
	if len(p.errs) > before {
		return r, false
	}
	p.check(&r, n, metricNode, fireNode, resolveNode, resolveSet)
	return r, len(p.errs) == before
}

func orUnnamed(s string) string {
	if s == "" {
		return "(unnamed)"
	}
	return s
}

// check validates what needs the whole rule: the metric request itself (by
// the metrics API's own parser), the comparison, and the hysteresis.
func (p *ruleParser) check(r *Rule, n, metricNode, fireNode, resolveNode *yaml.Node, resolveSet bool) {
	alt, high := betterHigh[r.Metric]
	switch {
	case high && !r.Fire.Falls && alt != "":
		p.fail(metricNode, fmt.Sprintf("rule %s: %s is better when higher, and a rule fires when its metric rises: watch %s", r.Name, r.Metric, alt))
		return
	case high && !r.Fire.Falls:
		p.fail(fireNode, fmt.Sprintf("rule %s: %s is better when higher: give fire.below, not above", r.Name, r.Metric))
		return
	case !high && r.Fire.Falls:
		p.fail(fireNode, fmt.Sprintf("rule %s: %s is worse when higher: give fire.above, not below", r.Name, r.Metric))
		return
	case r.Fire.Falls && r.Fire.Above != 0:
		p.fail(fireNode, fmt.Sprintf("rule %s: fire gives both above and below", r.Name))
		return
	}
	if err := query.CheckMetrics(r.metricsQuery(time.Unix(0, 0), time.Unix(0, 0).Add(r.Window), Step)); err != nil {
		p.fail(metricNode, fmt.Sprintf("rule %s: %v", r.Name, err))
		return
	}
	if r.Baseline > 0 {
		bs := baselineStep(r.Baseline)
		if r.Baseline%bs != 0 {
			p.fail(n, fmt.Sprintf("rule %s: baseline %s must be a whole number of %s", r.Name, fmtDur(r.Baseline), fmtDur(bs)))
		} else if err := query.CheckMetrics(r.metricsQuery(time.Unix(0, 0), time.Unix(0, 0).Add(r.Baseline), bs)); err != nil {
			p.fail(n, fmt.Sprintf("rule %s: baseline: %v", r.Name, err))
		}
	}
	if len(r.Peers) == 0 && r.Baseline == 0 {
		p.fail(n, fmt.Sprintf("rule %s: give peers, baseline or both: what is the group compared with?", r.Name))
	}
	for _, d := range r.Peers {
		if contains(r.GroupBy, d) {
			p.fail(n, fmt.Sprintf("rule %s: %s is in both group_by and peers: a group's peers share its peers values and differ in group_by", r.Name, d))
		}
	}
	if len(r.Peers) > 0 && len(r.GroupBy) == 0 {
		p.fail(n, fmt.Sprintf("rule %s: peers need a group_by: the groups that are compared", r.Name))
	}
	for d := range r.Exclude {
		if !contains(r.GroupBy, d) {
			p.fail(n, fmt.Sprintf("rule %s: exclude names %s, which is not in group_by: it excludes groups from alerting", r.Name, d))
		}
	}
	if r.Fire.Ratio == 0 {
		r.Fire.Ratio = 1
	}
	if r.Fire.Ratio < 1 {
		p.fail(fireNode, fmt.Sprintf("rule %s: fire.ratio %g is below 1: it would fire on a group that is better than expected", r.Name, r.Fire.Ratio))
	}
	if r.Fire.Ratio == 1 && r.Fire.Delta == 0 {
		p.fail(fireNode, fmt.Sprintf("rule %s: fire needs a ratio above 1 or a delta above 0, or it fires on every group that is as expected", r.Name))
	}
	// A resolve threshold not given is half-way between expected and
	// firing: a group hovering at the threshold neither flaps nor stays
	// firing once it is back.
	for _, f := range []struct {
		res *float64
		def float64
	}{
		{&r.Resolve.Above, r.Fire.Above / 2}, {&r.Resolve.Below, r.Fire.Below * 1.25}, {&r.Resolve.Ratio, 1 + (r.Fire.Ratio-1)/2}, {&r.Resolve.Delta, r.Fire.Delta / 2}} {
		if *f.res < 0 {
			*f.res = f.def
		}
	}
	if r.Resolve.Falls && !r.Fire.Falls {
		p.fail(resolveNode, fmt.Sprintf("rule %s: resolve gives below, but fire rises (above)", r.Name))
	}
	r.Resolve.Falls = r.Fire.Falls
	if !resolveSet {
		return
	}
	if r.Resolve.Ratio < 1 {
		r.Resolve.Ratio = 1
	}
	if r.ResolveWindow > r.Window {
		p.fail(resolveNode, fmt.Sprintf("rule %s: resolve.window %s is longer than window %s", r.Name, fmtDur(r.ResolveWindow), fmtDur(r.Window)))
	}
	if r.Fire.Falls && r.Resolve.Below < r.Fire.Below {
		p.fail(resolveNode, fmt.Sprintf("rule %s: resolve.below must not be under fire's %g: an alert would resolve while still bad enough to fire", r.Name, r.Fire.Below))
	}
	if r.Resolve.Above > r.Fire.Above || r.Resolve.Ratio > r.Fire.Ratio || r.Resolve.Delta > r.Fire.Delta {
		p.fail(resolveNode, fmt.Sprintf("rule %s: resolve thresholds must not exceed fire's (above %g, ratio %g, delta %g): an alert would resolve while still bad enough to fire",
			r.Name, r.Fire.Above, r.Fire.Ratio, r.Fire.Delta))
	}
}

// metricsQuery is the metrics API request of the rule's groups over
// [from, to) in buckets of step.
func (r *Rule) metricsQuery(from, to time.Time, step time.Duration) url.Values {
	q := url.Values{}
	q.Set("metric", r.Metric)
	q.Set("from", from.UTC().Format(time.RFC3339Nano))
	q.Set("to", to.UTC().Format(time.RFC3339Nano))
	q.Set("step", strconv.FormatInt(int64(step/time.Second), 10)+"s")
	q.Set("limit", "10000")
	if g := r.labelDims(); len(g) > 0 {
		q.Set("group_by", strings.Join(g, ","))
	}
	if r.Quantile != "" {
		q.Set("quantile", r.Quantile)
	}
	if r.Phase != "" {
		q.Set("phase", r.Phase)
	}
	for d, vs := range r.Filter {
		q.Set(d, strings.Join(vs, ","))
	}
	return q
}

// labelDims are the dimensions of an alert's labels: group_by then peers.
func (r *Rule) labelDims() []string {
	return append(append([]string{}, r.GroupBy...), r.Peers...)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
