package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Trace search: GET /api/v1/trace. One viewer's (device's, user's, session's)
// or one stream's (room's) play sessions, each with its client events, the
// server events that carry its session_id, the stream-level events of its
// stream while it played, and a summary; plus the rejected events of the
// same ids. docs/trace.md describes the API.
//
// Two rounds of queries, each query reading only the granules of the keys it
// looks for (the events table is ordered by app_id, trace_key, ts):
//
//  1. the page: for a device or a user, its sessions from trace_sessions
//     (with the rejected events beside it); for a session, its client
//     events, and the page is cut in Go; for a room or stream, the list of
//     sessions through the bloom-filter skip indexes (trace_query.go);
//  2. in parallel, by trace key: the page's client events (but a session's),
//     each session's span a range of the sort key; its edge events; its
//     streams' events; and the rejected events (but a device's or user's).
//
// assembleTrace (trace_join.go) joins the rows to the sessions and sums
// them up.

const (
	traceDefaultWindow = 24 * time.Hour
	traceMaxWindow     = 31 * 24 * time.Hour
	traceDefaultLimit  = 50
	traceMaxLimit      = 500
	traceMaxIDLen      = 256
	// traceMargin widens a session's span when joining stream-level events:
	// stream stats are periodic, and the one just before a play began often
	// explains it.
	traceMargin = 30 * time.Second
	// traceMaxRows bounds the rows one answer carries; past it the answer
	// says truncated and the caller narrows the window or the page.
	traceMaxRows = 100_000
	// traceMaxRejected bounds the rejected events listed (the latest ones).
	traceMaxRejected = 1000
)

// traceIDParams are the ids a trace can be looked up by; exactly one is given.
var traceIDParams = []string{"device_id", "user_id", "session_id", "room_id", "stream_id"}

// traceParams are all the parameters of /api/v1/trace.
var traceParams = append(slices.Clone(traceIDParams), "app_id", "from", "to", "since", "limit", "cursor")

// Log types by the role they play in a trace, derived from the catalog so a
// new log_type lands in the right place: "play" (client events of a play,
// keyed by device), "push" (client events of a push, keyed by stream),
// "edge" (server events keyed by session: edge_access) and "stream"
// (stream-level server events, keyed by stream).
var traceClass = func() map[string]string {
	m := map[string]string{}
	for _, lt := range schemas.Catalog {
		switch {
		case lt.Source == "client" && lt.TraceKey == "device_id":
			m[lt.Name] = "play"
		case lt.Source == "client" && lt.TraceKey == "stream_id":
			m[lt.Name] = "push"
		case lt.TraceKey == "session_id":
			m[lt.Name] = "edge"
		default:
			m[lt.Name] = "stream"
		}
	}
	return m
}()

// traceTypes lists the log types of some classes, in catalog order.
func traceTypes(classes ...string) []string {
	var out []string
	for _, lt := range schemas.Catalog {
		if slices.Contains(classes, traceClass[lt.Name]) {
			out = append(out, lt.Name)
		}
	}
	return out
}

var (
	tracePlayTypes   = traceTypes("play")
	tracePushTypes   = traceTypes("push")
	traceEdgeTypes   = traceTypes("edge")
	traceClientTypes = traceTypes("play", "push")
	traceStreamish   = traceTypes("push", "stream") // what a viewer's stream did
)

// TraceResponse is the JSON answer of /api/v1/trace.
type TraceResponse struct {
	Query TraceQuery `json:"query"`
	// Sessions are in order of their first event.
	Sessions []TraceSession `json:"sessions"`
	// NextCursor, when set, fetches the next page: repeat the request with
	// cursor=NextCursor.
	NextCursor string `json:"next_cursor,omitempty"`
	// Truncated says the page held more rows than one answer carries; ask
	// for fewer sessions (limit) or a shorter window.
	Truncated bool `json:"truncated,omitempty"`
	// Rejected are the refused events of the same ids in the window, newest
	// last; listed on the first page only.
	Rejected          []TraceRejected `json:"rejected"`
	RejectedTruncated bool            `json:"rejected_truncated,omitempty"`
}

// TraceQuery echoes what was looked up, with the window made absolute.
type TraceQuery struct {
	By    string    `json:"by"`
	ID    string    `json:"id"`
	AppID string    `json:"app_id,omitempty"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Limit int       `json:"limit"`
}

// TraceSession is one play (or push) session and what joins to it.
type TraceSession struct {
	Kind      string    `json:"kind"` // play or push
	AppID     string    `json:"app_id"`
	SessionID string    `json:"session_id"`
	DeviceID  string    `json:"device_id,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	RoomID    string    `json:"room_id,omitempty"`
	StreamID  string    `json:"stream_id,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	// Summary is computed from the events below.
	Summary TraceSummary `json:"summary"`
	// Events are the session's own client events, in time order.
	Events []TraceEvent `json:"events"`
	// ServerEvents are server logs carrying the session's session_id (edge
	// access).
	ServerEvents []TraceEvent `json:"server_events"`
	// StreamEvents are the stream-level events of the session's stream from
	// 30 s before its first event to 30 s after its last: the broadcaster's
	// push_* (for a play), ingest, relay, origin, and transcode of the
	// session's rendition.
	StreamEvents []TraceEvent `json:"stream_events"`
}

// TraceSummary condenses a session. Pointers are null when nothing reported
// the value, so "not reported" stays distinct from zero.
type TraceSummary struct {
	ReachedFirstFrame  bool   `json:"reached_first_frame"`
	FirstFrameTotalMs  *int64 `json:"first_frame_total_ms"`
	DNSMs              *int64 `json:"dns_ms,omitempty"`
	TCPConnectMs       *int64 `json:"tcp_connect_ms,omitempty"`
	TCPFirstPacketMs   *int64 `json:"tcp_first_packet_ms,omitempty"`
	VideoFirstPacketMs *int64 `json:"video_first_packet_ms,omitempty"`
	FirstDecodeMs      *int64 `json:"first_decode_ms,omitempty"`
	FirstRenderMs      *int64 `json:"first_render_ms,omitempty"`
	// FirstFrameBlocked is the phase a play was stuck in when no first
	// frame came (from play_stop).
	FirstFrameBlocked string `json:"first_frame_blocked,omitempty"`
	// StopCode is play_stop's (push_stop's) code; null when no stop came.
	StopCode   *int64 `json:"stop_code"`
	StopReason string `json:"stop_reason,omitempty"`
	// StallCount and StallTotalMs count the stall events received;
	// ReportedStall* are what play_stop itself reported, which also covers
	// stall events that were lost or sampled out.
	StallCount           int64  `json:"stall_count"`
	StallTotalMs         int64  `json:"stall_total_ms"`
	ReportedStallCount   *int64 `json:"reported_stall_count,omitempty"`
	ReportedStallTotalMs *int64 `json:"reported_stall_total_ms,omitempty"`
	RenderStallCount     int64  `json:"render_stall_count,omitempty"`
	RenderStallTotalMs   int64  `json:"render_stall_total_ms,omitempty"`
	// NodeID is the edge that served the play (edge_access), else the node
	// the client reported.
	NodeID    string `json:"node_id,omitempty"`
	CDN       string `json:"cdn,omitempty"`
	Region    string `json:"region,omitempty"`
	Rendition string `json:"rendition,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
	// EdgeHTTPStatus is the first edge_access's status.
	EdgeHTTPStatus *int64 `json:"edge_http_status,omitempty"`
	// BackToSource is true when an edge_access had cache_hit=false; null
	// when no edge logged the session.
	BackToSource   *bool  `json:"back_to_source"`
	BackToSourceMs *int64 `json:"back_to_source_ms,omitempty"`
	// PlayDurationMs is play_stop's play_duration_ms (push_stop's
	// duration_ms), else the span of the session's events.
	PlayDurationMs int64 `json:"play_duration_ms"`
}

// TraceRejected is one refused event: why it is not in the trace.
type TraceRejected struct {
	ReceivedAt time.Time `json:"received_at"`
	AppID      string    `json:"app_id"`
	LogType    string    `json:"log_type,omitempty"`
	DeviceID   string    `json:"device_id,omitempty"`
	UserID     string    `json:"user_id,omitempty"`
	SessionID  string    `json:"session_id,omitempty"`
	Stage      string    `json:"stage"`
	Code       string    `json:"code"`
	Field      string    `json:"field,omitempty"`
	Reason     string    `json:"reason"`
	Raw        string    `json:"raw"`
	EventIndex int       `json:"event_index"`
	RequestID  string    `json:"request_id,omitempty"`
	EventID    string    `json:"event_id,omitempty"`
}

// traceRequest is a validated /api/v1/trace request.
type traceRequest struct {
	By, ID, AppID string
	From, To      time.Time
	Limit         int
	After         *traceCursor
}

// traceCursor is where a page ended. It also carries the window of the first
// page, so a relative window (since=2h) does not drift while paging.
type traceCursor struct {
	From      int64  `json:"f"`
	To        int64  `json:"t"`
	Start     int64  `json:"s"`
	AppID     string `json:"a"`
	SessionID string `json:"i"`
}

func (c *traceCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeTraceCursor(s string) (*traceCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c traceCursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.From >= c.To || c.SessionID == "" {
		return nil, fmt.Errorf("cursor=%q is not a cursor this API gave out (use next_cursor of the previous answer)", s)
	}
	return &c, nil
}

// parseTraceRequest validates the parameters; its errors are 400 answers
// that name the problem.
func parseTraceRequest(v url.Values, now time.Time) (*traceRequest, error) {
	p := newParams(v, now)
	// Mark every known parameter as read first, so check names exactly the
	// strangers even when a later parse fails early.
	for _, n := range traceParams {
		p.has(n)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	req := &traceRequest{}
	var given []string
	for _, n := range traceIDParams {
		if _, ok := v[n]; ok {
			given = append(given, n)
		}
	}
	switch len(given) {
	case 0:
		return nil, fmt.Errorf("give one of %s", strings.Join(traceIDParams, ", "))
	case 1:
	default:
		return nil, fmt.Errorf("give exactly one of %s; got %s", strings.Join(traceIDParams, ", "), strings.Join(given, " and "))
	}
	req.By, req.ID = given[0], p.get(given[0])
	if req.ID == "" {
		return nil, fmt.Errorf("%s is empty", req.By)
	}
	if len(req.ID) > traceMaxIDLen {
		return nil, fmt.Errorf("%s is %d bytes long; ids are at most %d", req.By, len(req.ID), traceMaxIDLen)
	}
	req.AppID = p.get("app_id")
	var err error
	if req.From, req.To, err = p.window(traceDefaultWindow, traceMaxWindow); err != nil {
		return nil, err
	}
	if req.Limit, err = p.intParam("limit", traceDefaultLimit, 1, traceMaxLimit); err != nil {
		return nil, err
	}
	if c := p.get("cursor"); c != "" {
		if req.After, err = decodeTraceCursor(c); err != nil {
			return nil, err
		}
		req.From, req.To = time.UnixMilli(req.After.From), time.UnixMilli(req.After.To)
		if req.To.Sub(req.From) > traceMaxWindow {
			return nil, fmt.Errorf("cursor window %s is longer than the %s allowed", req.To.Sub(req.From), traceMaxWindow)
		}
	}
	req.From, req.To = req.From.UTC().Truncate(time.Millisecond), req.To.UTC().Truncate(time.Millisecond)
	return req, nil
}

// traceArrowMedia is what a client sends in Accept to get Arrow IPC.
const traceArrowMedia = "application/vnd.apache.arrow.stream"

func (s *Server) serveTrace(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "trace is read-only: use GET")
		return
	}
	req, err := parseTraceRequest(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	res, err := s.trace(r.Context(), req)
	if err != nil {
		level.Error(s.logger).Log("msg", "trace lookup failed", "by", req.By, "id", req.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "trace lookup failed: %v", err)
		return
	}
	if res.NextCursor != "" {
		w.Header().Set("X-Lastmile-Next-Cursor", res.NextCursor)
	}
	if strings.Contains(r.Header.Get("Accept"), traceArrowMedia) {
		w.Header().Set("Content-Type", traceArrowMedia)
		if err := writeTraceArrow(w, res); err != nil {
			level.Warn(s.logger).Log("msg", "writing trace as arrow", "err", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// tracePageSession is a session of the page as the sessions query found it.
type tracePageSession struct {
	AppID      string   `json:"app_id"`
	SessionID  string   `json:"session_id"`
	StartMs    int64    `json:"start_ms"`
	EndMs      int64    `json:"end_ms"`
	Keys       []string `json:"keys"`
	Streams    []string `json:"streams"`
	Renditions []string `json:"renditions"`
	Devices    []string `json:"devices"`
	Push       int      `json:"push"`

	out *TraceSession
}

// trace runs the lookup: the sessions query, then the client, edge and
// stream queries and the rejected one in parallel.
func (s *Server) trace(ctx context.Context, req *traceRequest) (*TraceResponse, error) {
	res := &TraceResponse{
		Query:    TraceQuery{By: req.By, ID: req.ID, AppID: req.AppID, From: req.From, To: req.To, Limit: req.Limit},
		Sessions: []TraceSession{},
		Rejected: []TraceRejected{},
	}
	var wg sync.WaitGroup
	var rejErr error
	// A device's or user's rejected events do not depend on the page: fetch
	// them while the page is found, on the core that would otherwise idle.
	early := req.After == nil && (req.By == "device_id" || req.By == "user_id")
	if early {
		wg.Go(func() {
			res.Rejected, res.RejectedTruncated, rejErr = s.traceRejected(ctx, req, rejectedCond(req, nil))
		})
	}
	page, client, err := s.tracePage(ctx, req)
	if err != nil {
		wg.Wait()
		return nil, err
	}
	if len(page) > req.Limit {
		last := page[req.Limit-1]
		page = page[:req.Limit]
		res.NextCursor = (&traceCursor{From: req.From.UnixMilli(), To: req.To.UnixMilli(),
			Start: last.StartMs, AppID: last.AppID, SessionID: last.SessionID}).encode()
	}

	fetches := traceFetches(req, page, client == nil)
	rows := make([][]traceRow, fetchKinds)
	rows[fetchClient] = client
	errs := make([]error, len(fetches))
	for i, f := range fetches {
		wg.Go(func() { rows[f.kind], errs[i] = s.traceFetch(ctx, f) })
	}
	if req.After == nil && !early {
		if cond := rejectedCond(req, page); cond != "" {
			wg.Go(func() { res.Rejected, res.RejectedTruncated, rejErr = s.traceRejected(ctx, req, cond) })
		}
	}
	wg.Wait()
	for _, err := range append(errs, rejErr) {
		if err != nil {
			return nil, err
		}
	}
	for i := range rows {
		if len(rows[i]) > traceMaxRows {
			rows[i], res.Truncated = rows[i][:traceMaxRows], true
		}
	}
	res.Sessions = assembleTrace(page, rows)
	return res, nil
}
