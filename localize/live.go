package localize

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// KPILowFrameRate is the share of frames missing from what viewers should
// have seen: a frame rate well below the usual (a push uplink that cannot
// carry the stream, a transcode that falls behind). Live only.
const KPILowFrameRate = "low_frame_rate"

// LiveKPIs are the KPIs the live localizer watches, in report order.
var LiveKPIs = []string{KPIStartFailure, KPIPlaybackFailure, KPISlowStart, KPIRebuffering, KPIRenderStall, KPILowFrameRate}

// LivePlan holds every choice of the live localizer as a field: where it
// reads, how it cuts time, what it expects, when an anomaly counts.
// DefaultLivePlan is tuned on real scenario runs (docs/localize.md).
//
// The method (docs/localize.md, "Live localization"): per KPI and time
// bucket, the sums per dimension value give the bucket's expected ratio:
// the robust ratio of its peers (per dimension, a low weighted quantile of
// its values' ratios; the least of those, so that a cohort that rose does
// not lift its own expectation), capped by the median whole-population
// ratio of the range's buckets (own history: an everyone-at-once rise is
// not its own baseline), and never below the KPI's absolute floor (a quiet
// period, where the ratio is near zero, yields nothing). The buckets and
// dimensions where a value stands out are searched with Plan.Search on
// their leaves; causes of consecutive buckets with the same KPI and cohort
// merge into one incident.
type LivePlan struct {
	// Search is the root-cause search run on each bucket's leaves.
	Search Plan
	// Attrs are the dimensions a cause may combine: those of qoe_1m that
	// can be a cause. Context maps a dimension to others the cohort report
	// adds when they have one value in it (a node's CDN and region, a
	// stream's room); dimensions only in Context are read, not searched.
	Attrs   []string
	Context map[string][]string
	// Split maps a dimension to one its leaves are also read by, so that a
	// cohort naming the first can be split by the second when the verdict
	// names the components (a rendition across streams whose workers the
	// transcode logs implicate one by one: splitTranscode).
	Split map[string]string

	// RawWindow: ranges up to this long read raw events, in RawBucket
	// buckets; longer ones read the qoe_1m rollup, by the minute.
	RawWindow time.Duration
	RawBucket time.Duration

	// PeerQuantile is the quantile of an attribute's values' ratios
	// (weighted by their denominators) that the peers' ratio is.
	PeerQuantile float64
	// Floor is each KPI's least expected ratio.
	Floor map[string]float64
	// SlowStartFactor, SlowStartMinMs: a first frame is slow when its
	// total time exceeds both SlowStartFactor times the median of its
	// protocol's first frames in the range and SlowStartMinMs.
	SlowStartFactor float64
	SlowStartMinMs  float64
	// SlowStartStratum is a dimension whose values start at different
	// speeds by design (HLS waits for a segment, FLV does not): slow starts
	// are expected per value of it, each from its own peers and history
	// ("" for none).
	SlowStartStratum string
	// FrameUnitS is the viewing time, in seconds, that counts as one
	// sample of the low-frame-rate KPI (a heartbeat's interval), so its
	// counts are on the scale of the others'.
	FrameUnitS float64
	// LowFPSShare: the sessions a low-frame-rate incident names are those
	// with a heartbeat under this share of the usual frame rate.
	LowFPSShare float64
	// GateScore, GateDeviation: a bucket is searched, over an attribute,
	// when one of the attribute's values has a likelihood-ratio score of
	// at least GateScore and a relative rise of at least GateDeviation
	// against the attribute's other values (looser than the search's, so
	// that a finer cause diluted in its values still passes).
	GateScore     float64
	GateDeviation float64
	// GateSpread: a value also passes when it rose against the expected
	// ratio (GateScore, GateDeviation) and its ratio is at least
	// 1+GateSpread times its attribute's: another cause inflating the
	// attribute's other values (two faults at once) does not hide it. 0 is
	// off (the default: on large windows noise passes it too).
	GateSpread float64
	// GatePairs: two consecutive buckets are also gated on their summed
	// marginals (gatePairs), for a cohort too small to stand out in either.
	GatePairs bool
	// MinAffected is the least numerator (affected views) of an incident.
	MinAffected float64
	// MergeGap is how many empty buckets may lie between two buckets of one
	// incident.
	MergeGap int
	// MaxIncidents is the most incidents answered; Sessions the affected
	// sessions each names.
	MaxIncidents int
	Sessions     int

	// Scope decides each answered incident's verdict from the server logs
	// (scope.go).
	Scope ScopePlan
}

// DefaultLivePlan is the plan tuned on the scenario runs.
var DefaultLivePlan = LivePlan{
	Search: func() Plan {
		p := DefaultPlan
		p.MinSupport = 3
		p.MinScore = 6
		p.Denser = true
		return p
	}(),
	Attrs: []string{"cdn", "region", "node_id", "isp", "app_version", "rendition", "stream_id", "protocol", "network", "os"},
	Context: map[string][]string{
		"node_id":   {"cdn", "region"},
		"stream_id": {"room_id"},
	},
	Split:        map[string]string{"rendition": "stream_id"},
	RawWindow:    15 * time.Minute,
	RawBucket:    30 * time.Second,
	PeerQuantile: 0.2,
	Floor: map[string]float64{
		KPIStartFailure:    0.02,
		KPIPlaybackFailure: 0.02,
		KPISlowStart:       0.03,
		KPIRebuffering:     0.05,
		KPIRenderStall:     0.03,
		KPILowFrameRate:    0.05,
	},
	SlowStartFactor:  3,
	SlowStartMinMs:   1000,
	SlowStartStratum: "protocol",
	FrameUnitS:       10,
	LowFPSShare:      0.5,
	GateScore:        5,
	GateDeviation:    0.1,
	GateSpread:       0,
	GatePairs:        true,
	MinAffected:      3,
	MergeGap:         1,
	MaxIncidents:     10,
	Sessions:         3,
	Scope:            DefaultScopePlan,
}

// LiveRequest is what to localize: a time range and optional filters.
type LiveRequest struct {
	From, To time.Time
	RoomID   string
	StreamID string
	AppID    string
	// KPI restricts the search to one KPI ("" for all of LiveKPIs).
	KPI string
}

// kpiDef says where a KPI's numerator and denominator come from: sums of
// schemas.Measures over play_stop rows; den "w" is their weighted count.
// The slow-start and low-frame-rate KPIs are computed in their own ways.
type kpiDef struct{ num, den string }

var kpiDefs = map[string]kpiDef{
	KPIStartFailure:    {"w_start_failed", "w"},
	KPIPlaybackFailure: {"w_play_failed", "w_started"},
	KPIRebuffering:     {"w_rebuffered", "w_started"},
	KPIRenderStall:     {"w_render_stalled", "w_started"},
}

// sumsMeasures are the measures the leaf query reads, in column order.
var sumsMeasures = []struct{ col, measure, kind string }{
	{"ps_w", "w", "play_stop"},
	{"w_start_failed", "w_start_failed", ""},
	{"w_play_failed", "w_play_failed", ""},
	{"w_started", "w_started", ""},
	{"w_rebuffered", "w_rebuffered", ""},
	{"w_render_stalled", "w_render_stalled", ""},
	{"w_frames_ms", "w_frames_ms", ""},
	{"w_fps_ms", "w_fps_ms", ""},
}

// Localize finds the anomalies of req's range and answers them as
// incidents, best first; none for a quiet range.
//
// It reads in two stages, so that a long range over many events stays
// cheap: first each bucket's sums per attribute value (the marginals),
// which give each bucket's expected ratio and show which buckets and
// attributes are anomalous (a value whose ratio stands out from its
// attribute's other values); then, for those buckets only, the leaves over
// those attributes, for the root-cause search.
func (lp LivePlan) Localize(ctx context.Context, st Store, req LiveRequest) ([]Incident, error) {
	if !req.To.After(req.From) {
		return nil, fmt.Errorf("empty range: from %s is not before to %s", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
	}
	if err := CheckKPI(req.KPI); err != nil {
		return nil, err
	}
	kpis := LiveKPIs
	if req.KPI != "" {
		kpis = []string{req.KPI}
	}
	rd := lp.newReadout(req)
	if err := lp.readMarginals(ctx, st, req, kpis, rd); err != nil {
		return nil, err
	}
	for _, kpi := range kpis {
		lp.gate(kpi, rd)
	}
	if err := lp.regate(ctx, st, req, kpis, rd); err != nil {
		return nil, err
	}
	if err := lp.readLeaves(ctx, st, req, rd); err != nil {
		return nil, err
	}
	var found []Incident
	for _, kpi := range kpis {
		found = append(found, lp.merge(kpi, rd, lp.detect(kpi, rd))...)
	}
	sortIncidents(found)
	if len(found) > lp.MaxIncidents {
		found = found[:lp.MaxIncidents]
	}
	var out []Incident
	for i := range found {
		conf := found[i].Confidence // before the verdict weighs it
		if err := lp.finish(ctx, st, req, rd, &found[i]); err != nil {
			return nil, err
		}
		parts, err := lp.splitTranscode(ctx, st, req, rd, found[i], conf)
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
	}
	sortIncidents(out)
	return out, nil
}

func sortIncidents(incs []Incident) {
	slices.SortStableFunc(incs, func(a, b Incident) int { return cmpDesc(a.Score, b.Score) })
}

// finish names an incident's affected sessions and decides its verdict.
func (lp LivePlan) finish(ctx context.Context, st Store, req LiveRequest, rd *readout, inc *Incident) error {
	if err := lp.sessions(ctx, st, req, rd, inc); err != nil {
		return err
	}
	searchedNode := inc.Dims["node_id"]
	if err := lp.Scope.Decide(ctx, st, inc); err != nil {
		return fmt.Errorf("scope of %s incident on %v: %w", inc.KPI, inc.Dims, err)
	}
	if n := inc.Dims["node_id"]; n != "" && searchedNode == "" {
		return lp.narrowToNode(ctx, st, req, rd, inc, n)
	}
	return nil
}

// narrowToNode gives an incident whose verdict narrowed the searched cohort
// (a CDN, a region) to one node the figures and sessions of that node's
// viewers, from the node's marginal sums over the incident's span, so they
// describe the cohort it names; the node is expected to do as the wider
// cohort was. The verdict's cohort fact keeps the wider cohort's figures.
// Nothing changes when the node had fewer than MinAffected affected views.
func (lp LivePlan) narrowToNode(ctx context.Context, st Store, req LiveRequest, rd *readout, inc *Incident, node string) error {
	j := slices.Index(rd.attrs, "node_id")
	if j < 0 {
		return nil
	}
	id, ok := rd.index[j][node]
	if !ok {
		return nil
	}
	var s vc
	step := int64(rd.step.Seconds())
	for b, ms := range rd.marg[inc.KPI] {
		if b >= inc.From.Unix() && b <= inc.To.Unix()-step && ms != nil {
			x := ms[j][id]
			s.v, s.c = s.v+x.v, s.c+x.c
		}
	}
	if s.v < lp.MinAffected || s.c <= 0 {
		return nil
	}
	if ex := inc.Affected - inc.Expected*inc.Views; ex > 0 {
		inc.Share *= min(1, max(0, s.v-inc.Expected*s.c)/ex)
	}
	inc.Views, inc.Affected, inc.Value = s.c, s.v, s.v/s.c
	inc.Sessions, inc.Traces = nil, nil
	return lp.sessions(ctx, st, req, rd, inc)
}

// splitTranscode answers a transcode incident on a rendition across
// streams as one incident per stream whose worker the transcode logs
// implicate (ScopePlan.TranscodeStreams), each with its own figures from
// the leaves; inc itself when none is named or the leaves cannot tell the
// streams apart.
func (lp LivePlan) splitTranscode(ctx context.Context, st Store, req LiveRequest, rd *readout, inc Incident, conf float64) ([]Incident, error) {
	streams, err := lp.Scope.TranscodeStreams(ctx, st, &inc)
	if err != nil {
		return nil, fmt.Errorf("streams of transcode incident on %v: %w", inc.Dims, err)
	}
	var out []Incident
	for _, s := range streams {
		el := maps.Clone(inc.Dims)
		el["stream_id"] = s
		sub, ok := lp.subIncident(rd, inc, el, conf)
		if !ok {
			continue
		}
		if err := lp.finish(ctx, st, req, rd, &sub); err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	if len(out) == 0 {
		return []Incident{inc}, nil
	}
	return out, nil
}

// subIncident is inc narrowed to the cohort el (confidence conf), its figures summed over
// the leaves of inc's span; false when el has fewer than MinAffected
// affected views there.
func (lp LivePlan) subIncident(rd *readout, inc Incident, el map[string]string, conf float64) (Incident, bool) {
	step := int64(rd.step.Seconds())
	from, last := inc.From.Unix(), inc.To.Unix()-step
	var sub, whole sums
	for b, leaves := range rd.leaves[inc.KPI] {
		if b < from || b > last {
			continue
		}
		for _, l := range leaves {
			if !matchNames(rd.attrs, rd.values, inc.Dims, l.Key) {
				continue
			}
			whole.add(l)
			if matchNames(rd.attrs, rd.values, el, l.Key) {
				sub.add(l)
			}
		}
	}
	if sub.v < lp.MinAffected || sub.c <= 0 {
		return Incident{}, false
	}
	out := Incident{From: inc.From, To: inc.To, KPI: inc.KPI, Dims: rd.withContext(lp, el),
		Views: sub.c, Affected: sub.v, Value: sub.v / sub.c, Expected: sub.e / sub.c,
		Confidence: conf, Score: sub.lr()}
	if ex := whole.v - whole.e; ex > 0 {
		out.Share = inc.Share * max(0, sub.v-sub.e) / ex
	}
	return out, true
}

// CheckKPI checks a KPI name: one of LiveKPIs, or "" for all.
func CheckKPI(kpi string) error {
	if kpi != "" && !slices.Contains(LiveKPIs, kpi) {
		return fmt.Errorf("metric=%q: want one of %s", kpi, strings.Join(LiveKPIs, ", "))
	}
	return nil
}

// dimCols are the dimensions an incident may name: the searched ones and
// their Context.
func (lp LivePlan) dimCols() []string {
	cols := slices.Clone(lp.Attrs)
	for _, cs := range lp.Context {
		for _, c := range cs {
			if !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// SameCohort compares a cohort got (an incident's dims) with a wanted one
// (for example a scenario label's dims, whose other keys, strength
// parameters such as kbps or share, are ignored). exact: the same
// dimensions and values. same: they agree on every dimension both name, and
// each dimension only one names is either Context of one both name (a
// node's cdn, a stream's room) or has all its Context named by both (a node
// inside the cdn and region both name: one node per CDN and region cannot
// be told from the cohort).
func (lp LivePlan) SameCohort(want, got map[string]string) (same, exact bool) {
	dims := lp.dimCols()
	w := map[string]string{}
	for k, v := range want {
		if slices.Contains(dims, k) {
			w[k] = v
		}
	}
	if len(w) == 0 || len(got) == 0 {
		return len(w) == len(got), len(w) == len(got)
	}
	exact = len(w) == len(got)
	both := func(d string) bool {
		_, a := w[d]
		_, b := got[d]
		return a && b
	}
	for k, v := range w {
		if g, ok := got[k]; ok && g != v {
			return false, false
		} else if !ok {
			exact = false
		}
	}
	for _, m := range []map[string]string{w, got} {
		for k := range m {
			if both(k) {
				continue
			}
			ok := false
			for from, tos := range lp.Context {
				ok = ok || (both(from) && slices.Contains(tos, k))
			}
			if tos, isFrom := lp.Context[k]; isFrom && !ok {
				ok = !slices.ContainsFunc(tos, func(t string) bool { return !both(t) })
			}
			if !ok {
				return false, false
			}
		}
	}
	return true, exact
}

// OverlapGroups groups spans (from, to) that overlap in time, each group in
// start order, as indexes into spans: faults that overlap are localized
// together, and each should be matched by one of the group's top k
// incidents, k the group's size.
func OverlapGroups(spans [][2]time.Time) [][]int {
	order := make([]int, len(spans))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return spans[a][0].Compare(spans[b][0]) })
	var out [][]int
	var end time.Time
	for _, i := range order {
		if len(out) > 0 && spans[i][0].Before(end) {
			out[len(out)-1] = append(out[len(out)-1], i)
		} else {
			out = append(out, []int{i})
		}
		if spans[i][1].After(end) {
			end = spans[i][1]
		}
	}
	return out
}

// TopCohorts is the first k incidents with distinct cohorts (one fault may
// raise several KPIs of one cohort).
func TopCohorts(incs []Incident, k int) []Incident {
	var out []Incident
	for _, inc := range incs {
		if len(out) == k {
			break
		}
		if !slices.ContainsFunc(out, func(o Incident) bool { return maps.Equal(o.Dims, inc.Dims) }) {
			out = append(out, inc)
		}
	}
	return out
}
