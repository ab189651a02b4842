package trace

import (
	"fmt"
	"time"

	"github.com/lastmile-qoe/lastmile/localize"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Verdicts of a play session's diagnosis, worst first.
const (
	VerdictFailed           = "failed"             // an attempt ended with an error code before (or after) its first frame
	VerdictSlowFirstFrame   = "slow_first_frame"   // the first frame came late, or never came and the viewer left (code 0 without a first frame)
	VerdictStalls           = "stalls"             // playback stalled (rebuffering)
	VerdictRenderStallsOnly = "render_stalls_only" // frames were there but not rendered in time; no stall
	VerdictFine             = "fine"
)

// Diagnosis is the verdict on one play session, the phase of the startup to
// blame, the server evidence that corroborates it, and which scope most
// likely failed (seed 002's method, one session at a time; the live
// localizer judges whole cohorts).
type Diagnosis struct {
	Verdict string `json:"verdict"`
	// Phase is the first-frame phase a failed or slow start blocked in
	// (play_stop.first_frame_blocked) or that was abnormal against its
	// cohort; PhaseMs its duration and MedianMs the cohort's median of it
	// (first_frame only; null when unknown).
	Phase    string `json:"phase,omitempty"`
	PhaseMs  *int64 `json:"phase_ms,omitempty"`
	MedianMs *int64 `json:"median_ms,omitempty"`
	// Cohort names the cohort the phase was judged against, e.g.
	// "protocol=http-flv cdn=cdn-b, 10m before the start".
	Cohort string `json:"cohort,omitempty"`
	// Code and Reason are the failed attempt's play_stop code and reason;
	// NodeID the edge it was on.
	Code   *int64 `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	NodeID string `json:"node_id,omitempty"`
	// Recovered says a later attempt of the same session reached its
	// first frame (the player retried, e.g. on the backup line).
	Recovered bool `json:"recovered,omitempty"`
	// Scope is the guess (localize.Scope*), empty for a fine session;
	// Evidence the facts behind it, server logs first.
	Scope    string              `json:"scope,omitempty"`
	Evidence []localize.Evidence `json:"evidence"`
}

// DiagnosisPlan holds the thresholds of the diagnosis.
type DiagnosisPlan struct {
	// SlowFirstFrameMs: a first frame at least this late is a slow start.
	SlowFirstFrameMs int64
	// CohortWindow and CohortDims: each first-frame phase of a slow start
	// is judged against the median of the same phase over the first frames
	// of the same dimension values in the CohortWindow before the start.
	CohortWindow time.Duration
	CohortDims   []string
	// MaxCohortQueries bounds the slow starts of a page judged against
	// their cohort (a query each, in parallel); past it, a slow start's
	// phase is the longest one.
	MaxCohortQueries int
	// A phase is abnormal when it is at least PhaseFactor times its
	// cohort's median and PhaseMinExcessMs above it.
	PhaseFactor      float64
	PhaseMinExcessMs int64
	// EdgeSlowFirstByteMs: an edge_access whose first byte took this long
	// is a slow edge.
	EdgeSlowFirstByteMs int64
	// Near: stream context within this time of a stall (or the startup)
	// counts as what happened then (push_stats come every 5 s).
	Near time.Duration
	// PushFPSRatio: a push_stats whose fps is under this share of the
	// stream's best fps in the context stalled the push side.
	PushFPSRatio float64
}

// DefaultDiagnosisPlan is the plan of the API.
var DefaultDiagnosisPlan = DiagnosisPlan{
	SlowFirstFrameMs:    2000,
	CohortWindow:        10 * time.Minute,
	CohortDims:          []string{"protocol", "cdn"},
	MaxCohortQueries:    4,
	PhaseFactor:         3,
	PhaseMinExcessMs:    200,
	EdgeSlowFirstByteMs: 1000,
	Near:                10 * time.Second,
	PushFPSRatio:        0.6,
}

// phaseMedians are a cohort's medians of the first-frame phases, by phase
// name; Cohort describes the cohort.
type phaseMedians struct {
	Cohort string
	Ms     map[string]int64
}

// attempt is what one play attempt (play_start to play_stop) came to.
type attempt struct {
	firstFrame     *Event
	stop           *Event
	nodeID         string
	start, stopped time.Time
}

// attempts splits a session's client events at each play_start. A retry's
// play_start may share the millisecond of the failed attempt's play_stop
// and sort before it, so a play_stop ends the earliest open attempt and a
// first_frame belongs to the latest.
func attempts(s *Session) []attempt {
	var out []attempt
	open := func(latest bool) *attempt {
		for i := range out {
			j := i
			if latest {
				j = len(out) - 1 - i
			}
			if out[j].stop == nil {
				return &out[j]
			}
		}
		return nil
	}
	for i := range s.Events {
		e := &s.Events[i]
		a := open(true)
		if e.LogType == "play_start" || a == nil {
			out = append(out, attempt{start: e.TS, nodeID: e.Str("node_id")})
		}
		switch e.LogType {
		case "first_frame":
			if a := open(true); a.firstFrame == nil {
				a.firstFrame = e
			}
		case "play_stop":
			a := open(false)
			a.stop, a.stopped = e, e.TS
		}
	}
	return out
}

// slowStart is the first frame of a session if it is a slow start.
func (dp DiagnosisPlan) slowStart(s *Session) *Event {
	for _, a := range attempts(s) {
		if a.firstFrame != nil {
			if n, ok := a.firstFrame.Int("total_ms"); ok && n >= dp.SlowFirstFrameMs {
				return a.firstFrame
			}
			return nil
		}
	}
	return nil
}

// diagnose judges a play session; med is its cohort's phase medians, nil
// when not looked up.
func (dp DiagnosisPlan) diagnose(s *Session, med *phaseMedians) *Diagnosis {
	d := &Diagnosis{Verdict: VerdictFine, Evidence: []localize.Evidence{}}
	as := attempts(s)
	reached := false
	for i, a := range as {
		if a.firstFrame != nil {
			reached = true
		}
		if a.stop == nil {
			continue
		}
		code, _ := a.stop.Int("code")
		blocked := a.stop.Str("first_frame_blocked")
		if code == 0 && a.firstFrame != nil {
			continue
		}
		d.Verdict, d.Phase, d.Reason = VerdictFailed, blocked, a.stop.Str("reason")
		if code == 0 {
			d.Verdict = VerdictSlowFirstFrame // gave up waiting
		} else {
			d.Code = &code
		}
		d.NodeID = cmpOr(a.stop.Str("node_id"), a.nodeID)
		for _, b := range as[i+1:] {
			d.Recovered = d.Recovered || b.firstFrame != nil
		}
		dp.startEvidence(d, s, a.start, a.stopped)
		return d
	}
	if ff := dp.slowStart(s); ff != nil {
		d.Verdict, d.NodeID = VerdictSlowFirstFrame, ff.Str("node_id")
		dp.abnormalPhase(d, ff, med)
		dp.startEvidence(d, s, s.Start, ff.TS)
		return d
	}
	sum := &s.Summary
	switch {
	case sum.StallCount > 0 || (sum.ReportedStallCount != nil && *sum.ReportedStallCount > 0):
		d.Verdict = VerdictStalls
		dp.stallEvidence(d, s)
	case sum.RenderStallCount > 0:
		d.Verdict, d.Scope = VerdictRenderStallsOnly, localize.ScopeClient
		d.Evidence = append(d.Evidence, localize.Evidence{Scope: localize.ScopeClient, Source: "render_stall",
			Text: fmt.Sprintf("%d render stalls (%s ms) and no stall: the frames arrived, the decoder or renderer fell behind",
				sum.RenderStallCount, Thousands(sum.RenderStallTotalMs))})
	case !reached && len(as) > 0 && as[len(as)-1].stop == nil:
		d.Verdict = VerdictFine // still starting, or its stop not in yet
	}
	return d
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// abnormalPhase names the phase of a slow first frame with the greatest
// excess over its cohort's median (the longest phase without a cohort).
func (dp DiagnosisPlan) abnormalPhase(d *Diagnosis, ff *Event, med *phaseMedians) {
	var best int64 = -1
	for _, p := range schemas.FirstFramePhases {
		v, ok := ff.Int(p + "_ms")
		if !ok {
			continue
		}
		m, known := int64(0), false
		if med != nil {
			m, known = med.Ms[p]
		}
		excess := v - m
		if known && (float64(v) < dp.PhaseFactor*float64(m) || excess < dp.PhaseMinExcessMs) {
			continue // normal for its cohort
		}
		if excess > best {
			best, d.Phase = excess, p
			d.PhaseMs = &v
			d.MedianMs = nil
			if known {
				d.MedianMs = &m
			}
		}
	}
	if med != nil {
		d.Cohort = med.Cohort
	}
}

// startEvidence looks for what explains a failed or slow start in [from,
// to]: the edge's answers, then the stream's side; and guesses the scope
// from the phase when the servers say nothing.
func (dp DiagnosisPlan) startEvidence(d *Diagnosis, s *Session, from, to time.Time) {
	// An edge logs a response when it ends (an FLV stream with the play):
	// its node's answers to the session from the start on count.
	edge := dp.edgeEvidence(d, s, d.NodeID, from.Add(-dp.Near), s.End.Add(dp.Near))
	// The stream's side matters once the edge is reached and media is
	// awaited: not for a name that did not resolve, a connection refused,
	// or media that came but did not decode.
	stream := ""
	if d.Phase == "" || d.Phase == "tcp_first_packet" || d.Phase == "video_first_packet" {
		stream = dp.streamEvidence(d, s, from.Add(-dp.Near), to.Add(dp.Near))
	}
	switch d.Phase {
	case "dns":
		d.Scope = localize.ScopeClient
		d.add(localize.ScopeClient, "first_frame", "the edge's name did not resolve in time: the viewer's resolver (ISP)")
	case "tcp_connect":
		d.Scope = localize.ScopeEdge
		if !edge {
			d.add(localize.ScopeEdge, "edge_access", cmpOr(d.NodeID, "the edge")+" logged no request for the attempt: the connection failed before HTTP")
		}
	case "tcp_first_packet":
		d.Scope = localize.ScopeEdge
	case "video_first_packet":
		d.Scope = localize.ScopeEdge
	case "first_decode", "first_render":
		d.Scope = localize.ScopeClient
		d.add(localize.ScopeClient, "first_frame", "the media arrived; decoding or rendering it was slow (player, device)")
	}
	if stream != "" {
		d.Scope = stream // the stream itself was down or degraded: the edge had nothing to send
	}
	if d.Scope == "" {
		d.Scope = localize.ScopeUnknown
	}
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func (d *Diagnosis) add(scope, source, text string) {
	d.Evidence = append(d.Evidence, localize.Evidence{Scope: scope, Source: source, Text: text})
}

// edgeEvidence adds the session's edge answers in [from, to] (from node
// when given) that were errors or slow; it says whether there was any
// edge_access of the node in the span.
func (dp DiagnosisPlan) edgeEvidence(d *Diagnosis, s *Session, node string, from, to time.Time) bool {
	any, bad := false, 0
	var worst *Event
	var worstWhy string
	for i := range s.ServerEvents {
		e := &s.ServerEvents[i]
		if e.LogType != "edge_access" || e.TS.Before(from) || e.TS.After(to) || (node != "" && e.Str("node_id") != node) {
			continue
		}
		any = true
		if why := dp.Abnormal(e, 0); why != "" {
			if bad++; worst == nil || edgeWorse(e, worst) {
				worst, worstWhy = e, why
			}
		}
	}
	if worst == nil {
		return any
	}
	d.add(localize.ScopeEdge, "edge_access", fmt.Sprintf("%s %s (%s; %d such answers to this session)", worst.Str("node_id"), worstWhy, worst.Str("path"), bad))
	if bts, ok := worst.Int("back_to_source_ms"); ok && hitFalse(worst) && bts >= dp.EdgeSlowFirstByteMs {
		d.add(localize.ScopeSource, "edge_access", fmt.Sprintf("it went back to source, which took %s ms", Thousands(bts)))
	}
	return any
}

// edgeWorse: an error answer is worse than a slow one, a slower worse than
// a faster.
func edgeWorse(a, b *Event) bool {
	sa, _ := a.Int("http_status")
	sb, _ := b.Int("http_status")
	if (sa >= 400) != (sb >= 400) {
		return sa >= 400
	}
	fa, _ := a.Int("first_byte_ms")
	fb, _ := b.Int("first_byte_ms")
	return fa > fb
}

func hitFalse(e *Event) bool {
	hit, ok := e.Bool("cache_hit")
	return ok && !hit
}

// streamEvidence adds what the stream's side did in [from, to] that can
// starve a viewer (push stalled or stopped, transcode failing, origin lost)
// and returns the scope it points to, "" when it was fine.
func (dp DiagnosisPlan) streamEvidence(d *Diagnosis, s *Session, from, to time.Time) string {
	bestFPS := BestPushFPS(s)
	scope := ""
	note := func(sc, src, text string) {
		if scope == "" {
			scope = sc
		}
		d.add(sc, src, text)
	}
	// push_stats and ingest_session come every few seconds: one line each.
	type periodic struct {
		bad, all int
		dropped  int64
		minFPS   float64
	}
	per := map[string]*periodic{"push_stats": {minFPS: -1}, "ingest_session": {minFPS: -1}}
	for i := range s.StreamEvents {
		e := &s.StreamEvents[i]
		if e.TS.Before(from) || e.TS.After(to) {
			continue
		}
		pe := per[e.LogType]
		if pe != nil {
			pe.all++
		}
		why := dp.Abnormal(e, bestFPS)
		if why == "" {
			continue
		}
		at := e.TS.Format("15:04:05")
		switch e.LogType {
		case "push_stats", "ingest_session":
			pe.bad++
			n, _ := e.Int("dropped_frames")
			pe.dropped += n
			if f, ok := e.Float("fps"); ok && (pe.minFPS < 0 || f < pe.minFPS) {
				pe.minFPS = f
			}
		case "push_stop":
			note(localize.ScopePush, e.LogType, "the broadcaster's push "+why+" at "+at)
		case "transcode":
			note(localize.ScopeTranscode, e.LogType, "transcode "+why+" at "+at)
		case "origin_stream", "relay":
			note(localize.ScopeSource, e.LogType, e.LogType+": "+why+" at "+at)
		}
	}
	for _, lt := range []string{"push_stats", "ingest_session"} {
		pe := per[lt]
		if pe.bad == 0 {
			continue
		}
		who := map[string]string{"push_stats": "the push side", "ingest_session": "ingest"}[lt]
		text := fmt.Sprintf("%s degraded meanwhile: %d of %d %s", who, pe.bad, pe.all, lt)
		if pe.dropped > 0 {
			text += fmt.Sprintf(" with %s dropped frames", Thousands(pe.dropped))
		}
		if pe.minFPS >= 0 {
			text += fmt.Sprintf(", fps down to %s (best %s)", Round1(pe.minFPS), Round1(bestFPS))
		}
		note(localize.ScopePush, lt, text)
	}
	return scope
}

// stallEvidence explains stalls: the push side or the stream's servers
// around any stall, else the edge's answers, else the viewer's network.
func (dp DiagnosisPlan) stallEvidence(d *Diagnosis, s *Session) {
	var stalls []*Event
	for i := range s.Events {
		if s.Events[i].LogType == "stall" {
			stalls = append(stalls, &s.Events[i])
		}
	}
	sum := &s.Summary
	count, total := sum.StallCount, sum.StallTotalMs
	if sum.ReportedStallCount != nil && *sum.ReportedStallCount > count {
		count = *sum.ReportedStallCount
	}
	d.add("", "stall", fmt.Sprintf("%d stalls, %s ms stalled", count, Thousands(total)))
	from, to := s.Start, s.End
	if len(stalls) > 0 {
		// a stall event is logged when it ends: it began duration_ms before
		first := stalls[0].TS
		if n, ok := stalls[0].Int("duration_ms"); ok {
			first = first.Add(-time.Duration(n) * time.Millisecond)
		}
		from, to = first, stalls[len(stalls)-1].TS
	}
	if sc := dp.streamEvidence(d, s, from.Add(-dp.Near), to.Add(dp.Near)); sc != "" {
		d.Scope = sc
		return
	}
	before := len(d.Evidence)
	if dp.edgeEvidence(d, s, "", from.Add(-dp.Near), to.Add(dp.Near)); len(d.Evidence) > before {
		d.Scope = localize.ScopeEdge
		return
	}
	d.Scope = localize.ScopeClient
	d.add(localize.ScopeClient, "stall", "the stream's servers and the edge were fine meanwhile: the viewer's network or player")
}

// cohortKey is the cohort of a slow start: its dimension values.
func (dp DiagnosisPlan) cohortKey(ff *Event) []string {
	out := make([]string, len(dp.CohortDims))
	for i, dim := range dp.CohortDims {
		out[i] = ff.Str(dim)
	}
	return out
}

// Abnormal says why a server or stream event is out of the ordinary for a
// viewer (an edge error or slow first byte, push frames dropped or its fps
// under PushFPSRatio of bestFPS, a stop with a code, a transcode not ok, an
// origin that lost the stream, a relay error), "" when it is not. The CLI
// folds the events for which it is "" into one line per component.
func (dp DiagnosisPlan) Abnormal(e *Event, bestFPS float64) string {
	n := func(name string) int64 { v, _ := e.Int(name); return v }
	switch e.LogType {
	case "edge_access":
		if st := n("http_status"); st >= 400 {
			return fmt.Sprintf("answered %d", st)
		}
		if fb := n("first_byte_ms"); fb >= dp.EdgeSlowFirstByteMs {
			return fmt.Sprintf("first byte took %s ms", Thousands(fb))
		}
		if d := n("dropped_packets"); d > 0 {
			return fmt.Sprintf("dropped %s packets", Thousands(d))
		}
	case "push_stats", "ingest_session":
		if d := n("dropped_frames"); d > 0 {
			return fmt.Sprintf("%s dropped frames", Thousands(d))
		}
		if f, ok := e.Float("fps"); ok && bestFPS > 0 && f < dp.PushFPSRatio*bestFPS {
			return fmt.Sprintf("fps %s (best %s)", Round1(f), Round1(bestFPS))
		}
	case "push_stop":
		if c := n("code"); c != 0 {
			return fmt.Sprintf("stopped with code %d%s", c, reasonSuffix(e.Str("reason")))
		}
	case "transcode":
		if st := e.Str("status"); st == "error" || st == "lagging" {
			return fmt.Sprintf("%s %s", e.Str("rendition"), st)
		}
	case "origin_stream":
		if e.Str("state") == "lost" {
			return "lost the stream"
		}
	case "relay":
		if e.Str("state") == "error" {
			return "relay error" + reasonSuffix(e.Str("error"))
		}
	}
	return ""
}

// BestPushFPS is the best fps the broadcaster's stats reported in a
// session's stream context: what Abnormal compares a push's fps with.
func BestPushFPS(s *Session) float64 {
	best := 0.0
	for i := range s.StreamEvents {
		if e := &s.StreamEvents[i]; e.LogType == "push_stats" {
			if f, ok := e.Float("fps"); ok {
				best = max(best, f)
			}
		}
	}
	return best
}
