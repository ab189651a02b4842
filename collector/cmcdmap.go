package collector

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// CMCDPlan holds the choices of the CMCD event-mode mapping (docs/players.md).
type CMCDPlan struct {
	// MaxSessions bounds the play sessions whose state (first report, play
	// state, stall start) a collector's pairing stage remembers; past it the
	// closed ones, else the least recently heard, are forgotten.
	MaxSessions int
	// ErrorCode is play_stop's code for a fatal error (sta=f) or an error
	// report (e=e): CMCD names errors (ec) but gives no number.
	ErrorCode int64
}

// DefaultCMCDPlan: ~200 bytes a session, so 100k sessions cost ~20 MB.
var DefaultCMCDPlan = CMCDPlan{MaxSessions: 100_000, ErrorCode: 1}

// CMCD play states (CTA-5004-B key sta).
const (
	staStarting  = "s"
	staPlaying   = "p"
	staSeeking   = "k"
	staRebuffer  = "r"
	staPaused    = "a"
	staWaiting   = "w"
	staEnded     = "e"
	staFatal     = "f"
	staQuit      = "q"
	staPreloaded = "d"
)

// heartbeatState maps sta to heartbeat.state.
var heartbeatState = map[string]string{staPlaying: "playing", staRebuffer: "stalled", staPaused: "paused", staSeeking: "seeking"}

// protocolOf maps sf (streaming format) to the catalog's protocol.
var protocolOf = map[string]string{"h": "hls", "d": "dash", "s": "smooth", "o": "other"}

// cmcdSession is what the mapping remembers of one play (app, sid): the
// pairs it needs (start → playing for the startup time, rebuffering →
// playing for a stall's duration) span reports.
type cmcdSession struct {
	first    int64  // ts of the play's first report: its start
	last     int64  // ts of the latest report applied; older ones change nothing
	sta      string // latest play state
	played   bool   // first_frame emitted
	stallAt  int64  // > 0: rebuffering since this ts
	stalls   int64
	stallMs  int64
	lastBeat int64  // ts of the latest e=t report
	stopped  bool   // play_stop emitted; a later sta=s starts a new play
	joined   bool   // first heard mid-play: first is not the play's start
	bsd      bool   // the player reports stall durations itself (bsd): no pairing
	play     int64  // plays of the session before this one
	ffDone   bool   // first_frame emitted for this play
	sf       string // the latest streaming format the session named
}

func hasBSD(r *report) bool { _, ok := r.d.Get("bsd"); return ok }

// startsPlay reports whether a session first heard in state sta is at its
// start: starting, preloading, waiting, or a report without sta.
func startsPlay(sta string) bool {
	return sta == "" || sta == staStarting || sta == staPreloaded || sta == staWaiting
}

// derived is one catalog event a report maps to: its log_type, ts and
// type-specific fields (the common ones come from the report).
type derived struct {
	logType string
	ts      int64
	fields  []kv
	// idPart names the event in its session for its event_id; "" means its
	// ts. A first_frame is named by its play, so the one paired here and the
	// one another replica makes of the player's msd are one event.
	idPart string
}

type kv struct {
	key string
	val any // int64, float64, string or bool
}

// report is what the mapping reads of one event-mode report.
type report struct {
	e, sta, sid string
	device      string // device_id: the post's device parameter, else the sid
	sf          string // streaming format: the report's, else its session's (apply)
	ts          int64
	d           cmcd.Dict
}

// apply maps one report of the session to catalog events, in order, and
// advances the session. It is a pure function of (session, report, plan).
func (s *cmcdSession) apply(r *report, plan *CMCDPlan) []derived {
	var out []derived
	s.carryFormat(r)
	switch {
	case s.first == 0 && !startsPlay(r.sta):
		// First heard mid-play (this collector restarted, or another
		// replica saw the start): the start is unknown, so neither
		// play_start nor first_frame, never a wrong startup time.
		*s = cmcdSession{first: r.ts, last: r.ts, sta: r.sta, played: true, joined: true, sf: s.sf}
	case s.first == 0 || (s.stopped && r.sta == staStarting && r.ts > s.last):
		play := s.play
		if s.first != 0 {
			play++
		}
		*s = cmcdSession{first: r.ts, last: r.ts, sta: staStarting, play: play, bsd: s.bsd, sf: s.sf}
		out = append(out, derived{logType: "play_start", ts: r.ts})
	}
	if r.ts < s.last {
		// A late report (a retry, another tab's batch): its play state
		// transitions are history; only stateless mappings apply.
		return append(out, s.stateless(r, plan)...)
	}
	s.last = r.ts
	if !s.stopped && r.sta != "" && r.sta != s.sta {
		out = append(out, s.transition(r, plan)...)
	}
	return append(out, s.stateless(r, plan)...)
}

// transition handles a change of play state to r.sta.
func (s *cmcdSession) transition(r *report, plan *CMCDPlan) []derived {
	var out []derived
	prev := s.sta
	s.sta = r.sta
	if prev == staRebuffer && s.stallAt > 0 && r.sta != staRebuffer && !s.bsd && !hasBSD(r) {
		dur := r.ts - s.stallAt
		s.stalls++
		s.stallMs += dur
		out = append(out, derived{logType: "stall", ts: s.stallAt, fields: []kv{{"duration_ms", dur}, {"cause", "unknown"}}})
		s.stallAt = 0
	}
	switch r.sta {
	case staPlaying:
		if !s.played {
			s.played = true
			if !s.joined {
				out = append(out, s.firstFrame(r, r.ts-s.first))
			}
		}
	case staRebuffer:
		// Rebuffering before the first frame is startup, not a stall.
		if s.played {
			s.stallAt = r.ts
		}
	case staEnded, staQuit:
		out = append(out, s.stop(r, 0, ""))
	case staFatal:
		out = append(out, s.stop(r, plan.ErrorCode, errorText(r.d)))
	}
	return out
}

// stateless handles what a report says alone: a heartbeat, an error, the
// stall durations a player measured itself (bsd).
func (s *cmcdSession) stateless(r *report, plan *CMCDPlan) []derived {
	var out []derived
	if v, ok := r.d.Get("bsd"); ok {
		s.bsd, s.stallAt = true, 0
		for _, it := range v.List {
			if it.Kind == cmcd.Integer && it.Int > 0 {
				s.stalls++
				s.stallMs += it.Int
				out = append(out, derived{logType: "stall", ts: r.ts - it.Int, fields: []kv{{"duration_ms", it.Int}, {"cause", "unknown"}}})
			}
		}
	}
	// The player's own media start delay stands in only where the play's
	// start was not heard: startup time is from the first report to
	// playing for every player, and players start msd's clock at
	// different moments (dash.js at its play call, ~1 ms after an autoplay).
	if msd, ok := r.d.Number("msd"); ok && msd >= 0 && s.joined && !s.ffDone {
		out = append(out, s.firstFrame(r, int64(msd)))
	}
	return append(out, s.report(r, plan)...)
}

// carryFormat names the report's streaming format: its own sf, else the
// one its session named before (dash.js's first reports, sent before the
// manifest is read, carry none); the session keeps the latest.
func (s *cmcdSession) carryFormat(r *report) {
	if r.sf != "" {
		s.sf = r.sf
	} else {
		r.sf = s.sf
	}
}

func (s *cmcdSession) firstFrame(r *report, total int64) derived {
	s.ffDone = true
	return derived{logType: "first_frame", ts: r.ts, fields: []kv{{"total_ms", total}}, idPart: "play" + strconv.FormatInt(s.play, 10)}
}

func (s *cmcdSession) report(r *report, plan *CMCDPlan) []derived {
	switch r.e {
	case "t":
		f := []kv{}
		if s.lastBeat > 0 && r.ts > s.lastBeat {
			f = append(f, kv{"interval_ms", r.ts - s.lastBeat})
		}
		s.lastBeat = max(s.lastBeat, r.ts)
		if v, ok := r.d.Number("bl"); ok && v >= 0 {
			f = append(f, kv{"buffer_ms", int64(v)})
		}
		if v, ok := r.d.Number("br"); ok && v >= 0 {
			f = append(f, kv{"bitrate_kbps", v})
		}
		if v, ok := r.d.Number("ltc"); ok && v >= 0 {
			f = append(f, kv{"latency_ms", int64(v)})
		}
		if st, ok := heartbeatState[r.sta]; ok {
			f = append(f, kv{"state", st})
		}
		return []derived{{logType: "heartbeat", ts: r.ts, fields: f}}
	case "rr":
		return []derived{requestEvent(r)}
	case "e":
		if !s.stopped {
			return []derived{s.stop(r, plan.ErrorCode, errorText(r.d))}
		}
	}
	return nil
}

// requestFields maps an e=rr report's keys to the request event's fields:
// the response's (rc, ttfb, ttlb) and the object's CMCD.
var requestFields = []struct{ key, field string }{
	{"rc", "http_status"}, {"ttfb", "ttfb_ms"}, {"ttlb", "ttlb_ms"},
	{"br", "cmcd_br"}, {"d", "cmcd_d"}, {"bl", "cmcd_bl"}, {"mtp", "cmcd_mtp"},
}

// requestEvent is an e=rr report as a request event. A value the catalog
// refuses (rc 700, a negative ttfb) rejects the event with its reason, as a
// bad JSON event would be; the URL is cut to fit instead (cleanURL).
func requestEvent(r *report) derived {
	var f []kv
	if u, ok := r.d.Text("url"); ok {
		f = append(f, kv{"url", cleanURL(u)})
	}
	for _, m := range requestFields {
		if v, ok := r.d.Number(m.key); ok {
			f = append(f, kv{m.field, int64(v)})
		}
	}
	if ot, ok := r.d.Text("ot"); ok {
		f = append(f, kv{"cmcd_ot", ot})
	}
	// Several requests may end in one ms (audio and video): the report's
	// sequence number and URL name it, so a retried report keeps its id.
	sn, _ := r.d.Number("sn")
	u, _ := r.d.Text("url")
	return derived{logType: "request", ts: r.ts, fields: f, idPart: fmt.Sprintf("%d/%g/%s", r.ts, sn, u)}
}

// requestURLMax bounds a request's URL: the catalog's limit.
var requestURLMax = func() int {
	for _, f := range schemas.Lookup("request").Fields {
		if f.Name == "url" {
			return f.MaxLen
		}
	}
	panic("collector: the request log_type has no url")
}()

// cleanURL keeps what names the object: its query and fragment (a segment's
// signature, a token) and any user info are dropped, and it is cut to the
// catalog's bound at a character boundary. Text surgery, not url.Parse and
// String, which would re-escape the path.
func cleanURL(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:i+3] + rest[at+1:]
		}
	}
	if len(s) > requestURLMax {
		n := requestURLMax
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return s
}

func (s *cmcdSession) stop(r *report, code int64, reason string) derived {
	s.stopped = true
	f := []kv{{"code", code}, {"stall_count", s.stalls}, {"stall_total_ms", s.stallMs}}
	if !s.joined {
		f = append(f, kv{"play_duration_ms", max(r.ts-s.first, 0)})
	}
	if reason != "" {
		f = append(f, kv{"reason", reason})
	}
	return derived{logType: "play_stop", ts: r.ts, fields: f}
}

// errorText is the report's error code (ec), all of them when several.
func errorText(d cmcd.Dict) string {
	v, ok := d.Get("ec")
	if !ok {
		return "cmcd fatal error"
	}
	if v.Kind != cmcd.InnerList {
		return v.Text()
	}
	var s string
	for i, it := range v.List {
		if i > 0 {
			s += " "
		}
		s += it.Text()
	}
	return s
}

// appendEventJSON renders a derived event of a report as the JSON object
// /v1/events would take: the common fields CMCD gives, a deterministic
// event_id (a retried report, on any replica, is deduplicated), then the
// event's own fields.
func appendEventJSON(dst []byte, appID string, r *report, ev *derived) []byte {
	dst = append(dst, `{"log_type":`...)
	dst = flatjson.AppendString(dst, ev.logType)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ev.ts, 10)
	dst = append(dst, `,"event_id":`...)
	dst = flatjson.AppendString(dst, cmcdEventID(appID, r, ev))
	dst = append(dst, `,"session_id":`...)
	dst = flatjson.AppendString(dst, r.sid)
	dst = append(dst, `,"device_id":`...)
	dst = flatjson.AppendString(dst, r.device)
	if cid, ok := r.d.Text("cid"); ok {
		dst = append(dst, `,"room_id":`...)
		dst = flatjson.AppendString(dst, cid)
		dst = append(dst, `,"stream_id":`...)
		dst = flatjson.AppendString(dst, cid)
	}
	if r.sf != "" {
		if p, ok := protocolOf[r.sf]; ok {
			dst = append(dst, `,"protocol":`...)
			dst = flatjson.AppendString(dst, p)
		}
	}
	for _, f := range ev.fields {
		dst = append(dst, ',')
		dst = flatjson.AppendString(dst, f.key)
		dst = append(dst, ':')
		switch v := f.val.(type) {
		case int64:
			dst = strconv.AppendInt(dst, v, 10)
		case float64:
			dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
		case bool:
			dst = strconv.AppendBool(dst, v)
		case string:
			dst = flatjson.AppendString(dst, v)
		}
	}
	return append(dst, '}')
}

// cmcdEventID names a derived event by what it is: the app, session,
// log_type and time, so the same report mapped twice gets the same id.
func cmcdEventID(appID string, r *report, ev *derived) string {
	h := sha256.New()
	part := ev.idPart
	if part == "" {
		part = strconv.FormatInt(ev.ts, 10)
	}
	for _, s := range []string{appID, r.sid, ev.logType, part} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "cmcd-" + hex.EncodeToString(h.Sum(nil)[:15])
}
