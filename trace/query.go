package trace

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// tracePage finds the page of sessions, and for a session its client events
// too: one query does for both. A device or a user is looked up in
// trace_sessions, which lists its sessions with their spans and trace keys,
// so that round 2 fetches each session's client events as ranges of the sort
// key; a session through its bloom filter. For a room or stream, and for a
// busier session, the store lists the sessions from the events, and their
// events are fetched by trace key with the edge and stream events.
func (s *searcher) tracePage(ctx context.Context, req *Request) ([]*tracePageSession, []traceRow, error) {
	switch req.By {
	case "device_id", "user_id":
		page, err := s.traceIndex(ctx, req, s.IndexRows)
		return page, nil, err
	case "session_id":
		rows, err := s.traceFetch(ctx, traceFetchQuery{fetchClient, s.directSQL(req)})
		if err != nil {
			return nil, nil, err
		}
		if len(rows) <= s.DirectRows {
			return pageFromRows(req, rows), rows, nil
		}
	}
	page, err := s.traceSessions(ctx, req)
	return page, nil, err
}

// indexCond selects the rows of the id looked up whose day meets the window.
// The day bounds are a day wider than the window because the table's days
// are in the store's time zone; the spans are checked after grouping.
func indexCond(req *Request) string {
	return fmt.Sprintf("lookup = %s AND lookup_id = %s AND day >= toDate(%s) AND day <= toDate(%s)%s",
		sqlString(req.By), sqlString(req.ID), sqlTime(req.From.Add(-24*time.Hour)), sqlTime(req.To.Add(24*time.Hour)), traceAppCond(req))
}

// indexSQL reads the id's rows of trace_sessions as they are, up to limit+1:
// grouping a few rows in Go is cheaper than an aggregation in the store.
func indexSQL(req *Request, limit int) string {
	return fmt.Sprintf(`SELECT app_id, session_id, toUnixTimestamp64Milli(first_ts) AS start_ms, toUnixTimestamp64Milli(last_ts) AS end_ms,
  trace_key, stream_id, rendition
FROM trace_sessions
WHERE %s
LIMIT %d
SETTINGS %s`, indexCond(req), limit+1, traceSettings)
}

// indexGroupSQL has the store group the id's rows and cut the page, as
// pageFromIndex does in Go.
func indexGroupSQL(req *Request) string {
	from, to, q := req.From.UnixMilli(), req.To.UnixMilli(), schemas.TraceSessionQuantum.Milliseconds()
	var b strings.Builder
	fmt.Fprintf(&b, `SELECT app_id, session_id,
  greatest(toUnixTimestamp64Milli(min(first_ts)), %d) AS start_ms, least(toUnixTimestamp64Milli(max(last_ts)) + %d, %d) AS end_ms,
  groupUniqArray(trace_key) AS keys, groupUniqArrayIf(stream_id, stream_id != '') AS streams,
  groupUniqArrayIf(rendition, rendition != '') AS renditions, arrayFilter(k -> k != '', keys) AS devices
FROM trace_sessions
WHERE %s
GROUP BY app_id, session_id
HAVING toUnixTimestamp64Milli(max(last_ts)) + %d >= %d AND toUnixTimestamp64Milli(min(first_ts)) < %d
`, from, q, to-1, indexCond(req), q, from, to)
	if c := req.After; c != nil {
		fmt.Fprintf(&b, "  AND (start_ms, app_id, session_id) > (%d, %s, %s)\n", c.Start, sqlString(c.AppID), sqlString(c.SessionID))
	}
	fmt.Fprintf(&b, "ORDER BY start_ms, app_id, session_id\nLIMIT %d\nSETTINGS %s", req.Limit+1, traceSettings)
	return b.String()
}

// traceIndex finds a device's or user's page of sessions in trace_sessions:
// in Go up to limit rows, else in the store.
func (s *searcher) traceIndex(ctx context.Context, req *Request, limit int) ([]*tracePageSession, error) {
	out, err := s.store.QueryJSON(ctx, indexSQL(req, limit))
	if err != nil {
		return nil, fmt.Errorf("finding sessions: %w", err)
	}
	var rows []indexRow
	err = traceLines(out, func(line []byte) error {
		var r indexRow
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("finding sessions: row %.200q: %w", line, err)
		}
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(rows) <= limit {
		return pageFromIndex(req, rows), nil
	}
	if out, err = s.store.QueryJSON(ctx, indexGroupSQL(req)); err != nil {
		return nil, fmt.Errorf("finding sessions: %w", err)
	}
	return decodePageSessions(out)
}

// indexRow is a row of trace_sessions: a session's span in one insert and
// day, for one of its trace keys (a play event's is its device_id, which may
// be empty), streams and renditions.
type indexRow struct {
	AppID     string `json:"app_id"`
	SessionID string `json:"session_id"`
	StartMs   int64  `json:"start_ms"`
	EndMs     int64  `json:"end_ms"`
	TraceKey  string `json:"trace_key"`
	StreamID  string `json:"stream_id"`
	Rendition string `json:"rendition"`
}

// pageFromIndex groups trace_sessions rows by session and cuts the page: the
// sessions that may have events in the window, their spans clipped to it (as
// the events queries see them), ordered by start. A span ends
// schemas.TraceSessionQuantum after its last_ts, the most its events may run
// past it; a session that turns out to have no events in the window is left
// out of the answer (assembleTrace).
func pageFromIndex(req *Request, rows []indexRow) []*tracePageSession {
	by := map[[2]string]*tracePageSession{}
	var all []*tracePageSession
	for _, r := range rows {
		ps := by[[2]string{r.AppID, r.SessionID}]
		if ps == nil {
			ps = &tracePageSession{AppID: r.AppID, SessionID: r.SessionID, StartMs: r.StartMs, EndMs: r.EndMs}
			by[[2]string{r.AppID, r.SessionID}] = ps
			all = append(all, ps)
		}
		ps.StartMs, ps.EndMs = min(ps.StartMs, r.StartMs), max(ps.EndMs, r.EndMs)
		if !slices.Contains(ps.Keys, r.TraceKey) { // an empty key too: events without a device_id
			ps.Keys = append(ps.Keys, r.TraceKey)
		}
		traceAddUniq(&ps.Devices, r.TraceKey)
		traceAddUniq(&ps.Streams, r.StreamID)
		traceAddUniq(&ps.Renditions, r.Rendition)
	}
	from, to := req.From.UnixMilli(), req.To.UnixMilli()
	for _, ps := range all {
		ps.EndMs += schemas.TraceSessionQuantum.Milliseconds()
	}
	all = slices.DeleteFunc(all, func(ps *tracePageSession) bool { return ps.EndMs < from || ps.StartMs >= to })
	for _, ps := range all {
		ps.StartMs, ps.EndMs = max(ps.StartMs, from), min(ps.EndMs, to-1)
	}
	return cutPage(req, all)
}

// directSQL fetches a session's client events, with their trace keys.
func (p Plan) directSQL(req *Request) string {
	prewhere, types := traceLookup(req)
	return fmt.Sprintf(`SELECT %s, trace_key
FROM events
PREWHERE %s
WHERE log_type IN %s AND ts >= %s AND ts < %s%s
LIMIT %d
SETTINGS %s`, clientCols(types), prewhere, traceIn(types), sqlTime(req.From), sqlTime(req.To), traceAppCond(req), p.DirectRows+1, traceSettings2)
}

// pageFromRows groups a session lookup's client events into sessions, as
// sessionsSQL does in the store, and cuts the page.
func pageFromRows(req *Request, rows []traceRow) []*tracePageSession {
	by := map[[2]string]*tracePageSession{}
	var all []*tracePageSession
	for i := range rows {
		r := &rows[i]
		ms := r.ev.TS.UnixMilli()
		ps := by[[2]string{r.app, r.session}]
		if ps == nil {
			ps = &tracePageSession{AppID: r.app, SessionID: r.session, StartMs: ms, EndMs: ms}
			by[[2]string{r.app, r.session}] = ps
			all = append(all, ps)
		}
		ps.StartMs, ps.EndMs = min(ps.StartMs, ms), max(ps.EndMs, ms)
		traceAddUniq(&ps.Keys, r.key)
		traceAddUniq(&ps.Streams, r.stream)
		traceAddUniq(&ps.Devices, r.ev.Str("device_id"))
		switch traceClass[r.ev.LogType] {
		case "push":
			ps.Push = 1
		case "play":
			traceAddUniq(&ps.Renditions, r.rendition)
		}
	}
	return cutPage(req, all)
}

// cutPage orders sessions by start and keeps those after the cursor, limit+1
// of them (one more says there is a next page).
func cutPage(req *Request, all []*tracePageSession) []*tracePageSession {
	slices.SortFunc(all, func(a, b *tracePageSession) int {
		return cmp.Or(cmp.Compare(a.StartMs, b.StartMs), cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.SessionID, b.SessionID))
	})
	if c := req.After; c != nil {
		all = slices.DeleteFunc(all, func(ps *tracePageSession) bool {
			return cmp.Or(cmp.Compare(ps.StartMs, c.Start), cmp.Compare(ps.AppID, c.AppID), cmp.Compare(ps.SessionID, c.SessionID)) <= 0
		})
	}
	return all[:min(len(all), req.Limit+1)]
}

func traceAddUniq(list *[]string, x string) {
	if x != "" && !slices.Contains(*list, x) {
		*list = append(*list, x)
	}
}

// traceLookup is the condition that finds a session's, room's or stream's
// sessions in the events table, through the bloom-filter indexes (a device
// or user goes through trace_sessions). prewhere is the selective part: see
// the note below.
func traceLookup(req *Request) (prewhere string, types []string) {
	return req.By + " = " + sqlString(req.ID), traceLookupTypes(req)
}

// traceLookupTypes are the log types whose session_id makes a session of the
// lookup: a device or user has play sessions; a session, room or stream
// plays and pushes.
func traceLookupTypes(req *Request) []string {
	if req.By == "device_id" || req.By == "user_id" {
		return tracePlayTypes
	}
	return traceClientTypes
}

// Every trace query names its selective condition in PREWHERE. The primary
// key and the bloom filters leave granules that hold none of the rows sought
// (one per part whose key range spans the id, and the bloom filters' false
// positives: ~60 of 6,000 granules at 50M events); PREWHERE reads only its
// own columns there, and the other 25–50 columns only where rows match. This
// cut a user lookup's first query from 49 to 17 ms at 50M events. Written
// out rather than left to optimize_move_to_prewhere, whose planning costs
// more than the lookup (see traceSettings).

func traceIn(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = sqlString(x)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

func traceAppCond(req *Request) string {
	if req.AppID == "" {
		return ""
	}
	return " AND app_id = " + sqlString(req.AppID)
}

// sessionsSQL lists one page (plus one, to know there is a next) of sessions.
func sessionsSQL(req *Request) string {
	prewhere, types := traceLookup(req)
	var b strings.Builder
	fmt.Fprintf(&b, `SELECT app_id, session_id,
  toUnixTimestamp64Milli(min(ts)) AS start_ms, toUnixTimestamp64Milli(max(ts)) AS end_ms,
  groupUniqArray(trace_key) AS keys,
  groupUniqArrayIf(stream_id, stream_id != '') AS streams,
  groupUniqArrayIf(rendition, rendition != '') AS renditions,
  groupUniqArrayIf(device_id, device_id != '') AS devices,
  toUInt8(countIf(log_type IN %s) > 0) AS push
FROM events
PREWHERE %s
WHERE log_type IN %s AND ts >= %s AND ts < %s%s
GROUP BY app_id, session_id
`, traceIn(tracePushTypes), prewhere, traceIn(types), sqlTime(req.From), sqlTime(req.To), traceAppCond(req))
	if c := req.After; c != nil {
		fmt.Fprintf(&b, "HAVING (start_ms, app_id, session_id) > (%d, %s, %s)\n", c.Start, sqlString(c.AppID), sqlString(c.SessionID))
	}
	fmt.Fprintf(&b, "ORDER BY start_ms, app_id, session_id\nLIMIT %d\nSETTINGS %s", req.Limit+1, traceSettings)
	return b.String()
}

func (s *searcher) traceSessions(ctx context.Context, req *Request) ([]*tracePageSession, error) {
	out, err := s.store.QueryJSON(ctx, sessionsSQL(req))
	if err != nil {
		return nil, fmt.Errorf("finding sessions: %w", err)
	}
	return decodePageSessions(out)
}

func decodePageSessions(out []byte) ([]*tracePageSession, error) {
	var page []*tracePageSession
	err := traceLines(out, func(line []byte) error {
		var ps tracePageSession
		if err := json.Unmarshal(line, &ps); err != nil {
			return fmt.Errorf("finding sessions: row %.200q: %w", line, err)
		}
		page = append(page, &ps)
		return nil
	})
	return page, err
}

func traceLines(out []byte, fn func([]byte) error) error {
	for len(out) > 0 {
		i := bytes.IndexByte(out, '\n')
		line := out
		if i >= 0 {
			line, out = out[:i], out[i+1:]
		} else {
			out = nil
		}
		if len(line) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// Every column a query reads costs, about 0.2 ms per column and query
// whatever the rows (chDB 26.5 on 2 cores, 5M–50M events), more than the
// granules themselves; so each query reads only the columns of the rows it is
// after, and source and received_at are left out everywhere (the list a row
// is in says the first; the second is pipeline bookkeeping, in the events
// table for who needs it).

// clientCols is the SELECT list for client events of the given types: the
// columns those types have.
func clientCols(types []string) string {
	if slices.Equal(types, tracePlayTypes) {
		return playCols
	}
	return playPushCols
}

var (
	playCols     = traceCols(nil, tracePlayTypes)
	playPushCols = traceCols(nil, traceClientTypes)
	// An edge knows the request, not the player: the common columns it can
	// fill, and its own.
	edgeCols = traceCols([]string{"event_id", "log_type", "ts", "app_id", "session_id", "stream_id", "region", "isp", "cdn",
		"node_id", "protocol", "rendition"}, traceEdgeTypes)
	// A stream's events are context for a viewer: what the stream did, not
	// who the broadcaster is or how it is set up (their own session has
	// that), so only these common columns and not the static ones.
	//
	// The edge and stream queries read these as trace_context's documents,
	// which its view writes (migration 0007 lists the same columns;
	// TestTraceContextTable checks the two agree).
	streamCols = traceCols([]string{"event_id", "log_type", "ts", "app_id", "session_id", "stream_id", "node_id", "rendition"},
		traceStreamish, "url", "server_ip", "client_ip", "width", "height", "target_bitrate_kbps", "connect_ms", "interval_ms")
)

// traceCols lists, in catalog order, the common columns given (all when
// nil) and the type-specific columns of the log types but those dropped,
// times as ms since the epoch (DateTime64 text depends on the server's time
// zone).
func traceCols(common []string, types []string, drop ...string) string {
	want := map[string]bool{"app_id": true}
	for _, n := range types {
		lt := schemas.Lookup(n)
		cols := lt.Fields
		if common == nil {
			cols = lt.Columns()
		}
		for _, f := range cols {
			want[f.Name] = true
		}
	}
	for _, n := range common {
		want[n] = true
	}
	for _, n := range append(drop, "source", "received_at") {
		delete(want, n)
	}
	var cols []string
	for _, f := range schemas.EventColumns {
		switch {
		case !want[f.Name]:
		case f.Kind == schemas.KindTime:
			cols = append(cols, fmt.Sprintf("toUnixTimestamp64Milli(%s) AS %s_ms", f.Name, f.Name))
		default:
			cols = append(cols, f.Name)
		}
	}
	return strings.Join(cols, ", ")
}

// traceSettings go with every trace query. The queries write their PREWHERE
// themselves; the optimizer that would move conditions there examines every
// column of the wide events table and its planning costs more (10-15 ms)
// than a lookup reads. One thread per query: a lookup reads a few granules,
// and the queries of one lookup run side by side, so more threads add only
// hand-offs. No query condition cache: a lookup's conditions (its ids and
// spans) seldom come again, so filling the cache is work for nothing (0–3 ms
// a lookup at 50M events, in two A/B runs). The primary key's search splits
// each mark range in 2 at every step, not 8: with a few keys (the IN lists,
// the span terms) it tests fewer ranges; a 6-key query's key analysis took
// 3.0 ms instead of 4.0 over 18 parts, and lookups were 5–7% faster at p50 in
// an interleaved A/B (50M events, 2 cores). The answer is formatted in the
// query's thread: parallel formatting hands every block to formatter threads
// and back, 5 of a query's 6 thread-pool jobs for `SELECT 1`, and on a VM each
// hand-off between cores costs tens of µs; without it a lookup by device took
// 6% less CPU (108 → 101 ms, interleaved A/B, 50M events, 2 cores).
const traceSettings = "optimize_move_to_prewhere = 0, max_threads = 1, use_query_condition_cache = 0, merge_tree_coarse_index_granularity = 2, output_format_parallel_formatting = 0"

// traceSettings2 go with a session lookup's first query, which runs alone
// and reads a granule of every part of the window: two threads read two parts
// at once.
const traceSettings2 = "optimize_move_to_prewhere = 0, max_threads = 2, use_query_condition_cache = 0, merge_tree_coarse_index_granularity = 2, output_format_parallel_formatting = 0"

// fetchKind says which list of a session a fetch fills.
type fetchKind uint8

const (
	fetchClient fetchKind = iota // the session's own events
	fetchEdge                    // server events carrying its session_id
	fetchStream                  // events of its stream while it played
	fetchKinds
)

type traceFetchQuery struct {
	kind fetchKind
	sql  string
}

// traceFetches builds the queries for the page's rows, one per kind of row,
// each by trace_key (the sort key) so it reads only the granules of its keys,
// and with few terms whatever the page size (planning costs grow with every
// IN list and OR branch). The exact join to each session is done in
// assembleTrace.
func (p Plan) traceFetches(req *Request, page []*tracePageSession, withClient bool) []traceFetchQuery {
	if len(page) == 0 {
		return nil
	}
	var apps, sids, rends []string
	keySpans := map[string][2]int64{} // client events: one span per trace key
	allRenditions := false
	for _, ps := range page {
		apps = append(apps, ps.AppID)
		sids = append(sids, ps.SessionID)
		for _, k := range ps.Keys {
			sp, ok := keySpans[k]
			if !ok {
				sp = [2]int64{ps.StartMs, ps.EndMs}
			}
			keySpans[k] = [2]int64{min(sp[0], ps.StartMs), max(sp[1], ps.EndMs)}
		}
		// A player sees one rendition; the other transcode workers are
		// noise. A broadcaster's session sees them all.
		if len(ps.Streams) > 0 && (ps.Push != 0 || len(ps.Renditions) == 0) {
			allRenditions = true
		}
		rends = append(rends, ps.Renditions...)
	}
	appIn, sidIn := traceIn(traceUniq(apps)), traceIn(traceUniq(sids))
	// No ORDER BY or LIMIT BY: sorting and dropping a duplicated event_id
	// (see docs/storage.md, exactly once) are cheaper in Go than as two
	// more pipeline stages.
	tail := fmt.Sprintf("\nLIMIT %d\nSETTINGS %s", p.MaxRows+1, traceSettings)
	// edge_access is keyed by session (its trace_key is its session_id), and
	// read from trace_context: in the events table each session looked up
	// cost the key search of every part of the window, ~150 µs (25 sessions
	// over 11 parts: 21 ms of CPU, 12 here). Over the window, not the
	// sessions' spans: an edge's clock is not the player's. One column, the
	// event's document (see streamCols).
	out := []traceFetchQuery{{fetchEdge, fmt.Sprintf(`SELECT doc
FROM `+schemas.TraceContextTable+`
PREWHERE trace_key IN %s
WHERE app_id IN %s AND log_type IN %s AND ts >= %s AND ts <= %s`,
		sidIn, appIn, traceIn(traceEdgeTypes), sqlTime(req.From.Add(-p.Margin)), sqlTime(req.To.Add(p.Margin))) + tail}}
	if withClient {
		// Each key's sessions as one range of the sort key, from the first
		// one's start to the last one's end: the store reads only the parts
		// whose time span meets it (parts are written in time order), not
		// every part of the window. One range per key, not per session: a
		// key's rows between its sessions are few (a device plays one
		// session at a time; another user's on a shared device, or a
		// session past the page, is filtered out by session_id), so the
		// wider range reads about the same rows, and every OR term costs
		// the store's planning ~0.6 ms (a user's 17 sessions on 2 devices:
		// 24 ms of CPU with a term per session, 14 with one per device, the
		// same 4 granules; 50M events, 2 cores). The price is a granule of
		// each part that lies between two sessions and holds none of their
		// events.
		types := traceLookupTypes(req)
		var spans []traceKeySpan
		for _, k := range slices.Sorted(maps.Keys(keySpans)) {
			spans = append(spans, traceKeySpan{k, keySpans[k][0], keySpans[k][1]})
		}
		where := fmt.Sprintf("%s\nWHERE app_id IN %s AND session_id IN %s AND log_type IN %s", traceSpanTerms(spans), appIn, sidIn, traceIn(types))
		if len(spans) > p.MaxSpanTerms {
			where = fmt.Sprintf("trace_key IN %s\nWHERE app_id IN %s AND session_id IN %s AND log_type IN %s AND ts >= %s AND ts < %s",
				traceIn(slices.Sorted(maps.Keys(keySpans))), appIn, sidIn, traceIn(types), sqlTime(req.From), sqlTime(req.To))
		}
		out = append(out, traceFetchQuery{fetchClient, fmt.Sprintf("SELECT %s\nFROM events\nPREWHERE %s", clientCols(types), where) + tail})
	}
	set, streams, lo, hi := p.traceStreamBuckets(page)
	if len(streams) == 0 {
		return out
	}
	// Each stream over its own sessions' spans (±Margin): a user's
	// plays of different streams at different times must not fetch every
	// stream at every time. From trace_context, one column, by the 10-minute
	// buckets the spans meet, as one set of (app_id, trace_key, bucket): the
	// key search finds a set of key prefixes exactly, where OR-ed ranges of
	// (trace_key, ts) cost planning for each and kept the granules where one
	// stream's rows end and the next one's start in every part. The whole
	// buckets come back; assembleTrace keeps each session's span. Past
	// MaxStreamBuckets (plays of hours), the streams over the spans'
	// hull.
	var q string
	if len(set) <= p.MaxStreamBuckets {
		q = fmt.Sprintf(`SELECT doc
FROM `+schemas.TraceContextTable+`
PREWHERE (app_id, trace_key, bucket) IN (%s)
WHERE log_type IN %s`, strings.Join(set, ", "), traceIn(traceStreamish))
	} else {
		q = fmt.Sprintf(`SELECT doc
FROM `+schemas.TraceContextTable+`
PREWHERE trace_key IN %s
WHERE app_id IN %s AND log_type IN %s AND ts >= %s AND ts <= %s`,
			traceIn(streams), appIn, traceIn(traceStreamish),
			sqlTime(time.UnixMilli(lo)), sqlTime(time.UnixMilli(hi)))
	}
	if !allRenditions {
		q += " AND (log_type != 'transcode' OR rendition IN " + traceIn(traceUniq(rends)) + ")"
	}
	return append(out, traceFetchQuery{fetchStream, q + fmt.Sprintf("\nLIMIT %d\nSETTINGS %s", p.MaxRows+1, traceSettings)})
}

// traceStreamBuckets lists, as SQL tuples in key order, the
// (app_id, stream, bucket) of trace_context that the page's sessions' spans
// (±Margin) of their streams meet, up to MaxStreamBuckets+1 of
// them; and the streams and the spans' hull.
func (p Plan) traceStreamBuckets(page []*tracePageSession) (set, streams []string, lo, hi int64) {
	type bucket struct {
		app, stream string
		n           int64
	}
	seen := map[bucket]bool{}
	lo, hi = math.MaxInt64, math.MinInt64
	width, margin := schemas.TraceContextBucket.Milliseconds(), p.Margin.Milliseconds()
	for _, ps := range page {
		from, to := ps.StartMs-margin, ps.EndMs+margin
		for _, st := range ps.Streams {
			streams = append(streams, st)
			lo, hi = min(lo, from), max(hi, to)
			for n := from / width; n <= to/width && len(seen) <= p.MaxStreamBuckets; n++ {
				if b := (bucket{ps.AppID, st, n}); !seen[b] {
					seen[b] = true
					set = append(set, fmt.Sprintf("(%s, %s, %d)", sqlString(b.app), sqlString(b.stream), b.n))
				}
			}
		}
	}
	slices.Sort(set)
	return set, traceUniq(streams), lo, hi
}

// traceKeySpan is a span of time of one trace key: a range of the sort key.
type traceKeySpan struct {
	key    string
	lo, hi int64 // ms, inclusive
}

// traceSpanTerms writes spans as `(trace_key = K AND ts >= A AND ts <= B) OR
// …`: the primary key finds each range, and the parts' time spans (min/max
// of ts) leave out the parts none of them meets.
func traceSpanTerms(spans []traceKeySpan) string {
	terms := make([]string, len(spans))
	for i, sp := range spans {
		terms[i] = fmt.Sprintf("(trace_key = %s AND ts >= %s AND ts <= %s)",
			sqlString(sp.key), sqlTime(time.UnixMilli(sp.lo)), sqlTime(time.UnixMilli(sp.hi)))
	}
	return strings.Join(terms, " OR ")
}

func traceUniq(xs []string) []string {
	slices.Sort(xs)
	return slices.Compact(xs)
}

// traceRow is one fetched event with the keys it is joined by.
type traceRow struct {
	app, session, stream, rendition, key, eventID string
	ev                                            Event
}

func (s *searcher) traceFetch(ctx context.Context, f traceFetchQuery) ([]traceRow, error) {
	what := [...]string{"client events", "edge events", "stream events"}[f.kind]
	out, err := s.store.QueryJSON(ctx, f.sql)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", what, err)
	}
	var rows []traceRow
	var scratch []flatjson.Field
	var docs []byte // trace_context's documents, unescaped; rows keep slices of it
	seen := map[[2]string]bool{}
	err = traceLines(out, func(line []byte) error {
		if f.kind != fetchClient {
			var err error
			if scratch, err = flatjson.ParseObject(scratch[:0], line); err != nil {
				return fmt.Errorf("fetching %s: row %.200q: %w", what, line, err)
			}
			if len(scratch) != 1 || scratch[0].Kind != flatjson.String {
				return fmt.Errorf("fetching %s: row %.200q: want {\"doc\": \"…\"}", what, line)
			}
			start := len(docs)
			docs = scratch[0].AppendStr(docs)
			line = docs[start:len(docs):len(docs)]
		}
		var r traceRow
		var err error
		if r, scratch, err = parseTraceRow(line, scratch); err != nil {
			return fmt.Errorf("fetching %s: row %.200q: %w", what, line, err)
		}
		if k := [2]string{r.app, r.eventID}; !seen[k] {
			seen[k] = true
			rows = append(rows, r)
		}
		return nil
	})
	return rows, err
}

// parseTraceRow turns one JSONEachRow line into an event, dropping null and
// empty values. Values stay slices of the store's answer (no copies); the
// scanner is the collector's, which is many times faster than encoding/json
// on these wide, mostly-null rows.
func parseTraceRow(line []byte, scratch []flatjson.Field) (traceRow, []flatjson.Field, error) {
	fields, err := flatjson.ParseObject(scratch[:0], line)
	if err != nil {
		return traceRow{}, fields, err
	}
	var r traceRow
	r.ev.Fields = make([]Field, 0, 16)
	for i := range fields {
		f := &fields[i]
		if f.Kind == flatjson.Null || (f.Kind == flatjson.String && len(f.Raw) == 2) {
			continue
		}
		name := string(f.Key) // column names need no unescaping
		switch name {
		case "ts_ms":
			ms, err := strconv.ParseInt(strings.Trim(string(f.Raw), `"`), 10, 64)
			if err != nil {
				return r, fields, fmt.Errorf("ts: %w", err)
			}
			r.ev.TS = time.UnixMilli(ms).UTC()
			continue
		case "log_type":
			r.ev.LogType = f.Str()
			continue
		case schemas.ColTraceKey:
			r.key = f.Str()
			continue
		case "event_id":
			r.eventID = f.Str()
		case "app_id":
			r.app = f.Str()
		case "session_id":
			r.session = f.Str()
		case "stream_id":
			r.stream = f.Str()
		case "rendition":
			r.rendition = f.Str()
		}
		if n, ok := strings.CutSuffix(name, "_ms"); ok && traceTimeColumn(n) {
			name = n
		}
		v := f.Raw
		if f.Escaped && bytes.Contains(v, []byte(`\/`)) {
			// The store escapes '/' ("live\/room-1"); valid, but not how
			// anyone wrote the id.
			v = flatjson.AppendString(nil, f.Str())
		}
		r.ev.Fields = append(r.ev.Fields, Field{Name: name, Value: v})
	}
	return r, fields, nil
}

func traceTimeColumn(name string) bool {
	i, ok := schemas.EventColumnIndex[name]
	return ok && schemas.EventColumns[i].Kind == schemas.KindTime
}

// rejectedCond is the WHERE condition for the rejected events of the ids
// looked up: by device (the rejected table's sort key), else by user or
// session (its bloom indexes). A room or stream is not in rejected rows, so
// the page's sessions stand in; for a session, room or stream, a rejected
// event without a session_id (a malformed event may not have one) is
// matched by the sessions' devices.
func rejectedCond(req *Request, page []*tracePageSession) string {
	id := sqlString(req.ID)
	var devices, sids []string
	for _, ps := range page {
		devices = append(devices, ps.Devices...)
		sids = append(sids, ps.SessionID)
	}
	slices.Sort(devices)
	devices = slices.Compact(devices)
	switch req.By {
	case "device_id":
		return "device_id = " + id
	case "user_id":
		return "user_id = " + id
	case "session_id":
		sids = []string{req.ID}
	}
	if len(sids) == 0 {
		return ""
	}
	c := "session_id IN " + traceIn(sids)
	if len(devices) > 0 {
		c = "(" + c + " OR (device_id IN " + traceIn(devices) + " AND session_id = ''))"
	}
	return c
}

func (p Plan) rejectedSQL(req *Request, cond string) string {
	return fmt.Sprintf(`SELECT toUnixTimestamp64Milli(received_at) AS received_ms, app_id, log_type, device_id, user_id, session_id,
  stage, code, field, reason, raw, event_index, request_id, event_id
FROM rejected
WHERE %s AND received_at >= %s AND received_at < %s%s
ORDER BY received_at DESC, event_id
LIMIT %d
SETTINGS %s`, cond, sqlTime(req.From), sqlTime(req.To), traceAppCond(req), p.MaxRejected+1, traceSettings)
}

func (s *searcher) traceRejected(ctx context.Context, req *Request, cond string) ([]Rejected, bool, error) {
	out, err := s.store.QueryJSON(ctx, s.rejectedSQL(req, cond))
	if err != nil {
		return nil, false, fmt.Errorf("fetching rejected events: %w", err)
	}
	rej := []Rejected{}
	err = traceLines(out, func(line []byte) error {
		var r struct {
			Rejected
			ReceivedMs json.Number `json:"received_ms"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("fetching rejected events: row %.200q: %w", line, err)
		}
		ms, _ := r.ReceivedMs.Int64()
		r.Rejected.ReceivedAt = time.UnixMilli(ms).UTC()
		rej = append(rej, r.Rejected)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	truncated := len(rej) > s.MaxRejected
	if truncated {
		rej = rej[:s.MaxRejected]
	}
	slices.Reverse(rej) // oldest first, like the timelines
	return rej, truncated, nil
}

// SQL literals, quoted in one place (internal/store).
var (
	sqlString = store.QuoteString
	sqlTime   = store.QuoteTime
)
