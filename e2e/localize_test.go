package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/media/scenario"
	"github.com/lastmile-qoe/lastmile/query"
)

// localizeGrace is how long after a fault's end its effects still count: a
// view's play_stop comes when the view ends.
const localizeGrace = 15 * time.Second

// getLocalize calls GET /api/v1/localize over [from, to).
func (p *proc) localize(t testing.TB, from, to time.Time) query.LocalizeAnswer {
	t.Helper()
	q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/api/v1/localize?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+queryToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("localize %s: %d %s", q.Encode(), resp.StatusCode, body)
	}
	var ans query.LocalizeAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("localize answer %s: %v", body, err)
	}
	return ans
}

// checkLocalize asks the live localizer about each window of overlapping
// faults ([first start, last end + grace]) and matches each fault's
// labelled dimensions against the window's top k incidents with distinct
// cohorts, k the number of faults in it (localize.LivePlan.SameCohort: a
// node stands for its CDN and region, a stream for its room). The faults
// named in want.scope have to be matched with the labelled scope, those in
// want.cohort matched whatever the verdict; the others are reported. It logs
// the scenario's exact dimension matches and scope accuracy.
func checkLocalize(t *testing.T, p *proc, l scenario.Labels, want localizeWant) {
	t.Helper()
	lp := localize.DefaultLivePlan
	spans := make([][2]time.Time, len(l.Faults))
	for i, f := range l.Faults {
		spans[i] = [2]time.Time{f.Start, f.End}
	}
	var same, exact, scope int
	// A fault of want.shown is required, with its scope, when the client
	// data shows it (faultShown).
	shown := map[string]bool{}
	for _, f := range l.Faults {
		if slices.Contains(want.shown, f.Name) {
			var why string
			shown[f.Name], why = faultShown(t, p, f, l.Faults, lp.Search.MinScore)
			t.Logf("localize %s: %s", f.Name, why)
		}
	}
	for _, g := range localize.OverlapGroups(spans) {
		from, to := l.Faults[g[0]].Start, l.Faults[g[0]].End
		for _, i := range g {
			if e := l.Faults[i].End; e.After(to) {
				to = e
			}
		}
		ans := p.localize(t, from, to.Add(localizeGrace))
		top := localize.TopCohorts(ans.Incidents, len(g))
		for _, i := range g {
			f := l.Faults[i]
			verdict := "no incident of its cohort among the top " + fmt.Sprint(len(g))
			matched := false
			for _, inc := range top {
				ok, ex := lp.SameCohort(f.Dims, inc.Dims)
				if !ok {
					continue
				}
				matched = true
				same++
				verdict = fmt.Sprintf("%s on %v, scope %s", inc.KPI, inc.Dims, inc.Scope)
				if ex {
					exact++
					verdict = "exact: " + verdict
				}
				if inc.Scope == f.Scope {
					scope++
				} else if slices.Contains(want.scope, f.Name) || shown[f.Name] {
					t.Errorf("localize: %s (%v) came out as scope %s, want %s; evidence %v", f.Name, f.Dims, inc.Scope, f.Scope, inc.Evidence)
				}
				break
			}
			t.Logf("localize %s (%s %s %v): %s", f.Name, f.Scope, f.Kind, f.Dims, verdict)
			if !matched && (slices.Contains(want.scope, f.Name) || slices.Contains(want.cohort, f.Name) || shown[f.Name]) {
				t.Errorf("localize: %s (%v) is not among the top %d incidents of its window", f.Name, f.Dims, len(g))
			}
		}
		for j, inc := range ans.Incidents {
			t.Logf("    #%d %s %s..%s %s on %v: %.0f of %.0f views, %.3f vs %.3f expected, score %.1f",
				j+1, inc.Scope, inc.From.Format("15:04:05"), inc.To.Format("15:04:05"), inc.KPI, inc.Dims, inc.Affected, inc.Views, inc.Value, inc.Expected, inc.Score)
		}
	}
	t.Logf("localize %s: %d faults, cohort matched %d (exact dims %d), scope right %d", l.Scenario, len(l.Faults), same, exact, scope)
}

// localizeWant names the faults a scenario test requires of the live
// localizer: scope, their cohort with the labelled scope; cohort, their
// cohort only (the verdict is not yet steady from run to run); shown, their
// cohort with the labelled scope when the client data shows the fault.
type localizeWant struct{ scope, cohort, shown []string }

// shownKPI is the play_stop condition of a fault kind's affected views.
var shownKPI = map[string]string{
	"weak_network":             "first_frame_blocked = '' AND stall_count > 0",
	"lag":                      "first_frame_blocked = '' AND stall_count > 0",
	"decoder_first_frame_fail": "first_frame_blocked != '' AND code != 0",
	"dns_fail":                 "first_frame_blocked != '' AND code != 0",
	"fail":                     "first_frame_blocked != '' AND code != 0",
}

// faultShown says whether a small fault's cohort stands out in the views
// that ended over its window (plus localizeGrace) against the rest of the
// audience, by the live search's own test: at least 4 affected views and a
// Poisson score of minScore or more against the others' rate. The views of
// the other faults on the same KPI overlapping its window are left out of
// both sides: an ISP failing at DNS meanwhile raises the rest's failure
// rate, but the localizer sets that ISP's viewers apart. A cohort of a few viewers, or a
// loaded machine on which everyone rebuffers or fails, hides such a fault
// from any localizer; then it is reported, not required.
func faultShown(t *testing.T, p *proc, f scenario.Label, all []scenario.Label, minScore float64) (bool, string) {
	t.Helper()
	affected, ok := shownKPI[f.Kind]
	if !ok {
		t.Fatalf("faultShown: no KPI for fault kind %q", f.Kind)
	}
	until := f.End.Add(localizeGrace)
	in := cohortSQL(f.Dims)
	where := during(f.Start, until)
	var others []string
	for _, o := range all {
		if o.Name != f.Name && shownKPI[o.Kind] == affected && o.Start.Before(until) && f.Start.Before(o.End.Add(localizeGrace)) {
			where += " AND NOT (" + cohortSQL(o.Dims) + ")"
			others = append(others, o.Name)
		}
	}
	rows, err := p.sql(fmt.Sprintf("SELECT countIf(%[1]s AND (%[2]s)) AS a, countIf(%[1]s) AS n, countIf(NOT (%[1]s) AND (%[2]s)) AS ao, countIf(NOT (%[1]s)) AS no FROM play_stop WHERE %[3]s",
		in, affected, where))
	if err != nil || len(rows) != 1 {
		t.Fatalf("faultShown %s: %v %v", f.Name, rows, err)
	}
	num := func(k string) float64 { v, _ := strconv.ParseFloat(fmt.Sprint(rows[0][k]), 64); return v }
	a, n, ao, no := num("a"), num("n"), num("ao"), num("no")
	e := 0.5
	if no > 0 {
		e = max(e, n*ao/no)
	}
	score := 0.0
	if a > e {
		score = a*math.Log(a/e) - (a - e)
	}
	shown := a >= 4 && score >= minScore
	verb := "shown"
	if !shown {
		verb = "not shown, reported only"
	}
	without := ""
	if len(others) > 0 {
		without = " (without " + strings.Join(others, ", ") + ")"
	}
	return shown, fmt.Sprintf("%s in the client data%s: %.0f of %.0f views against %.0f of %.0f for the rest, score %.1f", verb, without, a, n, ao, no, score)
}

// cohortSQL is the condition on play_stop of a fault's viewers: the
// dimensions it names that play_stop has.
func cohortSQL(dims map[string]string) string {
	var cohort []string
	for _, d := range []string{"room_id", "stream_id", "rendition", "node_id", "cdn", "region", "isp", "app_version", "network"} {
		if v, ok := dims[d]; ok {
			cohort = append(cohort, fmt.Sprintf("%s = '%s'", d, v))
		}
	}
	if len(cohort) == 0 {
		return "1"
	}
	return strings.Join(cohort, " AND ")
}

// checkLocalizeQuiet asserts the live localizer finds nothing over the
// whole of a run without faults.
func checkLocalizeQuiet(t *testing.T, p *proc, l scenario.Labels) {
	t.Helper()
	ans := p.localize(t, l.Start, l.End.Add(localizeGrace))
	for _, inc := range ans.Incidents {
		t.Errorf("localize: incident without a fault: %s %s..%s %s on %v: %.0f of %.0f views, %.3f vs %.3f expected",
			inc.Scope, inc.From.Format("15:04:05"), inc.To.Format("15:04:05"), inc.KPI, inc.Dims, inc.Affected, inc.Views, inc.Value, inc.Expected)
	}
	t.Logf("localize %s: %d incidents over the run", l.Scenario, len(ans.Incidents))
}
