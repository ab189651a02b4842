package alert

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/query"
)

// explainAway is the rule's groups without the viewers another alert
// explains: while another rule's alert on the same metric fires (or
// resolved within the window) on dimensions this rule does not label — an ISP's DNS is down
// while app versions are judged — that alert's viewers are taken out of
// every group's value, the group's and its peers' alike, so that a fault
// elsewhere neither raises what is expected of the others (every version
// failing with the ISP's viewers hides the one version that fails on its
// own) nor makes a group bad (a node whose viewers are that ISP's). The
// cohort sizes stay those of all viewers (judge). Rates only: a rate
// without a cohort is the events-weighted mean of the rest; a quantile is
// not.
func (e *Evaluator) explainAway(ctx context.Context, r *Rule, cur *query.MetricsAnswer, from, to time.Time) (*query.MetricsAnswer, error) {
	if cur.Unit != "%" || e.plan.Granularity.Off {
		return cur, nil
	}
	cohorts, dims := e.otherCohorts(r, from)
	if len(cohorts) == 0 {
		return cur, nil
	}
	q := r.metricsQuery(from, to, e.plan.Step)
	q.Set("group_by", strings.Join(append(r.labelDims(), dims...), ","))
	ans, err := query.Metrics(ctx, e.st, q, to)
	if err != nil {
		return nil, err
	}
	type acc struct{ sum, n float64 }
	rest := map[string]*acc{}
	key := func(g map[string]string) string { return fmtLabels(groupLabels(r, g)) }
	for _, s := range ans.Series {
		if s.Total == nil || s.Samples == 0 || inAny(s.Group, cohorts) {
			continue
		}
		a := rest[key(s.Group)]
		if a == nil {
			a = &acc{}
			rest[key(s.Group)] = a
		}
		a.sum += *s.Total * float64(s.Samples)
		a.n += float64(s.Samples)
	}
	out := *cur
	out.Series = nil
	for _, s := range cur.Series {
		a := rest[key(s.Group)]
		if a == nil || a.n == 0 {
			continue // all its viewers are another alert's
		}
		v := a.sum / a.n
		s.Total, s.Samples = &v, int64(a.n)
		out.Series = append(out.Series, s)
	}
	return &out, nil
}

// otherCohorts are the label sets (without context) of the other rules'
// alerts on r's metric (an alert explains its own anomaly, not another
// kind) firing now or resolved after from, whose dimensions r's groups do
// not name, and those dimensions.
func (e *Evaluator) otherCohorts(r *Rule, from time.Time) (cohorts []map[string]string, dims []string) {
	gp := e.plan.Granularity
	mine := map[string]bool{}
	for _, d := range r.labelDims() {
		mine[d] = true
	}
	seen := map[string]bool{}
	add := func(g *group) {
		if g.rule == nil || g.rule == r || g.alert == nil || g.rule.Metric != r.Metric {
			return
		}
		id := gp.identity(groupLabels(g.rule, g.alert.Labels))
		for d := range id {
			if mine[d] {
				return // nested in or crossing r's groups by a shared label: granularity's
			}
		}
		cohorts = append(cohorts, id)
		for d := range id {
			if !seen[d] {
				seen[d] = true
				dims = append(dims, d)
			}
		}
	}
	for _, key := range sortedKeys(e.groups) {
		add(e.groups[key])
	}
	for _, key := range sortedKeys(e.past) {
		if p := e.past[key]; p.end.After(from) && e.groups[key] == nil {
			add(p.g)
		}
	}
	sort.Strings(dims)
	return cohorts, dims
}

// inAny says the group's values match all of one of the cohorts.
func inAny(g map[string]string, cohorts []map[string]string) bool {
	for _, c := range cohorts {
		match := true
		for d, v := range c {
			if g[d] != v {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
