package trace

import (
	"slices"
	"sort"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// assembleTrace joins the fetched rows to the page's sessions: a session's
// own and edge events by (app_id, session_id), its streams' events by stream,
// time span and rendition. One stream row can belong to several sessions.
func (p Plan) assembleTrace(page []*tracePageSession, fetched [][]traceRow) []Session {
	sessions := make([]Session, len(page))
	bySession := map[[2]string]*tracePageSession{}
	byStream := map[[2]string][]*tracePageSession{}
	for i, ps := range page {
		ps.out = &sessions[i]
		*ps.out = Session{Kind: "play", AppID: ps.AppID, SessionID: ps.SessionID,
			Events: []Event{}, ServerEvents: []Event{}, StreamEvents: []Event{}}
		if ps.Push != 0 {
			ps.out.Kind = "push"
		}
		bySession[[2]string{ps.AppID, ps.SessionID}] = ps
		for _, st := range ps.Streams {
			k := [2]string{ps.AppID, st}
			byStream[k] = append(byStream[k], ps)
		}
	}
	for _, r := range fetched[fetchClient] {
		if own := bySession[[2]string{r.app, r.session}]; own != nil {
			own.out.Events = append(own.out.Events, r.ev)
		}
	}
	// A session's span is its events' (the index's spans are wider, see
	// pageFromIndex); one without events in the window is not in it.
	for _, ps := range page {
		if evs := ps.out.Events; len(evs) > 0 {
			ps.StartMs, ps.EndMs = evs[0].TS.UnixMilli(), evs[0].TS.UnixMilli()
			for _, e := range evs[1:] {
				ps.StartMs, ps.EndMs = min(ps.StartMs, e.TS.UnixMilli()), max(ps.EndMs, e.TS.UnixMilli())
			}
		}
	}
	margin := p.Margin.Milliseconds()
	for kind, rows := range fetched {
		for i := range rows {
			r := &rows[i]
			switch fetchKind(kind) {
			case fetchClient:
			case fetchEdge:
				if own := bySession[[2]string{r.app, r.session}]; own != nil {
					own.out.ServerEvents = append(own.out.ServerEvents, r.ev)
				}
			case fetchStream:
				ms := r.ev.TS.UnixMilli()
				for _, ps := range byStream[[2]string{r.app, r.stream}] {
					switch {
					case ms < ps.StartMs-margin || ms > ps.EndMs+margin:
					case ps.Push != 0 && traceClass[r.ev.LogType] == "push":
						// a broadcaster's pushes are its own events
					case ps.Push == 0 && r.ev.LogType == "transcode" && len(ps.Renditions) > 0 && !slices.Contains(ps.Renditions, r.rendition):
					default:
						ps.out.StreamEvents = append(ps.out.StreamEvents, r.ev)
					}
				}
			}
		}
	}
	out := sessions[:0]
	for i := range sessions {
		s := &sessions[i]
		if len(s.Events) == 0 {
			continue
		}
		for _, l := range [][]Event{s.Events, s.ServerEvents, s.StreamEvents} {
			sortTraceEvents(l)
		}
		fillSessionIDs(s, page[i])
		s.Summary = summarizeSession(s)
		out = append(out, *s)
	}
	return out
}

// traceCatalogPos orders events of the same millisecond by their place in the
// catalog, which follows a play's life (play_start before first_frame).
var traceCatalogPos = func() map[string]int {
	m := map[string]int{}
	for i, lt := range schemas.Catalog {
		m[lt.Name] = i
	}
	return m
}()

func sortTraceEvents(evs []Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := &evs[i], &evs[j]
		if !a.TS.Equal(b.TS) {
			return a.TS.Before(b.TS)
		}
		if pa, pb := traceCatalogPos[a.LogType], traceCatalogPos[b.LogType]; pa != pb {
			return pa < pb
		}
		return a.Str("event_id") < b.Str("event_id")
	})
}

// fillSessionIDs takes a session's ids and span from its own events (the
// first non-empty value of each), else from what the sessions query saw.
func fillSessionIDs(s *Session, ps *tracePageSession) {
	for _, e := range s.Events {
		for _, id := range []struct {
			dst  *string
			name string
		}{{&s.DeviceID, "device_id"}, {&s.UserID, "user_id"}, {&s.RoomID, "room_id"}, {&s.StreamID, "stream_id"}} {
			if *id.dst == "" {
				*id.dst = e.Str(id.name)
			}
		}
	}
	if s.DeviceID == "" && len(ps.Devices) > 0 {
		s.DeviceID = ps.Devices[0]
	}
	if s.StreamID == "" && len(ps.Streams) > 0 {
		s.StreamID = ps.Streams[0]
	}
	s.Start, s.End = s.Events[0].TS, s.Events[len(s.Events)-1].TS // assembleTrace keeps sessions with events
}

// summarizeSession condenses a session's events; see Summary for what each
// value means.
func summarizeSession(s *Session) Summary {
	var sum Summary
	ptr := func(e *Event, name string) *int64 {
		if n, ok := e.Int(name); ok {
			return &n
		}
		return nil
	}
	dims := []struct {
		dst  *string
		name string
	}{{&sum.CDN, "cdn"}, {&sum.Region, "region"}, {&sum.Rendition, "rendition"}, {&sum.Protocol, "protocol"}, {&sum.NodeID, "node_id"}}
	var durationMs *int64
	for i := range s.Events {
		e := &s.Events[i]
		for _, d := range dims {
			if *d.dst == "" {
				*d.dst = e.Str(d.name)
			}
		}
		switch e.LogType {
		case "first_frame":
			if sum.ReachedFirstFrame {
				continue // a second first_frame (a retry) does not redo the startup
			}
			sum.ReachedFirstFrame = true
			sum.FirstFrameTotalMs = ptr(e, "total_ms")
			sum.DNSMs = ptr(e, "dns_ms")
			sum.TCPConnectMs = ptr(e, "tcp_connect_ms")
			sum.TCPFirstPacketMs = ptr(e, "tcp_first_packet_ms")
			sum.VideoFirstPacketMs = ptr(e, "video_first_packet_ms")
			sum.FirstDecodeMs = ptr(e, "first_decode_ms")
			sum.FirstRenderMs = ptr(e, "first_render_ms")
		case "stall":
			sum.StallCount++
			if n, ok := e.Int("duration_ms"); ok {
				sum.StallTotalMs += n
			}
		case "render_stall":
			sum.RenderStallCount++
			if n, ok := e.Int("duration_ms"); ok {
				sum.RenderStallTotalMs += n
			}
		case "play_stop":
			sum.StopCode = ptr(e, "code")
			sum.StopReason = e.Str("reason")
			sum.FirstFrameBlocked = e.Str("first_frame_blocked")
			sum.ReportedStallCount = ptr(e, "stall_count")
			sum.ReportedStallTotalMs = ptr(e, "stall_total_ms")
			durationMs = ptr(e, "play_duration_ms")
		case "push_stop":
			sum.StopCode = ptr(e, "code")
			sum.StopReason = e.Str("reason")
			durationMs = ptr(e, "duration_ms")
		}
	}
	edgeNode := ""
	for i := range s.ServerEvents {
		e := &s.ServerEvents[i]
		if e.LogType != "edge_access" {
			continue
		}
		if edgeNode == "" {
			edgeNode = e.Str("node_id")
		}
		if sum.EdgeHTTPStatus == nil {
			sum.EdgeHTTPStatus = ptr(e, "http_status")
		}
		if hit, ok := e.Bool("cache_hit"); ok {
			miss := !hit || (sum.BackToSource != nil && *sum.BackToSource)
			sum.BackToSource = &miss
		}
		if n, ok := e.Int("back_to_source_ms"); ok && (sum.BackToSourceMs == nil || n > *sum.BackToSourceMs) {
			sum.BackToSourceMs = &n
		}
		for _, d := range dims[:2] { // cdn, region when the client did not say
			if *d.dst == "" {
				*d.dst = e.Str(d.name)
			}
		}
	}
	if edgeNode != "" {
		sum.NodeID = edgeNode
	}
	if durationMs != nil {
		sum.PlayDurationMs = *durationMs
	} else if n := len(s.Events); n > 0 {
		sum.PlayDurationMs = s.Events[n-1].TS.Sub(s.Events[0].TS).Milliseconds()
	}
	return sum
}
