package query

import (
	"sort"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// metric is one QoE metric of GET /api/v1/metrics. docs/metrics.md defines
// each in words; this is the definition the code runs.
//
// A count or rate is Scale × ΣNum / ΣDen over the rows of Kind in a bucket
// (ΣNum alone when Den is empty; ΣNum per ms of the bucket when PerTime),
// where each term is a weighted sum of schemas.Measures. A quantile metric
// is the weighted quantile of a schemas.Distribution.
type metric struct {
	Name    string
	Unit    string
	Kind    string // the log_type it reads
	Doc     string
	Num     []term
	Den     []term
	Scale   float64
	PerTime bool
	// Dists are a quantile metric's distributions; the phase parameter picks
	// one when there are several (the first is the default).
	Dists  []schemas.Distribution
	Phases []string // names of Dists for the phase parameter
	// RawOnly: no rollup keeps it, so it is read from raw events, for
	// windows of at most maxRawWindow.
	RawOnly bool
}

// term is ±1 × a measure.
type term struct {
	Measure string
	Sign    float64
}

func plus(m string) term  { return term{m, 1} }
func minus(m string) term { return term{m, -1} }

// Units.
const (
	unitCount   = "count"
	unitPercent = "%"
	unitMs      = "ms"
	unitPerHour = "per_hour"
	unitViewers = "viewers"
	unitFPS     = "fps"
	unitKbps    = "kbps"
)

func rate(name, kind, doc string, num, den []term) metric {
	return metric{Name: name, Unit: unitPercent, Kind: kind, Doc: doc, Num: num, Den: den, Scale: 100}
}

var metricList = []metric{
	{Name: "attempts", Unit: unitCount, Kind: "play_start", Num: []term{plus("w")}, Scale: 1,
		Doc: "play attempts started (play_start)"},
	{Name: "plays", Unit: unitCount, Kind: "first_frame", Num: []term{plus("w")}, Scale: 1,
		Doc: "attempts that reached the first frame (first_frame)"},
	{Name: "video_startup_time", Unit: unitMs, Kind: "first_frame",
		Dists: schemas.FirstFrameTimes, Phases: append([]string{"total"}, schemas.FirstFramePhases...),
		Doc: "quantile of first-frame time, total or one phase (quantile=, phase=)"},
	rate("video_start_failure_rate", "play_stop", "ended attempts that failed with an error before the first frame, % of ended attempts",
		[]term{plus("w_start_failed")}, []term{plus("w")}),
	rate("exits_before_video_start_rate", "play_stop", "ended attempts the viewer left before the first frame without an error, % of ended attempts",
		[]term{plus("w_ebvs")}, []term{plus("w")}),
	rate("exits_before_video_start_1s_rate", "play_stop", "exits before video start after waiting ≥ 1 s, % of ended attempts",
		[]term{plus("w_ebvs_1s")}, []term{plus("w")}),
	rate("video_playback_failure_rate", "play_stop", "ended plays that stopped with an error after the first frame, % of ended plays",
		[]term{plus("w_play_failed")}, []term{plus("w_started")}),
	rate("play_success_rate", "play_stop", "attempts that reached the first frame and ended without error, % of ended attempts that were not exits before video start",
		[]term{plus("w_started"), minus("w_play_failed")}, []term{plus("w"), minus("w_ebvs")}),
	rate("rebuffering_ratio", "heartbeat", "rebuffering time, % of playing plus rebuffering time (heartbeats)",
		[]term{plus("w_stall_ms")}, []term{plus("w_play_ms")}),
	{Name: "rebuffer_frequency", Unit: unitPerHour, Kind: "heartbeat", Scale: 3_600_000,
		Num: []term{plus("w_stalls")}, Den: []term{plus("w_play_ms")},
		Doc: "rebuffering events per hour of playing plus rebuffering time (heartbeats)"},
	rate("session_rebuffer_rate", "play_stop", "ended plays with at least one stall, % of ended plays",
		[]term{plus("w_rebuffered")}, []term{plus("w_started")}),
	{Name: "frame_rate", Unit: unitFPS, Kind: "heartbeat", Scale: 1,
		Num: []term{plus("w_frames_ms")}, Den: []term{plus("w_fps_ms")},
		Doc: "rendered frames per second of playing plus rebuffering time: heartbeat fps weighted by interval_ms"},
	{Name: "live_latency", Unit: unitMs, Kind: "heartbeat", Dists: []schemas.Distribution{schemas.Latency},
		Doc: "quantile of end-to-end live latency reported by heartbeats (quantile=)"},
	rate("render_stall_ratio", "heartbeat", "render-stall time, % of playing plus rebuffering time (heartbeats)",
		[]term{plus("w_render_stall_ms")}, []term{plus("w_play_ms")}),
	{Name: "render_stall_frequency", Unit: unitPerHour, Kind: "heartbeat", Scale: 3_600_000,
		Num: []term{plus("w_render_stalls")}, Den: []term{plus("w_play_ms")},
		Doc: "render stalls per hour of playing plus rebuffering time (heartbeats)"},
	rate("render_stall_session_rate", "play_stop", "ended plays with at least one render stall, % of ended plays",
		[]term{plus("w_render_stalled")}, []term{plus("w_started")}),
	{Name: "views", Unit: unitCount, Kind: "play_stop", Num: []term{plus("w_view_end")}, Scale: 1,
		Doc: "views that ended: a view is a play session with its retries (the play_stop without will_retry)"},
	rate("view_start_failure_rate", "play_stop", "ended views whose last attempt failed with an error before the first frame, % of ended views",
		[]term{plus("w_view_start_failed")}, []term{plus("w_view_end")}),
	rate("view_playback_failure_rate", "play_stop", "ended views that stopped with an error after the first frame, % of ended views that reached it",
		[]term{plus("w_view_play_failed")}, []term{plus("w_view_started")}),
	rate("edge_error_rate", "edge_access", "edge responses with HTTP status ≥ 400, % of edge responses",
		[]term{plus("w_edge_error")}, []term{plus("w")}),
	rate("back_to_source_rate", "edge_access", "edge responses that went back to source (cache miss), % of edge responses that reported cache_hit",
		[]term{plus("w_cache_miss")}, []term{plus("w_cache_known")}),
	// From the CMCD players send with each request (edge_access cmcd_*):
	// what the player saw of the edge that served it.
	{Name: "edge_measured_throughput", Unit: unitKbps, Kind: "edge_access", RawOnly: true,
		Dists: []schemas.Distribution{{Kind: "edge_access", Field: "cmcd_mtp"}},
		Doc:   "quantile of the throughput players measured (CMCD mtp) on the requests an edge served (quantile=; group_by=node_id)"},
	{Name: "edge_buffer_length", Unit: unitMs, Kind: "edge_access", RawOnly: true,
		Dists: []schemas.Distribution{{Kind: "edge_access", Field: "cmcd_bl"}},
		Doc:   "quantile of the buffer players held (CMCD bl) when they asked an edge for media; a low quantile means viewers close to stalling (quantile=; group_by=node_id)"},
	{Name: "concurrent_viewers", Unit: unitViewers, Kind: "heartbeat", Num: []term{plus("w_view_ms")}, Scale: 1, PerTime: true,
		Doc: "average number of viewers playing at once: heartbeat viewing time ÷ the bucket's length"},
}

var metricsByName = func() map[string]*metric {
	m := make(map[string]*metric, len(metricList))
	for i := range metricList {
		mt := &metricList[i]
		for _, t := range append(append([]term{}, mt.Num...), mt.Den...) {
			if schemas.MeasureByName[t.Measure] == nil {
				panic("query: metric " + mt.Name + " uses unknown measure " + t.Measure)
			}
		}
		m[mt.Name] = mt
	}
	return m
}()

// metricNames lists the metrics, sorted.
func metricNames() []string {
	out := make([]string, 0, len(metricList))
	for _, m := range metricList {
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out
}

// quantile reports whether the metric is a quantile.
func (m *metric) quantile() bool { return len(m.Dists) > 0 }

// measures are the distinct measures the metric sums, in first-use order.
func (m *metric) measures() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range append(append([]term{}, m.Num...), m.Den...) {
		if !seen[t.Measure] {
			seen[t.Measure] = true
			out = append(out, t.Measure)
		}
	}
	return out
}
