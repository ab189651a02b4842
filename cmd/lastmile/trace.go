package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/trace"
)

// traceMain is `lastmile trace`: one device's, user's, session's, room's or
// stream's sessions from the query API, as a terminal timeline.
func traceMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lastmile trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: lastmile trace (--device ID | --user ID | --session ID | --room ID | --stream ID) [flags]

Prints the play sessions of one viewer (or the sessions of one room or
stream) in a time window: each session's diagnosis first (verdict, the
phase to blame, the server evidence, a scope guess), its summary, one line
per component of its stream context (push, ingest, relay, origin,
transcode, edge) when that component was fine, then its events by time
with the abnormal server and stream events among them (--verbose: every
event). A player's requests (CMCD e=rr) are one short line each: status,
ttfb, ttlb, object type, path (--verbose: every field). Rejected events of the same ids are listed at the end.

Flags:
`)
		fs.PrintDefaults()
	}
	ids := map[string]*string{}
	for _, id := range []struct{ flag, param, what string }{
		{"device", "device_id", "a player device"},
		{"user", "user_id", "a user (all their devices)"},
		{"session", "session_id", "one play or push session"},
		{"room", "room_id", "a room (its viewers and broadcaster)"},
		{"stream", "stream_id", "a stream (its viewers and broadcaster)"},
	} {
		ids[id.param] = fs.String(id.flag, "", "`ID` of "+id.what)
	}
	app := fs.String("app", "", "only this app_id")
	since := fs.String("since", "", "window ending now (or at --to): 30m, 2h, 7d (default 24h)")
	from := fs.String("from", "", "window start: RFC 3339, ms since the epoch, or now-2h")
	to := fs.String("to", "", "window end (default now)")
	limit := fs.Int("limit", 0, "sessions per page (default 50, at most 500)")
	cursor := fs.String("cursor", "", "the next page, as printed at the end of the previous one")
	addr := fs.String("addr", apiEnv("LASTMILE_ADDR", "http://127.0.0.1:8080"), "query API `URL`; $LASTMILE_ADDR sets the default")
	token := fs.String("token", "", "bearer token (default $LASTMILE_QUERY_TOKEN, else DATA/query-token)")
	dataDir := fs.String("data", "data", "`DIR` whose query-token file to use when no token is given")
	asJSON := fs.Bool("json", false, "print the API's JSON answer as is")
	utc := fs.Bool("utc", false, "print times in UTC instead of the local time zone")
	verbose := fs.Bool("verbose", false, "print every server and stream event instead of one line per component that was fine")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lastmile trace: unexpected arguments %q\n", fs.Args())
		return 2
	}
	q := url.Values{}
	for param, v := range ids {
		if *v != "" {
			q.Set(param, *v)
		}
	}
	if len(q) != 1 {
		fmt.Fprintln(stderr, "lastmile trace: give exactly one of --device, --user, --session, --room, --stream")
		return 2
	}
	for param, v := range map[string]string{"app_id": *app, "since": *since, "from": *from, "to": *to, "cursor": *cursor} {
		if v != "" {
			q.Set(param, v)
		}
	}
	if *limit > 0 {
		q.Set("limit", fmt.Sprint(*limit))
	}
	var res trace.Response
	if done, code := getAnswer("trace", *addr, *token, *dataDir, "/api/v1/trace", q, *asJSON, stdout, stderr, "a trace", &res); done {
		return code
	}
	loc := time.Local
	if *utc {
		loc = time.UTC
	}
	printTrace(stdout, &res, loc, *verbose)
	if res.NextCursor != "" {
		var again []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "cursor" && f.Name != "token" {
				again = append(again, "--"+f.Name+"="+f.Value.String())
			}
		})
		fmt.Fprintf(stdout, "\nmore sessions: lastmile trace %s --cursor=%s\n", strings.Join(again, " "), res.NextCursor)
	}
	return 0
}

// printTrace renders the answer as a timeline.
func printTrace(w io.Writer, res *trace.Response, loc *time.Location, verbose bool) {
	q := res.Query
	fmt.Fprintf(w, "%s %s: %d session(s), %s → %s\n", q.By, q.ID, len(res.Sessions),
		q.From.In(loc).Format("2006-01-02 15:04:05"), q.To.In(loc).Format("2006-01-02 15:04:05 MST"))
	if res.Truncated {
		fmt.Fprintln(w, "  (truncated: too many events for one answer; narrow the window or --limit)")
	}
	for i := range res.Sessions {
		printTraceSession(w, &res.Sessions[i], loc, verbose)
	}
	if len(res.Rejected) > 0 {
		fmt.Fprintf(w, "\nrejected events (%d%s): refused by the pipeline, not stored\n", len(res.Rejected), map[bool]string{true: ", the latest", false: ""}[res.RejectedTruncated])
		for _, r := range res.Rejected {
			field := ""
			if r.Field != "" {
				field = " field=" + r.Field
			}
			fmt.Fprintf(w, "  %s  %-9s %-16s %s%s: %s\n", r.ReceivedAt.In(loc).Format("2006-01-02 15:04:05.000"), r.Stage, r.Code, traceDash(r.LogType), field, r.Reason)
			fmt.Fprintf(w, "      raw: %s\n", traceClip(r.Raw, 200))
		}
	}
}

func printTraceSession(w io.Writer, s *trace.Session, loc *time.Location, verbose bool) {
	sum := &s.Summary
	fmt.Fprintf(w, "\n== %s session %s   %s → %s (%s)\n", s.Kind, s.SessionID,
		s.Start.In(loc).Format("2006-01-02 15:04:05.000"), s.End.In(loc).Format("15:04:05.000"), s.End.Sub(s.Start).Round(time.Millisecond))
	var ids []string
	for _, kv := range [][2]string{{"app", s.AppID}, {"device", s.DeviceID}, {"user", s.UserID}, {"room", s.RoomID}, {"stream", s.StreamID}} {
		if kv[1] != "" {
			ids = append(ids, kv[0]+" "+kv[1])
		}
	}
	printDiagnosis(w, sum.Diagnosis)
	fmt.Fprintf(w, "   %s\n", strings.Join(ids, "  "))
	var where []string
	for _, kv := range [][2]string{{"edge", sum.NodeID}, {"cdn", sum.CDN}, {"region", sum.Region}, {"rendition", sum.Rendition}, {"protocol", sum.Protocol}} {
		if kv[1] != "" {
			where = append(where, kv[0]+" "+kv[1])
		}
	}
	if len(where) > 0 {
		fmt.Fprintf(w, "   %s\n", strings.Join(where, "  "))
	}
	if s.Kind == "play" {
		switch {
		case sum.ReachedFirstFrame:
			fmt.Fprintf(w, "   first frame %s%s\n", traceMs(sum.FirstFrameTotalMs), tracePhases(sum))
		case sum.FirstFrameBlocked != "":
			fmt.Fprintf(w, "   NO first frame: blocked at %s\n", sum.FirstFrameBlocked)
		default:
			fmt.Fprintln(w, "   no first frame")
		}
	}
	var line []string
	if sum.StopCode != nil {
		st := fmt.Sprintf("stop code %d", *sum.StopCode)
		if sum.StopReason != "" {
			st += " (" + sum.StopReason + ")"
		}
		line = append(line, st)
	} else {
		line = append(line, "no stop event")
	}
	if s.Kind == "play" {
		st := fmt.Sprintf("stalls %d (%s ms)", sum.StallCount, trace.Thousands(sum.StallTotalMs))
		if sum.ReportedStallCount != nil && *sum.ReportedStallCount != sum.StallCount {
			st += fmt.Sprintf(", play_stop says %d", *sum.ReportedStallCount)
		}
		line = append(line, st)
		if sum.RenderStallCount > 0 {
			line = append(line, fmt.Sprintf("render stalls %d (%s ms)", sum.RenderStallCount, trace.Thousands(sum.RenderStallTotalMs)))
		}
		if sum.BackToSource != nil {
			if *sum.BackToSource {
				line = append(line, "back-to-source "+traceMs(sum.BackToSourceMs))
			} else {
				line = append(line, "edge cache hit")
			}
		}
	}
	line = append(line, fmt.Sprintf("played %s", (time.Duration(sum.PlayDurationMs)*time.Millisecond).Round(time.Millisecond)))
	fmt.Fprintf(w, "   %s\n", strings.Join(line, " · "))

	type row struct {
		kind string
		ev   *trace.Event
	}
	var rows []row
	for _, l := range []struct {
		kind string
		evs  []trace.Event
	}{{"client", s.Events}, {"server", s.ServerEvents}, {"stream", s.StreamEvents}} {
		for i := range l.evs {
			rows = append(rows, row{l.kind, &l.evs[i]})
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.ev.TS.Compare(b.ev.TS) })
	if !verbose {
		// Fine components fold into a line each; abnormal events stay.
		best := trace.BestPushFPS(s)
		var ctx []*trace.Event
		for _, r := range rows {
			if r.kind != "client" {
				ctx = append(ctx, r.ev)
			}
		}
		for _, l := range foldContext(ctx, best) {
			fmt.Fprintf(w, "   %s\n", l)
		}
		rows = slices.DeleteFunc(rows, func(r row) bool {
			return r.kind != "client" && trace.DefaultDiagnosisPlan.Abnormal(r.ev, best) == ""
		})
	}
	same := map[string]string{"device_id": s.DeviceID, "user_id": s.UserID, "session_id": s.SessionID, "room_id": s.RoomID, "stream_id": s.StreamID}
	// A client's dimensions are printed on its first event and then only
	// when they change (a network switch, a new edge): a line shows news.
	last := map[string]string{}
	for _, r := range rows {
		if r.ev.LogType == "request" && !verbose {
			fmt.Fprintf(w, "     %s  %-6s %-14s %s\n", r.ev.TS.In(loc).Format("15:04:05.000"), r.kind, r.ev.LogType, requestLine(r.ev))
			continue
		}
		var kv []string
		for _, f := range r.ev.Fields {
			v := r.ev.Str(f.Name)
			if f.Name == "event_id" || (same[f.Name] != "" && same[f.Name] == v) {
				continue // the session's own ids say nothing new
			}
			if r.kind == "client" && traceDims[f.Name] {
				if last[f.Name] == v {
					continue
				}
				last[f.Name] = v
			}
			kv = append(kv, f.Name+"="+traceRound(f.Value, v))
		}
		mark := "  "
		if r.kind != "client" {
			mark = "│ "
		}
		fmt.Fprintf(w, "   %s%s  %-6s %-14s %s\n", mark, r.ev.TS.In(loc).Format("15:04:05.000"), r.kind, r.ev.LogType, strings.Join(kv, " "))
	}
}

// requestLine is a player's request (CMCD e=rr) in a few words: its
// status, times, object type and the path of its URL; a play makes one
// every segment, so its dimensions and CMCD figures wait for --verbose.
func requestLine(e *trace.Event) string {
	var kv []string
	for _, f := range []struct{ name, label, unit string }{{"http_status", "status", ""}, {"ttfb_ms", "ttfb", "ms"}, {"ttlb_ms", "ttlb", "ms"}} {
		if v, ok := e.Int(f.name); ok {
			kv = append(kv, f.label+"="+trace.Thousands(v)+f.unit)
		}
	}
	if ot := e.Str("cmcd_ot"); ot != "" {
		kv = append(kv, "ot="+ot)
	}
	path := e.Str("url")
	if i := strings.Index(path, "://"); i >= 0 {
		if j := strings.IndexByte(path[i+3:], '/'); j >= 0 {
			path = path[i+3+j:]
		}
	}
	return strings.Join(append(kv, traceClip(path, 120)), " ")
}

// traceDims are the client fields that usually stay the same through a
// session.
var traceDims = map[string]bool{"region": true, "isp": true, "cdn": true, "node_id": true, "protocol": true, "rendition": true,
	"codec": true, "app_version": true, "os": true, "network": true, "line": true}

func tracePhases(sum *trace.Summary) string {
	var p []string
	for _, ph := range []struct {
		name string
		v    *int64
	}{{"dns", sum.DNSMs}, {"tcp_connect", sum.TCPConnectMs}, {"tcp_first_packet", sum.TCPFirstPacketMs},
		{"video_first_packet", sum.VideoFirstPacketMs}, {"first_decode", sum.FirstDecodeMs}, {"first_render", sum.FirstRenderMs}} {
		if ph.v != nil {
			p = append(p, ph.name+" "+trace.Thousands(*ph.v))
		}
	}
	if len(p) == 0 {
		return ""
	}
	return " (" + strings.Join(p, " · ") + ")"
}

func traceMs(v *int64) string {
	if v == nil {
		return "-"
	}
	return trace.Thousands(*v) + " ms"
}

// traceRound prints a fractional number rounded (bitrate_kbps=235, fps=2.6);
// other values as they are.
func traceRound(raw []byte, v string) string {
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil && strings.ContainsAny(string(raw), ".eE") {
		return trace.Round1(f)
	}
	return v
}

func traceDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func traceClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
