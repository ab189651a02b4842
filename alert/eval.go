package alert

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/query"
)

// Step is the default evaluation step; windows are whole steps.
const Step = 10 * time.Second

// Reader is what the read side needs from the analytics store.
type Reader interface {
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
}

// Store is what the evaluator needs from the analytics store.
type Store interface {
	Reader
	Exec(ctx context.Context, sql string) error
}

// ExplainFunc gives the verdict on a group that is about to fire, over
// [from, to): from half a window before its first bad evaluation (the
// fault began in that window; the half keeps the span on the fault and
// what came before as the localizer's history) to now. Localizer
// fills it from package localize. An empty Verdict.Scope keeps the rule's.
type ExplainFunc func(ctx context.Context, from, to time.Time, metric string, dims map[string]string) (Verdict, error)

// Plan is how the evaluator works, one value: the step, how often firing
// alerts are repeated to Alertmanager, and the verdict.
type Plan struct {
	// Step is the time between evaluations; each looks at [t-window, t)
	// with t a multiple of Step.
	Step time.Duration
	// Resend is how often a firing alert is sent again to receivers that
	// expect it (Alertmanager forgets an alert whose endsAt passes); its
	// endsAt is 4 × Resend ahead, as Prometheus does.
	Resend time.Duration
	// Explain, when set, gives the scope and the verdict's annotations of
	// an alert as it fires, within ExplainTimeout; nil keeps the rule's
	// scope. The scope is decided once: it is a label, stored with the
	// alert, and Alertmanager knows an alert by its labels.
	Explain        ExplainFunc
	ExplainTimeout time.Duration
	// Granularity chooses among alerts of different rules on overlapping
	// groups (a node and its CDN × region, a rendition and its stream).
	Granularity Granularity
	// TraceHint adds a `lastmile trace` command for one affected session
	// to a firing alert's annotations (when the verdict gave none).
	TraceHint bool
}

// DefaultPlan evaluates every 10 s and repeats firing alerts every minute.
var DefaultPlan = Plan{Step: Step, Resend: time.Minute, TraceHint: true, ExplainTimeout: 2 * time.Second,
	Granularity: DefaultGranularity}

// Alert states.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Alert is one alert: a group of a rule that fired, with its figures, and
// (when read back) how its notifications were delivered.
type Alert struct {
	Fingerprint string            `json:"fingerprint"`
	Rule        string            `json:"rule"`
	State       string            `json:"state"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// Value is the group's metric over the window when it fired; Expected
	// what its peers and baseline predicted; Samples the stored events
	// behind Value.
	Value    float64    `json:"value"`
	Expected float64    `json:"expected"`
	Samples  int64      `json:"samples"`
	StartsAt time.Time  `json:"starts_at"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
	// Deliveries are filled by the read side.
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// Notifier takes alerts to deliver (the Dispatcher).
type Notifier interface {
	// Notify hands over a state change (firing or resolved); it must not
	// block.
	Notify(event string, alerts []Alert)
	// Repeat hands over the firing alerts, for the receivers that want
	// them again.
	Repeat(alerts []Alert)
}

// Evaluator runs the rules every step and keeps the alerts' state.
type Evaluator struct {
	plan   Plan
	rules  []Rule
	st     Store
	out    Notifier
	logger log.Logger
	now    func() time.Time

	mu     sync.Mutex
	groups map[string]*group // rule name + fingerprint
	// quiet holds a group resolved on a resolve window shorter than its
	// window until its window no longer reaches back before the clean
	// stretch that resolved it: else the stale minute fires it again.
	quiet map[string]time.Time
	// past are the alerts resolved in this process, while their faults can
	// still be in a window or a baseline (pastAlert).
	past   map[string]*pastAlert
	base   map[string]*baseline
	last   time.Time // last evaluation time, for updated_at order
	resent time.Time
	// ready are the groups bad for persist evaluations at this one, fired
	// after every rule is judged (settle).
	ready []readyGroup
	// Counts for /metrics, apart from mu so that a scrape never waits for
	// an evaluation.
	evals, errors, firing atomic.Int64
}

// group is one rule's group as the evaluator tracks it: inactive (absent),
// pending (bad, not long enough), or firing.
type group struct {
	bad, good int
	since     time.Time // first bad evaluation of the current run
	alert     *Alert    // set while firing
	// rule and obs are the group's rule and its observation at the last
	// evaluation (nil without data), for the granularity pass.
	rule *Rule
	obs  *observation
	// held says why a group bad for long enough is not firing (another
	// rule's alert is at the right level), logged once.
	held string
	// waiting is when the group began to wait for a cohort another rule
	// has not judged (Granularity.Wait).
	waiting time.Time
}

type baseline struct {
	to  time.Time
	ans *query.MetricsAnswer
}

// NewEvaluator returns an evaluator; call Load before the first Eval.
func NewEvaluator(plan Plan, rules []Rule, st Store, out Notifier, logger log.Logger) *Evaluator {
	if plan.Step <= 0 {
		plan.Step = Step
	}
	if plan.Resend <= 0 {
		plan.Resend = time.Minute
	}
	return &Evaluator{plan: plan, rules: rules, st: st, out: out, logger: logger, now: time.Now,
		groups: map[string]*group{}, base: map[string]*baseline{}, quiet: map[string]time.Time{},
		past: map[string]*pastAlert{}}
}

// Load reads the firing alerts of the evaluator's rules back from the
// store, so that they go on with their start time, and repeats them to the
// receivers that want it.
func (e *Evaluator) Load(ctx context.Context) error {
	as, err := ReadAlerts(ctx, e.st, Filter{State: StateFiring})
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var firing, gone []Alert
	for i := range as {
		a := as[i]
		a.Deliveries = nil
		if !e.hasRule(a.Rule) {
			// Its rule is no longer evaluated: nothing would ever resolve
			// it, so it ends now, and says why.
			now := e.now()
			a.State, a.EndsAt = StateResolved, &now
			a.Annotations["resolved_by"] = "rule " + a.Rule + " is no longer in the rules"
			if err := WriteAlert(ctx, e.st, &a, e.stamp(now)); err != nil {
				return err
			}
			gone = append(gone, a)
			continue
		}
		e.groups[a.Rule+"\x00"+a.Fingerprint] = &group{alert: &a, since: a.StartsAt}
		firing = append(firing, a)
	}
	e.countFiring()
	if len(gone) > 0 {
		level.Info(e.logger).Log("msg", "firing alerts of rules no longer given resolved", "alerts", len(gone))
		e.out.Notify(StateResolved, gone)
	}
	if len(firing) > 0 {
		level.Info(e.logger).Log("msg", "firing alerts restored", "alerts", len(firing))
		e.out.Repeat(firing)
		e.resent = e.now()
	}
	return nil
}

func (e *Evaluator) hasRule(name string) bool {
	for _, r := range e.rules {
		if r.Name == name {
			return true
		}
	}
	return false
}

// Run evaluates at every multiple of the step until ctx ends.
func (e *Evaluator) Run(ctx context.Context) {
	for {
		next := e.now().Truncate(e.plan.Step).Add(e.plan.Step)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		e.Eval(ctx, next)
	}
}

// Eval evaluates every rule at t (windows end at t) and acts on the state
// changes: stores them and hands them to the notifier.
func (e *Evaluator) Eval(ctx context.Context, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evals.Add(1)
	defer e.countFiring()
	e.ready = e.ready[:0]
	for i := range e.rules {
		if err := e.evalRule(ctx, &e.rules[i], t); err != nil {
			e.errors.Add(1)
			level.Error(e.logger).Log("msg", "alert rule evaluation failed", "rule", e.rules[i].Name, "err", err)
		}
	}
	e.settle(ctx, t)
	if t.Sub(e.resent) >= e.plan.Resend {
		var firing []Alert
		for _, g := range e.groups {
			if g.alert != nil {
				firing = append(firing, *g.alert)
			}
		}
		if len(firing) > 0 {
			sortAlerts(firing)
			e.out.Repeat(firing)
		}
		e.resent = t
	}
}

// observation is one group's judgement at one evaluation.
type observation struct {
	labels   map[string]string
	value    float64
	expected float64
	samples  int64
	peers    *float64 // median of the peers, when there were enough
	own      *float64 // the group's baseline, when it had enough samples
}

func (e *Evaluator) evalRule(ctx context.Context, r *Rule, t time.Time) error {
	cur, err := query.Metrics(ctx, e.st, r.metricsQuery(t.Add(-r.Window), t, e.plan.Step), t)
	if err != nil {
		return fmt.Errorf("window: %w", err)
	}
	pcur, err := e.explainAway(ctx, r, cur, t.Add(-r.Window), t)
	if err != nil {
		return fmt.Errorf("window without other alerts' viewers: %w", err)
	}
	var base *query.MetricsAnswer
	if r.Baseline > 0 {
		if base, err = e.baseline(ctx, r, t); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
	}
	jc := e.judging(r, t)
	obs := judge(r, cur, pcur, base, jc)
	// Firing groups are judged for resolving over the last ResolveWindow
	// when it is shorter: the end of a fault shows sooner.
	robs := obs
	prefix := r.Name + "\x00"
	if r.ResolveWindow > 0 && r.ResolveWindow < r.Window && e.anyFiring(prefix) {
		rcur, err := query.Metrics(ctx, e.st, r.metricsQuery(t.Add(-r.ResolveWindow), t, e.plan.Step), t)
		if err != nil {
			return fmt.Errorf("resolve window: %w", err)
		}
		prcur, err := e.explainAway(ctx, r, rcur, t.Add(-r.ResolveWindow), t)
		if err != nil {
			return fmt.Errorf("resolve window without other alerts' viewers: %w", err)
		}
		robs = judge(r, rcur, prcur, base, jc)
	}
	seen := map[string]bool{}
	for fp, o := range obs {
		seen[fp] = true
		e.step(ctx, r, fp, o, robs[fp], t)
	}
	// Groups with no data in the window count as good: nothing shows them
	// bad any more (a node with no viewers left resolves).
	for key := range e.groups {
		if fp, ok := strings.CutPrefix(key, prefix); ok && !seen[fp] {
			e.step(ctx, r, fp, nil, robs[fp], t)
		}
	}
	return nil
}

// pastAlert is a resolved alert remembered while its fault may still be in
// a window (a peer's, another rule's) or in its group's own baseline.
type pastAlert struct {
	g          *group // rule, and obs with the group's labels and expected
	start, end time.Time
}

// judging is what a rule's judgement needs beside the data, by
// fingerprint: standIn are the groups firing or resolved too recently for
// their window to be clean, with what was expected of them — as a peer,
// such a group stands for what it should be, not for its own fault (two
// streams, one failing: the other is judged against the first one's
// expectation); noOwn are the groups whose own baseline holds their own
// past alert (a stream failing twice in half an hour is not normal at
// the failure rate of its first fault).
type judging struct {
	standIn map[string]float64
	noOwn   map[string]bool
}

func (e *Evaluator) judging(r *Rule, t time.Time) judging {
	jc := judging{standIn: map[string]float64{}, noOwn: map[string]bool{}}
	prefix := r.Name + "\x00"
	for key, g := range e.groups {
		if fp, ok := strings.CutPrefix(key, prefix); ok && g.alert != nil {
			jc.standIn[fp] = g.alert.Expected
		}
	}
	for key, p := range e.past {
		fp, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		if until, quiet := e.quiet[key]; quiet && t.Before(until) {
			jc.standIn[fp] = p.g.obs.expected
		}
		if r.Baseline > 0 && p.end.After(t.Add(-r.Window-r.Baseline)) {
			jc.noOwn[fp] = true
		}
	}
	return jc
}

// remember keeps a resolved alert in past, and forgets those no window or
// baseline reaches any more.
func (e *Evaluator) remember(key string, r *Rule, a *Alert, t time.Time) {
	e.past[key] = &pastAlert{g: &group{rule: r, alert: a, obs: &observation{labels: groupLabels(r, a.Labels), expected: a.Expected}},
		start: a.StartsAt, end: t}
	for k, p := range e.past {
		if t.Sub(p.end) > p.g.rule.Window+p.g.rule.Baseline+maxWindow {
			delete(e.past, k)
		}
	}
}

func (e *Evaluator) anyFiring(prefix string) bool {
	for key, g := range e.groups {
		if g.alert != nil && strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}

// baselineStep is the bucket of baseline windows: the minute rollups serve
// them, up to a day; hours beyond.
func baselineStep(b time.Duration) time.Duration {
	if b <= 24*time.Hour {
		return time.Minute
	}
	return time.Hour
}

// baseline is the rule's groups over the baseline before the window,
// whole buckets, computed again only when its end moves.
func (e *Evaluator) baseline(ctx context.Context, r *Rule, t time.Time) (*query.MetricsAnswer, error) {
	bs := baselineStep(r.Baseline)
	to := t.Add(-r.Window).Truncate(bs)
	if b := e.base[r.Name]; b != nil && b.to.Equal(to) {
		return b.ans, nil
	}
	ans, err := query.Metrics(ctx, e.st, r.metricsQuery(to.Add(-r.Baseline), to, bs), t)
	if err != nil {
		return nil, err
	}
	e.base[r.Name] = &baseline{to: to, ans: ans}
	return ans, nil
}

// judge turns the window's and the baseline's series into one observation
// per group with enough samples (in cur), keyed by fingerprint, its value
// and its peers' from cleanAns (cur without the viewers other alerts
// explain, explainAway); a group in standIn is a peer with that value
// instead.
func judge(r *Rule, cur, cleanAns, base *query.MetricsAnswer, jc judging) map[string]*observation {
	key := func(g map[string]string, dims []string) string {
		var b strings.Builder
		for _, d := range dims {
			b.WriteString(g[d])
			b.WriteByte(0)
		}
		return b.String()
	}
	baseByKey := map[string]query.Series{}
	if base != nil {
		for _, s := range base.Series {
			baseByKey[key(s.Group, r.labelDims())] = s
		}
	}
	// Peer values by the peers dims' values, each with its group key.
	type peerVal struct {
		group string
		v     float64
	}
	peers := map[string][]peerVal{}
	var all []peerVal
	clean := map[string]float64{} // cleanAns's values, by group key
	for _, s := range cleanAns.Series {
		if s.Total != nil {
			clean[key(s.Group, r.labelDims())] = *s.Total
		}
	}
	for _, s := range cur.Series {
		// A group's size is all its viewers; its value, those no other
		// alert explains (none left: not judged, no peer).
		v, ok := clean[key(s.Group, r.labelDims())]
		if s.Total != nil && s.Samples >= r.MinCohort && ok {
			pk, pv := key(s.Group, r.Peers), peerVal{key(s.Group, r.GroupBy), v}
			if v, ok := jc.standIn[fingerprint(r.Name, groupLabels(r, s.Group))]; ok {
				pv.v = v
			}
			peers[pk] = append(peers[pk], pv)
			all = append(all, pv)
		}
	}
	out := map[string]*observation{}
	for _, s := range cur.Series {
		v, ok := clean[key(s.Group, r.labelDims())]
		if s.Total == nil || s.Samples < r.MinCohort || !ok {
			continue
		}
		o := &observation{labels: groupLabels(r, s.Group), value: v, samples: s.Samples}
		if r.excluded(o.labels) {
			continue // a peer of the others only
		}
		if len(r.Peers) > 0 {
			own := key(s.Group, r.GroupBy)
			others := func(ps []peerVal) []float64 {
				var vs []float64
				for _, p := range ps {
					if p.group != own {
						vs = append(vs, p.v)
					}
				}
				return vs
			}
			vs := others(peers[key(s.Group, r.Peers)])
			if len(vs) < r.MinPeers {
				// Too few peers sharing its values (one node per CDN in
				// a region): every other group of the rule is its peer.
				vs = others(all)
			}
			if len(vs) >= r.MinPeers {
				m := median(vs)
				o.peers = &m
			}
		}
		if b, ok := baseByKey[key(s.Group, r.labelDims())]; ok && b.Total != nil && b.Samples >= r.MinCohort && !jc.noOwn[fingerprint(r.Name, o.labels)] {
			v := *b.Total
			o.own = &v
		}
		// The laxer expectation (the higher, the lower for a falling
		// metric): a group is bad only against both. A group with nothing
		// to compare with is not judged: a short history or a lone group
		// is no anomaly.
		if o.peers == nil && o.own == nil {
			continue
		}
		o.expected = expectation(r.Fire.Falls, o.peers, o.own)
		out[fingerprint(r.Name, o.labels)] = o
	}
	return out
}

// expectation is the laxer of the expectations given (at least one).
func expectation(falls bool, xs ...*float64) float64 {
	first, out := true, 0.0
	for _, x := range xs {
		switch {
		case x == nil:
		case first:
			out, first = *x, false
		case falls:
			out = math.Min(out, *x)
		default:
			out = math.Max(out, *x)
		}
	}
	return out
}

// groupLabels are the labels of a series' group.
func groupLabels(r *Rule, g map[string]string) map[string]string {
	out := map[string]string{}
	for _, d := range r.labelDims() {
		out[d] = g[d]
	}
	return out
}

func median(vs []float64) float64 {
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// fingerprint identifies an alert's group: a hash of the rule's name and
// its group's labels (not scope or severity, which a verdict may change).
func fingerprint(rule string, labels map[string]string) string {
	h := xxhash.New()
	h.WriteString(rule)
	for _, k := range sortedKeys(labels) {
		h.WriteString("\x00" + k + "\x00" + labels[k])
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// step advances one group's state by one evaluation: o is the group over
// the window, ro over the resolve window (o again unless shorter); nil
// when the group had too few samples to judge.
func (e *Evaluator) step(ctx context.Context, r *Rule, fp string, o, ro *observation, t time.Time) {
	key := r.Name + "\x00" + fp
	g := e.groups[key]
	if g == nil {
		if q, ok := e.quiet[key]; ok {
			if t.Before(q) {
				return
			}
			delete(e.quiet, key)
		}
		if o == nil || !r.Fire.Bad(o.value, o.expected) {
			return
		}
		g = &group{since: t}
		e.groups[key] = g
	}
	g.rule, g.obs = r, o
	if g.alert == nil { // pending
		if o == nil || !r.Fire.Bad(o.value, o.expected) {
			delete(e.groups, key)
			return
		}
		if g.bad++; g.bad >= r.Persist {
			e.ready = append(e.ready, readyGroup{key: key, fp: fp, g: g})
		}
		return
	}
	// Firing: resolve after ResolveAfter good evaluations in a row.
	if ro != nil && r.Resolve.Bad(ro.value, ro.expected) {
		g.good = 0
		return
	}
	if g.good++; g.good < r.ResolveAfter {
		return
	}
	a := *g.alert
	a.State = StateResolved
	end := t
	a.EndsAt = &end
	if err := WriteAlert(ctx, e.st, &a, e.stamp(t)); err != nil {
		level.Error(e.logger).Log("msg", "cannot store a resolved alert; trying again next step", "rule", r.Name, "err", err)
		return
	}
	delete(e.groups, key)
	e.remember(key, r, &a, t)
	if r.ResolveWindow > 0 && r.ResolveWindow < r.Window {
		e.quiet[key] = t.Add(r.Window - r.ResolveWindow)
	}
	level.Info(e.logger).Log("msg", "alert resolved", "rule", r.Name, "labels", fmtLabels(a.Labels), "started", a.StartsAt)
	e.out.Notify(StateResolved, []Alert{a})
}

// stamp is the updated_at of a write at t: strictly after the last one, so
// that the latest version of a row wins.
func (e *Evaluator) stamp(t time.Time) time.Time {
	n := e.now()
	if n.Before(t) {
		n = t
	}
	if !n.After(e.last) {
		n = e.last.Add(time.Millisecond)
	}
	e.last = n
	return n
}

// fire announces a group bad for long enough: its alert, stored first (a
// restart must know it), then notified. extra are labels of a broader group
// it is the whole of.
func (e *Evaluator) fire(ctx context.Context, rg readyGroup, extra map[string]string, t time.Time) {
	g, r, o := rg.g, rg.g.rule, rg.g.obs
	a := e.newAlert(ctx, r, rg.fp, o, extra, g.since, t)
	if err := WriteAlert(ctx, e.st, a, e.stamp(t)); err != nil {
		level.Error(e.logger).Log("msg", "cannot store a firing alert; trying again next step", "rule", r.Name, "err", err)
		return
	}
	g.alert, g.held = a, ""
	level.Info(e.logger).Log("msg", "alert firing", "rule", r.Name, "labels", fmtLabels(a.Labels), "value", o.value, "expected", o.expected, "samples", o.samples)
	e.out.Notify(StateFiring, []Alert{*a})
}

func (e *Evaluator) newAlert(ctx context.Context, r *Rule, fp string, o *observation, extra map[string]string, since, t time.Time) *Alert {
	labels := map[string]string{"alertname": r.Name, "scope": r.Scope, "severity": r.Severity}
	for k, v := range extra {
		labels[k] = v
	}
	for k, v := range o.labels {
		labels[k] = v
	}
	v := e.explain(ctx, r, o.labels, since.Add(-r.Window/2), t)
	if v.Scope != "" {
		labels["scope"] = v.Scope
	}
	ann := map[string]string{
		"summary":  summary(r, o),
		"value":    fmtValue(o.value),
		"expected": fmtValue(o.expected),
		"samples":  strconv.FormatInt(o.samples, 10),
		"window":   fmtDur(r.Window),
		"metrics":  metricsCommand(r, o.labels, since.Add(-r.Window)),
	}
	if o.peers != nil {
		ann["peers"] = fmtValue(*o.peers)
	}
	if o.own != nil {
		ann["baseline"] = fmtValue(*o.own)
	}
	if r.Doc != "" {
		ann["description"] = r.Doc
	}
	v.annotate(ann)
	if e.plan.TraceHint && ann["trace"] == "" {
		if cmd := traceCommand(ctx, e.st, r, o.labels, t.Add(-r.Window), t); cmd != "" {
			ann["trace"] = cmd
		}
	}
	return &Alert{Fingerprint: fp, Rule: r.Name, State: StateFiring, Labels: labels, Annotations: ann,
		Value: o.value, Expected: o.expected, Samples: o.samples, StartsAt: since}
}

func summary(r *Rule, o *observation) string {
	var vs []string
	for _, d := range r.GroupBy {
		vs = append(vs, d+"="+o.labels[d])
	}
	what := r.Metric
	if r.Quantile != "" {
		what += " p" + strings.TrimPrefix(strings.TrimPrefix(r.Quantile, "0."), "p")
	}
	if r.Phase != "" {
		what += " " + r.Phase
	}
	var exp []string
	if o.peers != nil {
		exp = append(exp, "peers "+fmtValue(*o.peers))
	}
	if o.own != nil {
		exp = append(exp, "own baseline "+fmtValue(*o.own))
	}
	return fmt.Sprintf("%s: %s %s over %s (expected %s: %s), %d samples",
		strings.Join(vs, " "), what, fmtValue(o.value), fmtDur(r.Window), fmtValue(o.expected), strings.Join(exp, ", "), o.samples)
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// fmtDur prints 1m, 1h30m, 90s as 1m30s: time.Duration's form without
// its zero tails.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func fmtLabels(l map[string]string) string {
	var out []string
	for _, k := range sortedKeys(l) {
		out = append(out, k+"="+l[k])
	}
	return strings.Join(out, ",")
}

// metricsCommand shows the group's metric over time.
func metricsCommand(r *Rule, labels map[string]string, from time.Time) string {
	cmd := "lastmile metrics --metric " + r.Metric
	if r.Quantile != "" {
		cmd += " --quantile " + r.Quantile
	}
	if r.Phase != "" {
		cmd += " --phase " + r.Phase
	}
	for _, d := range sortedKeys(labels) {
		cmd += " --filter " + d + "=" + labels[d]
	}
	return cmd + " --from " + from.UTC().Format(time.RFC3339) + " --step 1m --series"
}

// Counts returns the evaluations, the failed rule evaluations and the
// alerts firing after the last evaluation.
func (e *Evaluator) Counts() (evals, errors, firing int) {
	return int(e.evals.Load()), int(e.errors.Load()), int(e.firing.Load())
}

// countFiring updates the firing count; mu is held.
func (e *Evaluator) countFiring() {
	n := 0
	for _, g := range e.groups {
		if g.alert != nil {
			n++
		}
	}
	e.firing.Store(int64(n))
}
