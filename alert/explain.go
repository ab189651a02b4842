package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Verdict is the localizer's word on a firing group: the scope it failed
// at (a label, "" keeps the rule's) and the annotations that say why.
type Verdict struct {
	Scope    string
	Evidence string // the facts for the verdict, one line
	RuledOut string // the other scopes the group could be, and why not
	Trace    string // a `lastmile trace` command for an affected session
}

// annotate adds the verdict's annotations.
func (v Verdict) annotate(ann map[string]string) {
	if v.Scope != "" {
		ann["verdict"] = v.Scope
	}
	for k, s := range map[string]string{"evidence": v.Evidence, "ruled_out": v.RuledOut, "trace": v.Trace} {
		if s != "" {
			ann[k] = s
		}
	}
}

// explain asks Plan.Explain for the verdict, bounded by ExplainTimeout; a
// verdict naming a scope the group's labels cannot be (a system verdict
// for an edge node's alert) keeps the rule's scope.
func (e *Evaluator) explain(ctx context.Context, r *Rule, labels map[string]string, from, to time.Time) Verdict {
	if e.plan.Explain == nil {
		return Verdict{}
	}
	if e.plan.ExplainTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.plan.ExplainTimeout)
		defer cancel()
	}
	v, err := e.plan.Explain(ctx, from, to, r.Metric, labels)
	if err != nil {
		level.Warn(e.logger).Log("msg", "no verdict for a firing alert; it keeps its rule's scope", "rule", r.Name, "labels", fmtLabels(labels), "err", err)
		return Verdict{}
	}
	if v.Scope != "" && !ScopeFits(v.Scope, labels) {
		v.RuledOut = strings.TrimPrefix(v.RuledOut+"; "+v.Scope+": the localizer's verdict, but the alert's group cannot be it", "; ")
		v.Scope = ""
	}
	return v
}

// scopeDims are the dimensions a group must name to be a scope's: an edge
// alert names a node, a CDN or a region, a transcode one a rendition.
var scopeDims = map[string][]string{
	localize.ScopeEdge:      {"node_id", "cdn", "region"},
	localize.ScopeTranscode: {"rendition"},
	localize.ScopePush:      {"stream_id", "room_id"},
	localize.ScopeSource:    {"stream_id", "room_id"},
	localize.ScopeRollout:   {"app_version"},
	localize.ScopeClient:    {"isp", "app_version", "network", "os", "protocol", "codec", "region"},
}

// ScopeFits says a group with these labels can be the scope's.
func ScopeFits(scope string, labels map[string]string) bool {
	for _, d := range scopeDims[scope] {
		if v := labels[d]; v != "" && !(d == "rendition" && v == "source") {
			return true
		}
	}
	return false
}

// metricKPI is the localizer's KPI of a rule's metric ("" when it has
// none: the verdict then rests on the server logs and the cohort).
var metricKPI = map[string]string{
	"video_start_failure_rate":    localize.KPIStartFailure,
	"view_start_failure_rate":     localize.KPIStartFailure,
	"video_playback_failure_rate": localize.KPIPlaybackFailure,
	"view_playback_failure_rate":  localize.KPIPlaybackFailure,
	"video_startup_time":          localize.KPISlowStart,
	"rebuffering_ratio":           localize.KPIRebuffering,
	"session_rebuffer_rate":       localize.KPIRebuffering,
	"rebuffer_frequency":          localize.KPIRebuffering,
	"render_stall_ratio":          localize.KPIRenderStall,
	"render_stall_session_rate":   localize.KPIRenderStall,
	"render_stall_frequency":      localize.KPIRenderStall,
}

// Localizer explains firing alerts with issue 18's scope verdict: the
// group's labels are the incident's cohort, decided by sp from the server
// logs of the span.
func Localizer(st localize.Store, sp localize.ScopePlan) ExplainFunc {
	return func(ctx context.Context, from, to time.Time, metric string, dims map[string]string) (Verdict, error) {
		inc := &localize.Incident{From: from, To: to, KPI: metricKPI[metric], Dims: map[string]string{}}
		for k, v := range dims {
			if k != "app_id" { // where the group lives, not what failed
				inc.Dims[k] = v
			}
		}
		if err := sp.Decide(ctx, st, inc); err != nil {
			return Verdict{}, fmt.Errorf("scope verdict: %w", err)
		}
		v := Verdict{Evidence: joinEvidence(inc.Evidence, 0), RuledOut: joinEvidence(inc.RuledOut, ruledOutChars)}
		if inc.Scope != localize.ScopeUnknown && inc.Scope != localize.ScopeSystem {
			v.Scope = inc.Scope
		}
		if len(inc.Traces) > 0 {
			v.Trace = inc.Traces[0]
		}
		return v, nil
	}
}

// ruledOutChars shortens each ruled-out scope's reason: the alternatives
// are named briefly, the evidence in full.
const ruledOutChars = 160

func joinEvidence(es []localize.Evidence, max int) string {
	var out []string
	for _, e := range es {
		t := e.Text
		if max > 0 && len(t) > max {
			t = strings.ToValidUTF8(t[:max], "") + "…"
		}
		if e.Source != "" && e.Source != "cohort" && !strings.HasPrefix(t, e.Source+":") {
			t = e.Source + ": " + t
		}
		out = append(out, e.Scope+": "+t)
	}
	return strings.Join(out, "; ")
}

// affectedCond is, per metric, the events of an affected session: the trace
// command names one of them when there is one.
var affectedCond = map[string]string{
	"video_start_failure_rate":    "log_type = 'play_stop' AND first_frame_blocked != '' AND code != 0",
	"view_start_failure_rate":     "log_type = 'play_stop' AND first_frame_blocked != '' AND code != 0",
	"video_playback_failure_rate": "log_type = 'play_stop' AND first_frame_blocked = '' AND code != 0",
	"view_playback_failure_rate":  "log_type = 'play_stop' AND first_frame_blocked = '' AND code != 0",
	"rebuffering_ratio":           "log_type = 'heartbeat' AND stall_ms > 0",
	"session_rebuffer_rate":       "log_type = 'heartbeat' AND stall_ms > 0",
	"render_stall_session_rate":   "log_type = 'heartbeat' AND render_stall_ms > 0",
	"render_stall_ratio":          "log_type = 'heartbeat' AND render_stall_ms > 0",
	"video_startup_time":          "log_type = 'first_frame'",
	"frame_rate":                  "log_type = 'heartbeat'",
}

// traceCommand names one session of the group in the window for `lastmile
// trace`: an affected one (a failed start, a stall, the slowest first
// frame) when the metric says what affected is, else the latest.
func traceCommand(ctx context.Context, st Store, r *Rule, labels map[string]string, from, to time.Time) string {
	conds := []string{fmt.Sprintf("ts >= fromUnixTimestamp64Milli(%d, 'UTC') AND ts < fromUnixTimestamp64Milli(%d, 'UTC')", from.UnixMilli(), to.UnixMilli()),
		"session_id != ''"}
	for _, d := range sortedKeys(labels) {
		conds = append(conds, schemas.DimByName[d].Expr()+" = "+store.QuoteString(labels[d]))
	}
	order := "ts DESC"
	if c, ok := affectedCond[r.Metric]; ok {
		order = "(" + c + ") DESC, ifNull(total_ms, 0) DESC, ts DESC"
	}
	out, err := st.QueryJSON(ctx, "SELECT session_id FROM events WHERE "+strings.Join(conds, " AND ")+" ORDER BY "+order+" LIMIT 1")
	if err != nil {
		return ""
	}
	var row struct {
		SessionID string `json:"session_id"`
	}
	if json.Unmarshal(out, &row) != nil || row.SessionID == "" {
		return ""
	}
	return fmt.Sprintf("lastmile trace --session %s --from %s --to %s", row.SessionID,
		from.Add(-time.Minute).UTC().Format(time.RFC3339), to.Add(time.Minute).UTC().Format(time.RFC3339))
}
