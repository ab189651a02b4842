// Package trace is trace search: one viewer's (device's, user's, session's)
// or one stream's (room's) play sessions, each with its client events, the
// server events that carry its session_id, the stream-level events of its
// stream while it played, a summary and a diagnosis; plus the rejected events
// of the same ids. It knows nothing of HTTP: query/ serves it as
// GET /api/v1/trace, and docs/trace.md describes the API.
//
// Two rounds of queries, each query reading only the granules of the keys it
// looks for (the events table is ordered by app_id, trace_key, ts):
//
//  1. the page: for a device or a user, its sessions from trace_sessions
//     (with the rejected events beside it); for a session, its client
//     events, and the page is cut in Go; for a room or stream, the list of
//     sessions through the bloom-filter skip indexes (query.go);
//  2. in parallel, by trace key: the page's client events (but a session's),
//     each session's span a range of the sort key; its edge events; its
//     streams' events; and the rejected events (but a device's or user's).
//
// assembleTrace (join.go) joins the rows to the sessions and sums them up.
// Which source finds the page and which form each fetch takes are chosen by
// the thresholds of a Plan (plan.go).
package trace

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// Limits of a request, which the API enforces.
const (
	DefaultWindow = 24 * time.Hour
	MaxWindow     = 31 * 24 * time.Hour
	DefaultLimit  = 50
	MaxLimit      = 500
	MaxIDLen      = 256
)

// Store is what trace search reads: the analytics store's SELECTs as
// JSONEachRow.
type Store interface {
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
}

// IDParams are the ids a trace can be looked up by; exactly one is given.
var IDParams = []string{"device_id", "user_id", "session_id", "room_id", "stream_id"}

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

// Response is the JSON answer of /api/v1/trace.
type Response struct {
	Query Query `json:"query"`
	// Sessions are in order of their first event.
	Sessions []Session `json:"sessions"`
	// NextCursor, when set, fetches the next page: repeat the request with
	// cursor=NextCursor.
	NextCursor string `json:"next_cursor,omitempty"`
	// Truncated says the page held more rows than one answer carries; ask
	// for fewer sessions (limit) or a shorter window.
	Truncated bool `json:"truncated,omitempty"`
	// Rejected are the refused events of the same ids in the window, newest
	// last; listed on the first page only.
	Rejected          []Rejected `json:"rejected"`
	RejectedTruncated bool       `json:"rejected_truncated,omitempty"`
}

// Query echoes what was looked up, with the window made absolute.
type Query struct {
	By    string    `json:"by"`
	ID    string    `json:"id"`
	AppID string    `json:"app_id,omitempty"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Limit int       `json:"limit"`
}

// Session is one play (or push) session and what joins to it.
type Session struct {
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
	Summary Summary `json:"summary"`
	// Events are the session's own client events, in time order.
	Events []Event `json:"events"`
	// ServerEvents are server logs carrying the session's session_id (edge
	// access).
	ServerEvents []Event `json:"server_events"`
	// StreamEvents are the stream-level events of the session's stream from
	// 30 s before its first event to 30 s after its last: the broadcaster's
	// push_* (for a play), ingest, relay, origin, and transcode of the
	// session's rendition.
	StreamEvents []Event `json:"stream_events"`
}

// Summary condenses a session. Pointers are null when nothing reported
// the value, so "not reported" stays distinct from zero.
type Summary struct {
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
	// Diagnosis judges a play session (diagnosis.go); null for a push.
	Diagnosis *Diagnosis `json:"diagnosis,omitempty"`
}

// Rejected is one refused event: why it is not in the trace.
type Rejected struct {
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

// Request is a lookup: one id (By is one of IDParams), an optional app,
// the window, the page size and where the previous page ended.
type Request struct {
	By, ID, AppID string
	From, To      time.Time
	Limit         int
	After         *Cursor
}

// Cursor is where a page ended. It also carries the window of the first
// page, so a relative window (since=2h) does not drift while paging.
type Cursor struct {
	From      int64  `json:"f"`
	To        int64  `json:"t"`
	Start     int64  `json:"s"`
	AppID     string `json:"a"`
	SessionID string `json:"i"`
}

// Encode is the cursor as the API hands it out (next_cursor).
func (c *Cursor) Encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads what Encode wrote.
func DecodeCursor(s string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c Cursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.From >= c.To || c.SessionID == "" {
		return nil, fmt.Errorf("cursor=%q is not a cursor this API gave out (use next_cursor of the previous answer)", s)
	}
	return &c, nil
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

	out *Session
}

// trace runs the lookup: the sessions query, then the client, edge and
// stream queries and the rejected one in parallel.
func (s *searcher) trace(ctx context.Context, req *Request) (*Response, error) {
	res := &Response{
		Query:    Query{By: req.By, ID: req.ID, AppID: req.AppID, From: req.From, To: req.To, Limit: req.Limit},
		Sessions: []Session{},
		Rejected: []Rejected{},
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
		res.NextCursor = (&Cursor{From: req.From.UnixMilli(), To: req.To.UnixMilli(),
			Start: last.StartMs, AppID: last.AppID, SessionID: last.SessionID}).Encode()
	}

	fetches := s.traceFetches(req, page, client == nil)
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
		if len(rows[i]) > s.MaxRows {
			rows[i], res.Truncated = rows[i][:s.MaxRows], true
		}
	}
	res.Sessions = s.assembleTrace(page, rows)
	if err := s.diagnoseAll(ctx, res.Sessions); err != nil {
		return nil, err
	}
	return res, nil
}
