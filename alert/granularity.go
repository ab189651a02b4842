package alert

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/query"
)

// Granularity chooses among alerts of different rules on overlapping
// groups — a node and its CDN × region, a rendition and its stream, an app
// version and the stream most of its viewers watch — the one at the right
// level, so that one fault makes one alert. A group ready to fire is held
// (not fired, judged again every step) while another rule's group that is
// bad too explains it better:
//
//   - a group explains another when, splitting the other's metric by the
//     group's own dimensions, the group's part holds at least Share of the
//     other's excess over its expectation and the rest of the other group
//     is not bad by the other's rule (or there is no rest: a CDN × region
//     served by one node);
//   - a broader group (its labels a subset of the narrower's) is held while
//     a narrower one explains it; a narrower one is held while its broader
//     group does not (the anomaly is spread over its members);
//   - of two crossing groups (an app version and a stream) the one that
//     explains the other without being explained by it fires; when each
//     explains the other (the ISP whose viewers are the CDN × region's
//     slow ones), the one that alerted first stands for both.
//
// A narrower group that is the whole of a broader one fires with the
// broader group's labels too, and a broader group with one member at a
// narrower level some rule watches (a CDN × region of one node) with
// that member's labels. A group alerting on one rule is held on
// others of the same or lower severity: one alert per group of viewers.
type Granularity struct {
	// Off fires every rule's groups as they become ready.
	Off bool
	// Context are dimensions that say where a group lives, not which group
	// it is (app_id): groups are compared without them.
	Context []string
	// Share is the part of a group's excess a member must hold to explain it.
	Share float64
	// Wait bounds how long a ready group waits for a cohort inside or
	// across it that another rule has not judged yet (awaited).
	Wait time.Duration
	// MinElsewhere is the fewest samples of a crossing cohort outside the
	// group that can show the fault follows the cohort.
	MinElsewhere int64
	// MaxCompared bounds the other groups a ready group is weighed against
	// (two metric reads each), those bad now first: a storm of alerts
	// must not stall the evaluation.
	MaxCompared int
}

// DefaultGranularity: a member explains its group when it holds 60% of the
// excess and the rest of the group is normal; a group waits up to a minute
// for a rule to judge such a member.
var DefaultGranularity = Granularity{Context: []string{"app_id"}, Share: 0.6, Wait: time.Minute, MinElsewhere: 3, MaxCompared: 32}

// readyGroup is a group bad for persist evaluations, waiting for settle.
type readyGroup struct {
	key, fp string
	g       *group
}

// settle fires the groups that became ready in this evaluation, or holds
// those another rule's group explains better.
func (e *Evaluator) settle(ctx context.Context, t time.Time) {
	for _, rg := range e.ready {
		extra, why := e.level(ctx, rg, t)
		if why != "" {
			if rg.g.held != why {
				level.Info(e.logger).Log("msg", "alert held: another rule's alert is at the right level", "rule", rg.g.rule.Name,
					"labels", fmtLabels(rg.g.obs.labels), "by", why)
			}
			rg.g.held = why
			continue
		}
		e.fire(ctx, rg, extra, t)
	}
}

// level says why the ready group rg must wait ("" when it fires), and the
// labels of broader groups it is the whole of.
func (e *Evaluator) level(ctx context.Context, rg readyGroup, t time.Time) (extra map[string]string, held string) {
	gp := e.plan.Granularity
	if gp.Off {
		return nil, ""
	}
	c := rg.g
	cd := gp.identity(c.obs.labels)
	for _, o := range e.related(rg, t) {
		od := gp.identity(o.obs.labels)
		if !consistent(cd, od) {
			continue
		}
		if sameDims(cd, od) {
			// The same group: one alert stands for it (its first rule's),
			// unless this one is more severe.
			if o.alert != nil && severityRank(c.rule.Severity) >= severityRank(o.rule.Severity) {
				return nil, o.rule.Name + " " + fmtLabels(od)
			}
			continue
		}
		co, cWhole := e.explains(ctx, c, o, t)
		oc, oWhole := e.explains(ctx, o, c, t)
		// same: the two groups are the same viewers under other labels (a
		// node and the CDN × region it alone serves, by rules that do not
		// label both).
		same := cWhole && oWhole
		switch {
		case oc && !co, subset(od, cd) && !co:
			return nil, o.rule.Name + " " + fmtLabels(od)
		case (co && (oc || cWhole)) || same:
			// Of two groups that are one, or that explain each other, the
			// one that alerted first stands for both; of two ready at
			// once, the first rule's.
			if o.alert != nil || (same && o.rule.Name < c.rule.Name) {
				return nil, o.rule.Name + " " + fmtLabels(od)
			}
		}
		if (co && cWhole) || same {
			extra = withLabels(extra, o.obs.labels)
		}
	}
	why, more := e.awaited(ctx, rg, t)
	if why != "" {
		return nil, why
	}
	extra = withLabels(extra, more)
	extra = withLabels(extra, e.soleMembers(ctx, c, t))
	return extra, ""
}

// awaited says why the ready group rg waits for a cohort another rule on
// its metric watches but has not alerted on yet (its cohort is still
// growing, or it is not yet bad for persist evaluations): one member of
// the group at that rule's level holds Share of the group's excess with
// the rest of the group normal, and, when the member crosses the group
// rather than sits inside it, the member's viewers outside the group are
// bad too — the fault follows that cohort, not the group (a lagging
// rendition whose viewers happen to crowd one node). It waits at most
// Granularity.Wait; then it fires with the member's labels (more).
func (e *Evaluator) awaited(ctx context.Context, rg readyGroup, t time.Time) (why string, more map[string]string) {
	gp := e.plan.Granularity
	c := rg.g
	cd := gp.identity(c.obs.labels)
	for i := range e.rules {
		r2 := &e.rules[i]
		if r2.Name == c.rule.Name || r2.Metric != c.rule.Metric || r2.Phase != c.rule.Phase {
			continue
		}
		rd := gp.identity(groupLabels(r2, nil))
		if len(rd) == 0 || subset(rd, cd) || sameDims(rd, cd) {
			continue // broader or the same level: level's business
		}
		var split []string
		for _, d := range r2.labelDims() {
			if _, in := c.obs.labels[d]; !in {
				split = append(split, d)
			}
		}
		ans, err := e.split(ctx, c, split, t)
		if err != nil {
			continue
		}
		m := topMember(ans, c)
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, d := range r2.labelDims() {
			if v, in := c.obs.labels[d]; in {
				labels[d] = v
			} else {
				labels[d] = m[d]
			}
		}
		key := r2.Name + "\x00" + fingerprint(r2.Name, labels)
		if g := e.groups[key]; g != nil && g.alert != nil || e.past[key] != nil || r2.excluded(labels) {
			continue // alerted already (level weighed it), or never judged
		}
		if ok, _ := explainsIn(ans, c, gp.Share, func(g map[string]string) bool { return matchAll(g, m, split) }); !ok {
			continue
		}
		narrower := subset(cd, rd)
		if !narrower && !e.badElsewhere(ctx, c, m, split, t) {
			continue
		}
		if c.waiting.IsZero() {
			c.waiting = t
		}
		if t.Sub(c.waiting) >= gp.Wait {
			more = map[string]string{}
			for _, d := range split {
				if !contains(gp.Context, d) {
					more[d] = m[d]
				}
			}
			return "", more
		}
		return r2.Name + " " + fmtLabels(gp.identity(labels)) + " (not judged yet)", nil
	}
	return "", nil
}

// topMember is the split group's series with the largest excess over the
// group's expectation: its split labels.
func topMember(ans *query.MetricsAnswer, y *group) map[string]string {
	var best map[string]string
	top := 0.0
	for _, s := range ans.Series {
		if s.Total == nil || s.Samples == 0 {
			continue
		}
		if x := y.rule.Fire.excess(*s.Total, y.obs.expected) * float64(s.Samples); x > top {
			best, top = s.Group, x
		}
	}
	return best
}

// badElsewhere says the member m's viewers outside group c (the same
// context: app) are bad by c's rule against what is expected of c: pooled
// for a rate; for a quantile, most of their samples in bad groups.
func (e *Evaluator) badElsewhere(ctx context.Context, c *group, m map[string]string, split []string, t time.Time) bool {
	gp := e.plan.Granularity
	r := c.rule
	cd := gp.identity(c.obs.labels)
	filter := map[string]string{}
	for d, v := range c.obs.labels {
		if _, in := cd[d]; !in {
			filter[d] = v // context
		}
	}
	for _, d := range split {
		filter[d] = m[d]
	}
	ans, err := e.window(ctx, r, filter, sortedKeys(cd), t)
	if err != nil {
		return false
	}
	var sum, n, badN float64
	for _, s := range ans.Series {
		if s.Total == nil || s.Samples == 0 || matchAll(s.Group, cd, sortedKeys(cd)) {
			continue
		}
		k := float64(s.Samples)
		sum += *s.Total * k
		n += k
		if r.Fire.Bad(*s.Total, c.obs.expected) {
			badN += k
		}
	}
	if n < float64(gp.MinElsewhere) {
		return false
	}
	if ans.Unit == "%" {
		return r.Fire.Bad(sum/n, c.obs.expected)
	}
	return badN >= n/2
}

// withLabels adds labels to extra, made when needed.
func withLabels(extra, labels map[string]string) map[string]string {
	if len(labels) == 0 {
		return extra
	}
	if extra == nil {
		extra = map[string]string{}
	}
	maps.Copy(extra, labels)
	return extra
}

// related are the other rules' groups a ready group is weighed against:
// those bad now (pending or firing), and those resolved within its window,
// whose fault its window still holds (a rendition that failed a minute ago
// still weighs on its app versions' two-minute windows).
func (e *Evaluator) related(rg readyGroup, t time.Time) []*group {
	var out []*group
	c := rg.g
	for _, key := range sortedKeys(e.groups) {
		if o := e.groups[key]; key != rg.key && o.obs != nil && o.rule != nil && o.rule != c.rule {
			out = append(out, o)
		}
	}
	for _, key := range sortedKeys(e.past) {
		if p := e.past[key]; p.g.rule != c.rule && p.end.After(t.Add(-c.rule.Window)) && e.groups[key] == nil {
			out = append(out, p.g)
		}
	}
	if max := e.plan.Granularity.MaxCompared; max > 0 && len(out) > max {
		out = out[:max]
	}
	return out
}

// severityRank orders Severities, most severe first.
func severityRank(s string) int {
	for i, x := range Severities {
		if x == s {
			return i
		}
	}
	return len(Severities)
}

// identity are a group's labels without the context dimensions.
func (gp Granularity) identity(labels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if !contains(gp.Context, k) {
			out[k] = v
		}
	}
	return out
}

// consistent: no dimension both name with different values.
func consistent(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}

func sameDims(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// subset: every dimension of a is in b (a is the broader group).
func subset(a, b map[string]string) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return len(a) < len(b)
}

// explains says x's part of y's group holds Share of y's excess with the
// rest of y normal (Granularity), over y's rule and window; whole says
// there is no rest. A failed read explains nothing: the alert fires.
func (e *Evaluator) explains(ctx context.Context, x, y *group, t time.Time) (ok, whole bool) {
	gp := e.plan.Granularity
	xd, yd := gp.identity(x.obs.labels), gp.identity(y.obs.labels)
	var split []string
	for _, d := range sortedKeys(xd) {
		if _, in := yd[d]; !in {
			split = append(split, d)
		}
	}
	if len(split) == 0 {
		return false, false
	}
	ans, err := e.split(ctx, y, split, t)
	if err != nil {
		return false, false
	}
	ok, whole = explainsIn(ans, y, gp.Share, func(g map[string]string) bool { return matchAll(g, xd, split) })
	if whole {
		return subset(yd, xd), true
	}
	return ok, false
}

// explainsIn is explains over y's split ans, the member's series those
// isMember picks.
func explainsIn(ans *query.MetricsAnswer, y *group, share float64, isMember func(map[string]string) bool) (ok, whole bool) {
	r, exp := y.rule, y.obs.expected
	var own, total, restSum, restN float64
	found := false
	for _, s := range ans.Series {
		if s.Total == nil || s.Samples == 0 {
			continue
		}
		n := float64(s.Samples)
		excess := r.Fire.excess(*s.Total, exp) * n
		total += excess
		if isMember(s.Group) {
			own, found = own+excess, true
			continue
		}
		restSum += *s.Total * n
		restN += n
	}
	if !found || total <= 0 || own < share*total {
		return false, false
	}
	if restN == 0 {
		// x is all of y: it explains y when it is narrower (a CDN × region
		// of one node); a crossing group that is all of y may be the
		// broader audience (a stream nearly every viewer watches), no
		// explanation, or the same viewers (level compares both ways).
		return false, true
	}
	return !r.Fire.Bad(restSum/restN, exp), false
}

// split is y's metric over its rule's window, by the dims.
func (e *Evaluator) split(ctx context.Context, y *group, dims []string, t time.Time) (*query.MetricsAnswer, error) {
	return e.window(ctx, y.rule, y.obs.labels, dims, t)
}

// window is r's metric over its window for the viewers filter names, by
// the dims.
func (e *Evaluator) window(ctx context.Context, r *Rule, filter map[string]string, dims []string, t time.Time) (*query.MetricsAnswer, error) {
	q := r.metricsQuery(t.Add(-r.Window), t, e.plan.Step)
	q.Set("group_by", strings.Join(dims, ","))
	for d, v := range filter {
		q.Set(d, v)
	}
	ans, err := query.Metrics(ctx, e.st, q, t)
	if err != nil {
		level.Warn(e.logger).Log("msg", "cannot split a group to compare alert levels", "rule", r.Name, "by", strings.Join(dims, ","), "err", err)
	}
	return ans, err
}

// soleMembers are the labels a firing group gains from the narrower
// levels the rules know of (another rule's labels include all of its
// own) when it has one member there: a CDN × region served by one node
// names the node even if no node rule is bad.
func (e *Evaluator) soleMembers(ctx context.Context, c *group, t time.Time) map[string]string {
	gp := e.plan.Granularity
	cd := gp.identity(c.obs.labels)
	out := map[string]string{}
	seen := map[string]bool{}
	for i := range e.rules {
		var extra []string
		rd := gp.identity(groupLabels(&e.rules[i], nil))
		if !subset(cd, rd) {
			continue
		}
		for _, d := range sortedKeys(rd) {
			if _, in := cd[d]; !in {
				extra = append(extra, d)
			}
		}
		if k := strings.Join(extra, ","); seen[k] {
			continue
		} else {
			seen[k] = true
		}
		ans, err := e.split(ctx, c, extra, t)
		if err != nil {
			continue
		}
		var members []map[string]string
		for _, s := range ans.Series {
			if s.Total != nil && s.Samples > 0 {
				members = append(members, s.Group)
			}
		}
		if len(members) == 1 {
			for _, d := range extra {
				if members[0][d] != "" {
					out[d] = members[0][d]
				}
			}
		}
	}
	return out
}

func matchAll(group, want map[string]string, dims []string) bool {
	for _, d := range dims {
		if group[d] != want[d] {
			return false
		}
	}
	return true
}

// String is the plan in a line, for logs.
func (gp Granularity) String() string {
	if gp.Off {
		return "off"
	}
	return fmt.Sprintf("share %.2f, wait %s, elsewhere %d, context %s, compared %d", gp.Share, gp.Wait, gp.MinElsewhere, strings.Join(gp.Context, ","), gp.MaxCompared)
}
