package localize

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// facts are what the scope checks read from the store: a few grouped
// queries over the incident's span (± Margin) and the History before it.
type facts struct {
	spanFrom int64 // the span's start, Unix s
	streams  []streamRow
	edge     []edgeRow
	plays    []playRow
	versions []versionRow
}

// streamRow is one stream's (and rendition's) publish-side log type in the
// span: push_start/push_stats/push_stop, ingest_session, relay,
// origin_stream, transcode.
type streamRow struct {
	Stream    string  `json:"stream_id"`
	Room      string  `json:"room_id"`
	Rendition string  `json:"rendition"`
	LogType   string  `json:"log_type"`
	N         float64 `json:"n"`        // reports in the span
	NBefore   float64 `json:"n_before"` // reports before it
	FPS       float64 `json:"fps_avg"`  // average in the span
	FPSBefore float64 `json:"fps_before"`
	FPSMax    float64 `json:"fps_max"` // any time (push_start: declared)
	Kbps      float64 `json:"kbps"`
	Target    float64 `json:"target"` // push_start target bitrate
	Dropped   float64 `json:"dropped"`
	SendBuf   float64 `json:"send_buffer"`
	Latency   float64 `json:"latency"`
	Retries   float64 `json:"retries_max"`
	Bad       float64 `json:"bad"`       // relay error, origin lost, transcode lagging/error, push_stop code ≠ 0
	Starts    float64 `json:"starts"`    // push_start, or state start
	Stops     float64 `json:"stops"`     // push_stop, or state stop/lost, or status stopped
	FirstBad  int64   `json:"first_bad"` // Unix ms of the first bad report, 0 for none
	Err       string  `json:"err"`       // an error or stop reason seen in the span
	Code      float64 `json:"code_max"`  // a non-zero push_stop code seen in the span
	// Times are the Unix ms of push_stats and ingest_session stats
	// reports from the look-back on, in order: a gap in them is the
	// publisher gone.
	Times []int64 `json:"times"`
}

// edgeRow is one node's edge_access for one stream and rendition, in one
// EdgeBucket of the span or the look-back (B, Unix s; 0 for the history
// before them).
type edgeRow struct {
	B         int64   `json:"b"`
	NBack     float64 `json:"n_back"`    // in the look-back before the span's margin
	ErrsBack  float64 `json:"errs_back"` // of those, failed
	Node      string  `json:"node_id"`
	CDN       string  `json:"cdn"`
	Region    string  `json:"region"`
	Stream    string  `json:"stream_id"`
	Rendition string  `json:"rendition"`
	N         float64 `json:"n"`
	NBefore   float64 `json:"n_before"`
	NCore     float64 `json:"n_core"` // in the span without its margins
	Errs      float64 `json:"errs"`   // http_status ≥ 400 or an error
	Slow      float64 `json:"slow"`   // first byte ≥ EdgeFirstByteMs
	Err       string  `json:"err"`
	Status    float64 `json:"status_max"` // an error status seen
}

// playRow is viewers' client logs in the span, in or out of the cohort,
// by node, stream, log type and the phase a failed start was blocked in.
type playRow struct {
	InCohort uint8    `json:"in_cohort"`
	Node     string   `json:"node_id"`
	CDN      string   `json:"cdn"`
	Stream   string   `json:"stream_id"`
	LogType  string   `json:"log_type"`
	Blocked  string   `json:"blocked"`
	ISPs     []string `json:"isps"`
	Versions []string `json:"versions"`
	N        float64  `json:"n"`      // events (sampling weights applied)
	Failed   float64  `json:"failed"` // play_stop with a code ≠ 0
	Code     float64  `json:"code_max"`
	// Summed first-frame phase times (ms × weight).
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	FirstPk float64 `json:"first_packet"`
	VideoPk float64 `json:"video_packet"`
	Decode  float64 `json:"decode"`
	Render  float64 `json:"render"`
}

// versionRow is an app version's first attempts to play (weighted) in one
// second of the history and the span.
type versionRow struct {
	Version string  `json:"version"`
	Sec     int64   `json:"sec"`
	N       float64 `json:"n"`
}

// streamBad marks a publish-side report of a failure.
const streamBad = "(state IN ('error', 'lost') OR status IN ('lagging', 'error') OR (log_type = 'push_stop' AND code != 0))"

// weight is an event's sampling weight.
const weight = "if(sample_rate > 0, 1 / sample_rate, 1)"

// window bounds the queries: the span with its margins [lo, hi], the
// history before it from hist, the span proper [from, to], and back, from
// which the publish path's discrete events (stops, losses, errors) and
// reports count as the span's.
type window struct{ hist, back, lo, from, to, hi time.Time }

// during is the SQL condition of the span with its margins (the queries
// read [hist, hi]).
func (w window) during() string { return "ts >= " + sqlTime(w.lo) }

// publishPath are the log types of the publish path whose stops, losses
// and errors count from the look-back on: which of push and source failed
// first is told by their ts, and a loaded publisher or ingest logs them
// late or the span starts after the first of them.
const publishPath = "('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream')"

// duringPublish is during with the look-back for the publish path.
func (w window) duringPublish() string {
	return fmt.Sprintf("ts >= if(log_type IN %s, %s, %s)", publishPath, sqlTime(w.back), sqlTime(w.lo))
}

func (w window) all() string {
	return fmt.Sprintf("ts >= %s AND ts <= %s", sqlTime(w.hist), sqlTime(w.hi))
}

// window is the incident's span with the plan's margins and history.
func (sp ScopePlan) window(inc *Incident) window {
	back := inc.From.Add(-max(sp.Margin, sp.PushLookBack))
	return window{hist: inc.From.Add(-sp.Margin - sp.History), back: back, lo: inc.From.Add(-sp.Margin), from: inc.From, to: inc.To, hi: inc.To.Add(sp.Margin)}
}

// gather runs the queries the cohort's candidates need: publish-side facts
// for a stream or rendition, edge_access for an edge or a source (its
// back-to-source errors), viewers' client logs always (a verdict rules
// its rivals out with them), app versions for a version.
func (sp ScopePlan) gather(ctx context.Context, st Store, inc *Incident, c *cohort, cands []string) (*facts, error) {
	w := sp.window(inc)
	need := map[string]bool{}
	for _, s := range cands {
		need[s] = true
	}
	f := &facts{spanFrom: inc.From.Unix()}
	var err error
	if need[ScopePush] || need[ScopeSource] || need[ScopeTranscode] {
		if f.streams, err = streamFacts(ctx, st, w, c); err != nil {
			return nil, err
		}
		if len(c.rooms) > 0 { // a room's streams, as its publish side names them
			seen := map[string]bool{}
			for _, r := range f.streams {
				seen[r.Stream] = true
			}
			c.streams = keys(seen)
		}
	}
	if need[ScopeEdge] || need[ScopeSource] {
		if f.edge, err = sp.edgeFacts(ctx, st, w, need[ScopeSource]); err != nil {
			return nil, err
		}
	}
	if f.plays, err = playFacts(ctx, st, w, inc.Dims); err != nil {
		return nil, err
	}
	if need[ScopeRollout] {
		if f.versions, err = versionFacts(ctx, st, w); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// streamFacts reads the publish side by stream, rendition and log type:
// the cohort's streams or rooms, or every stream when it names none.
func streamFacts(ctx context.Context, st Store, w window, c *cohort) ([]streamRow, error) {
	which := ""
	switch {
	case len(c.streams) > 0: // trace_key is the stream of these log types: the sort key skips other streams
		which = " AND " + inList("stream_id", c.streams) + " AND " + inList("trace_key", c.streams)
	case len(c.rooms) > 0:
		which = " AND " + inList("room_id", c.rooms)
	}
	return query[streamRow](ctx, st, "stream", fmt.Sprintf(`SELECT stream_id, room_id, rendition, log_type,
	toFloat64(countIf(%[1]s)) AS n, toFloat64(countIf(NOT (%[1]s))) AS n_before,
	avgIf(fps, %[1]s) AS fps_avg, avgIf(fps, NOT (%[1]s)) AS fps_before, max(fps) AS fps_max,
	avgIf(bitrate_kbps, %[1]s) AS kbps, max(target_bitrate_kbps) AS target,
	toFloat64(sumIf(dropped_frames, %[1]s)) AS dropped, toFloat64(maxIf(send_buffer_ms, %[1]s)) AS send_buffer,
	toFloat64(maxIf(latency_ms, %[1]s)) AS latency, toFloat64(maxIf(retries, %[5]s)) AS retries_max,
	toFloat64(countIf(%[5]s AND %[3]s)) AS bad, toUnixTimestamp64Milli(minIf(ts, %[5]s AND %[3]s)) AS first_bad,
	toFloat64(countIf(%[5]s AND (log_type = 'push_start' OR state = 'start'))) AS starts,
	toFloat64(countIf(%[5]s AND (log_type = 'push_stop' OR state IN ('stop', 'lost') OR status = 'stopped'))) AS stops,
	anyIf(if(error != '', error, if(reason != '', reason, stop_reason)), %[5]s AND (error != '' OR (log_type = 'push_stop' AND code != 0))) AS err,
	toFloat64(maxIf(code, %[5]s AND log_type = 'push_stop' AND code != 0)) AS code_max,
	arraySort(groupArrayIf(toUnixTimestamp64Milli(ts), %[5]s AND (log_type = 'push_stats' OR (log_type = 'ingest_session' AND state = 'stats')))) AS times
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode') AND %[2]s%[4]s
GROUP BY stream_id, room_id, rendition, log_type`, w.during(), w.all(), streamBad, which, w.duringPublish()))
}

// edgeFacts reads edge_access by node, stream, rendition and, when
// byBucket (the source check compares streams in time), EdgeBucket.
func (sp ScopePlan) edgeFacts(ctx context.Context, st Store, w window, byBucket bool) ([]edgeRow, error) {
	bucket := "0"
	if byBucket {
		bucket = fmt.Sprintf("if(ts >= %s, toInt64(toUnixTimestamp(toStartOfInterval(ts, INTERVAL %d SECOND))), 0)", sqlTime(w.back), max(1, int64(sp.EdgeBucket.Seconds())))
	}
	return query[edgeRow](ctx, st, "edge", fmt.Sprintf(`SELECT node_id, cdn, region, stream_id, rendition, %[5]s AS b,
	toFloat64(countIf(%[6]s AND NOT (%[1]s))) AS n_back,
	toFloat64(countIf(%[6]s AND NOT (%[1]s) AND (http_status >= 400 OR error != ''))) AS errs_back,
	toFloat64(countIf(%[1]s)) AS n, toFloat64(countIf(NOT (%[1]s))) AS n_before, toFloat64(countIf(%[4]s)) AS n_core,
	toFloat64(countIf(%[1]s AND (http_status >= 400 OR error != ''))) AS errs,
	toFloat64(countIf(%[1]s AND first_byte_ms >= %[3]d)) AS slow,
	anyIf(error, %[1]s AND error != '') AS err,
	toFloat64(maxIf(http_status, %[1]s AND http_status >= 400)) AS status_max
FROM events
WHERE log_type = 'edge_access' AND %[2]s
GROUP BY node_id, cdn, region, stream_id, rendition, b`, w.during(), w.all(), int64(sp.EdgeFirstByteMs),
		fmt.Sprintf("ts >= %s AND ts <= %s", sqlTime(w.from), sqlTime(w.to)), bucket, "ts >= "+sqlTime(w.back)))
}

// playFacts reads viewers' client logs in the span, in and out of the
// cohort.
func playFacts(ctx context.Context, st Store, w window, dims map[string]string) ([]playRow, error) {
	return query[playRow](ctx, st, "play", fmt.Sprintf(`SELECT toUInt8(%[3]s) AS in_cohort, node_id, cdn, stream_id, log_type,
	first_frame_blocked AS blocked, groupUniqArray(isp) AS isps, groupUniqArray(app_version) AS versions,
	sum(%[4]s) AS n, sumIf(%[4]s, code != 0) AS failed, toFloat64(maxIf(code, code != 0)) AS code_max,
	sum(dns_ms * %[4]s) AS dns, sum(tcp_connect_ms * %[4]s) AS connect, sum(tcp_first_packet_ms * %[4]s) AS first_packet,
	sum(video_first_packet_ms * %[4]s) AS video_packet, sum(first_decode_ms * %[4]s) AS decode, sum(first_render_ms * %[4]s) AS render
FROM events
WHERE log_type IN ('play_stop', 'first_frame', 'stall', 'render_stall') AND %[1]s AND ts <= %[2]s
GROUP BY in_cohort, node_id, cdn, stream_id, log_type, blocked`, w.during(), sqlTime(w.hi), cohortCond(dims), weight))
}

// versionFacts reads first attempts to play by app version and second,
// over the history and the span: a retry's start is not a new viewer (a
// failing version's viewers retry, which would swell its share).
func versionFacts(ctx context.Context, st Store, w window) ([]versionRow, error) {
	return query[versionRow](ctx, st, "app version", fmt.Sprintf(`SELECT app_version AS version, toInt64(toUnixTimestamp(ts)) AS sec, sum(%[1]s) AS n
FROM events
WHERE log_type = 'play_start' AND ifNull(attempt, 0) = 0 AND ts >= %[2]s AND ts <= %[3]s
GROUP BY version, sec`, weight, sqlTime(w.hist), sqlTime(w.to)))
}

func query[T any](ctx context.Context, st Store, what, sql string) ([]T, error) {
	b, err := st.QueryJSON(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("scope %s facts: %w", what, err)
	}
	return decodeRows[T](b, what)
}

// stream returns the publish-side row of a stream's log type (and
// rendition, "" for any), or a zero row.
func (f *facts) stream(stream, rendition, logType string) streamRow {
	for _, r := range f.streams {
		if r.Stream == stream && r.LogType == logType && (rendition == "" || r.Rendition == rendition) {
			return r
		}
	}
	return streamRow{Stream: stream, LogType: logType}
}

// cohortSet is the set of a play column's values in the cohort.
func (f *facts) cohortSet(col func(playRow) string) map[string]bool {
	set := map[string]bool{}
	for _, p := range f.plays {
		if v := col(p); p.InCohort == 1 && v != "" {
			set[v] = true
		}
	}
	return set
}

// peersText describes viewers outside the cohort that keep selects: how
// many of their plays failed and how often they stalled.
func (f *facts) peersText(who string, keep func(playRow) bool) string {
	sum := func(lt string) playSum {
		return f.playSum(func(p playRow) bool { return p.InCohort == 0 && p.LogType == lt && keep(p) })
	}
	stops := sum("play_stop")
	if stops.n == 0 {
		return who + ": none"
	}
	return fmt.Sprintf("%s: %.1f%% of %.0f plays failed, %.2f stalls and %.2f render stalls per play",
		who, pct(stops.failed, stops.n), stops.n, share(sum("stall").n, stops.n), share(sum("render_stall").n, stops.n))
}

// keys lists a set's members in order.
func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// edgeSum adds up edge rows that pass keep.
type edgeSum struct {
	n, before, core, errs, slow float64
	nBack, errsBack             float64 // in the look-back
}

func (f *facts) edgeSum(keep func(edgeRow) bool) (s edgeSum, err string, nodes map[string]bool) {
	nodes = map[string]bool{}
	for _, e := range f.edge {
		if !keep(e) {
			continue
		}
		s.n += e.N
		s.before += e.NBefore
		s.core += e.NCore
		s.errs += e.Errs
		s.slow += e.Slow
		s.nBack += e.NBack
		s.errsBack += e.ErrsBack
		if e.N+e.NBack > 0 {
			nodes[e.Node] = true
		}
		if err == "" && e.Err != "" {
			err = e.Err
			if e.Status > 0 {
				err = fmt.Sprintf("%.0f %s", e.Status, e.Err)
			}
		}
	}
	return s, err, nodes
}

// playSum adds up play rows that pass keep.
type playSum struct {
	n, failed                                      float64
	dns, connect, firstPk, videoPk, decode, render float64
}

func (f *facts) playSum(keep func(playRow) bool) playSum {
	var s playSum
	for _, p := range f.plays {
		if !keep(p) {
			continue
		}
		s.n += p.N
		s.failed += p.Failed
		s.dns += p.DNS
		s.connect += p.Connect
		s.firstPk += p.FirstPk
		s.videoPk += p.VideoPk
		s.decode += p.Decode
		s.render += p.Render
	}
	return s
}
