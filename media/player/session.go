package player

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/scheduler"
)

// Timeline limits: a jump of the stream's clock beyond these is a new
// timeline (publisher restart, another edge's clock, PTS wrap), not a gap
// to wait through.
const (
	maxBackJumpMs    = 1000
	maxForwardJumpMs = 10_000
	// defaultFrameMs is the frame duration assumed until two frames came.
	defaultFrameMs = 40
	maxReasonLen   = 256
)

// phases are the first_frame phases in order (schemas.FirstFramePhases).
var phases = [...]string{"dns", "tcp_connect", "tcp_first_packet", "video_first_packet", "first_decode", "first_render"}

func phaseIndex(p string) int {
	for i, q := range phases {
		if q == p {
			return i
		}
	}
	return -1
}

// Play runs one play session to its end and returns its summary. It
// emits the session's events to cfg.Reporter as it goes. It returns when
// the session ends: after cfg.Duration of watching, when the stream ends,
// on a failure no line switch could fix, or when ctx is done (a viewer
// leaving: code 0). It never panics.
func Play(ctx context.Context, cfg Config) (res Result) {
	s := newSession(ctx, cfg.withDefaults())
	defer func() {
		if r := recover(); r != nil {
			res = s.crashed(r)
		}
	}()
	s.run()
	return s.result()
}

type session struct {
	cfg      Config
	ctx      context.Context
	now      func() time.Time
	rng      *rand.Rand
	protocol string

	sd            *scheduler.StreamData
	rend          *scheduler.RenditionLines
	scheduleMs    int64
	width, height int
	codec         string

	bytes    atomic.Int64 // every byte read from edges
	wg       sync.WaitGroup
	att      *attempt
	attempts int
	switches int

	// The play: from the play_start of the attempt that reached (or is
	// trying to reach) the first frame.
	firstFrame   bool
	firstFrameAt time.Time
	playStart    time.Time
	playBytes0   int64
	ffMs         map[string]int64

	pb          playback
	queue       []queued // frames downloaded, not yet shown
	shown       int      // frames shown or dropped: the next Frame.Index
	frameMs     int64
	off         int64 // media ts = stream ts + off
	anchor      int64 // min over frames of (arrival ms − media ts); see latency
	anchorSet   bool
	stampOff    int64 // capture ms − media ts of the latest stamped frame; see latency
	stampSet    bool
	lastMediaAt time.Time

	stallOpen  bool
	stallStart time.Time
	stallCause string
	stallBuf   int64
	stalls     int
	stallMs    int64

	rs            renderStall
	renderStalls  int
	renderStallMs int64
	lastRSMedia   int64

	hbLast, hbNext time.Time
	hbBytes        int64
	hbFrames       int
	hbStalls       int
	hbStallMs      int64
	hbRS           int   // render stalls reported by heartbeats
	hbRSMs         int64 // and their time

	draining    bool
	drainCode   int
	drainReason string

	reasons    []string
	httpStatus int
	done       bool
	res        Result
}

type queued struct {
	ts  int64
	key bool
}

type renderStall struct {
	active     bool
	start, end time.Time
	dropped    int
	buf        int64
}

// attempt is one connection to one line: a play_start.
type attempt struct {
	n         int
	line      string
	l         scheduler.Line
	url       string
	start     time.Time
	bytes0    int64
	cancel    context.CancelFunc
	msgs      chan msg
	dead      bool
	reconnect bool // started after the play's first frame

	phase  int // index in phases of the phase under way
	marks  [len(phases)]time.Time
	ip     string
	cached *bool

	gotPrimary, haveConfig, keyed bool
	decodeAt, renderAt            time.Time
	lastRaw                       int64
}

func newSession(ctx context.Context, cfg Config) *session {
	h := fnv.New64a()
	h.Write([]byte(cfg.SessionID))
	seed := h.Sum64()
	s := &session{
		cfg: cfg, ctx: ctx, now: cfg.Clock,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		protocol: ProtocolFLV,
		frameMs:  defaultFrameMs,
	}
	if cfg.Format == FormatHLS {
		s.protocol = ProtocolHLS
	}
	return s
}

func (s *session) run() {
	defer s.cleanup()
	switch s.cfg.Format {
	case FormatFLV, FormatHLS:
	default:
		s.startFailed(CodeConfig, fmt.Sprintf("format %q: want %s or %s", s.cfg.Format, FormatFLV, FormatHLS))
		return
	}
	t0 := s.now()
	sctx, cancel := context.WithTimeout(s.ctx, s.cfg.FirstFrameTimeout)
	sd, err := fetchSchedule(sctx, &s.cfg)
	cancel()
	s.scheduleMs = msOf(s.now().Sub(t0))
	var rend *scheduler.RenditionLines
	if err == nil {
		rend, err = pickRendition(sd, s.cfg.Rendition)
	}
	if err == nil && rend.Main.URLs[s.cfg.Format] == "" && rend.Backup.URLs[s.cfg.Format] == "" {
		err = fmt.Errorf("schedule: format %s not offered for rendition %s", s.cfg.Format, rend.Name)
	}
	if err != nil {
		if s.ctx.Err() != nil {
			s.startFailed(CodeOK, "user_exit")
		} else {
			s.startFailed(CodeSchedule, err.Error())
		}
		return
	}
	s.sd, s.rend = sd, rend
	s.width, s.height = rend.Width, rend.Height
	s.startAttempt(LineMain, false)
	s.loop()
}

// startFailed ends a session that failed before any connection: a
// play_start and a play_stop, blocked at "dns", the first phase (resolving
// where to play is what failed).
func (s *session) startFailed(code int, reason string) {
	now := s.now()
	s.attempts++
	s.emit("play_start", now, report.Event{"attempt": 0, "schedule_ms": s.scheduleMs})
	s.emit("play_stop", now, report.Event{
		"code": code, "first_frame_blocked": phases[0], "play_duration_ms": 0,
		"stall_count": 0, "stall_total_ms": 0, "bytes": 0, "reason": truncate(reason),
	})
	s.res.Code, s.res.Blocked, s.res.Reason = code, phases[0], reason
	s.done = true
}

func (s *session) startAttempt(line string, reconnect bool) {
	l := s.rend.Main
	if line == LineBackup {
		l = s.rend.Backup
	}
	u := l.URLs[s.cfg.Format]
	ctx, cancel := context.WithCancel(s.ctx)
	ch := make(chan msg, 64)
	a := &attempt{
		n: s.attempts, line: line, l: l, url: u, start: s.now(), bytes0: s.bytes.Load(),
		cancel: cancel, msgs: ch, reconnect: reconnect,
	}
	s.attempts++
	s.att = a
	if !reconnect {
		// A new try at the first frame: nothing of a failed one carries over.
		s.playStart, s.playBytes0 = a.start, a.bytes0
		s.pb, s.queue, s.anchorSet, s.reasons = playback{}, nil, false, nil
	}
	fields := report.Event{"url": u, "line": line, "attempt": a.n}
	if a.n == 0 {
		fields["schedule_ms"] = s.scheduleMs // once: the scheduler was asked once
	}
	s.emit("play_start", a.start, fields)
	c := &conn{
		url: u, format: s.cfg.Format, sessionID: s.cfg.SessionID, streamID: s.sd.StreamID,
		resolver: s.cfg.Resolver, now: s.now, bytes: &s.bytes, out: ch, maxKbps: s.cfg.MaxKbps,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.run(ctx)
	}()
}

func otherLine(l string) string {
	if l == LineMain {
		return LineBackup
	}
	return LineMain
}

func (s *session) cleanup() {
	if s.att != nil {
		s.att.cancel()
	}
	s.wg.Wait()
}

func (s *session) loop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !s.done {
		s.tick(s.now())
		if s.done {
			return
		}
		wait := time.Hour
		if next, ok := s.nextDeadline(); ok {
			wait = max(0, next.Sub(s.now()))
		}
		timer.Reset(wait)
		var ch <-chan msg
		if s.att != nil && !s.att.dead {
			ch = s.att.msgs
		}
		select {
		case <-s.ctx.Done():
			s.userExit()
		case m := <-ch:
			s.handle(m)
		case <-timer.C:
		}
	}
}

// nextDeadline is the next time tick has something to do.
func (s *session) nextDeadline() (time.Time, bool) {
	var next time.Time
	add := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if a := s.att; a != nil && !a.dead {
		switch {
		case !s.firstFrame || !a.keyed:
			add(a.start.Add(s.cfg.FirstFrameTimeout))
		default:
			add(s.lastMediaAt.Add(s.cfg.FirstFrameTimeout))
		}
		if !s.firstFrame {
			switch phases[a.phase] {
			case "first_decode":
				add(a.decodeAt)
			case "first_render":
				add(a.renderAt)
			}
		}
	}
	if s.firstFrame {
		if s.pb.running() {
			add(s.pb.dryAt())
		}
		if s.rs.active {
			add(s.rs.end)
		}
		add(s.hbNext)
		if s.cfg.Duration > 0 {
			add(s.firstFrameAt.Add(s.cfg.Duration))
		}
	}
	return next, !next.IsZero()
}

// tick does what is due at now.
func (s *session) tick(now time.Time) {
	if a := s.att; a != nil && !a.dead {
		switch {
		case !s.firstFrame && !now.Before(a.start.Add(s.cfg.FirstFrameTimeout)):
			s.attemptFailed(CodeFirstFrameTimeout, fmt.Sprintf("no first frame within %v (stuck in %s)", s.cfg.FirstFrameTimeout, phases[a.phase]))
		case s.firstFrame && !a.keyed && !now.Before(a.start.Add(s.cfg.FirstFrameTimeout)):
			s.attemptFailed(CodeFirstFrameTimeout, fmt.Sprintf("reconnect: no media within %v (stuck in %s)", s.cfg.FirstFrameTimeout, phases[a.phase]))
		case s.firstFrame && a.keyed && !now.Before(s.lastMediaAt.Add(s.cfg.FirstFrameTimeout)):
			s.attemptFailed(CodeReadError, fmt.Sprintf("no media for %v", s.cfg.FirstFrameTimeout))
		}
		if s.done {
			return
		}
	}
	if a := s.att; a != nil && !a.dead && !s.firstFrame && !a.decodeAt.IsZero() {
		if phases[a.phase] == "first_decode" && !now.Before(a.decodeAt) {
			a.mark("first_decode", a.decodeAt)
			a.renderAt = a.decodeAt.Add(s.jitter(s.cfg.Decode.Render))
		}
		if phases[a.phase] == "first_render" && !now.Before(a.renderAt) {
			s.onFirstFrame(a, now)
		}
	}
	if !s.firstFrame {
		return
	}
	s.advance(now)
	if s.done {
		return
	}
	if !now.Before(s.hbNext) {
		s.heartbeat(now)
		for !s.hbNext.After(now) {
			s.hbNext = s.hbNext.Add(s.cfg.HeartbeatEvery)
		}
	}
	if s.cfg.Duration > 0 && !now.Before(s.firstFrameAt.Add(s.cfg.Duration)) {
		s.stopPlay(CodeOK, "watched for "+s.cfg.Duration.String())
	}
}

// mark records the end of phase p at t; marks only move forward.
func (a *attempt) mark(p string, t time.Time) {
	i := phaseIndex(p)
	if i < a.phase || i < 0 {
		return
	}
	for j := a.phase; j <= i; j++ {
		a.marks[j] = t // a skipped phase took no time
	}
	if i+1 < len(phases) {
		a.phase = i + 1
	} else {
		a.phase = i
	}
}

func (s *session) handle(m msg) {
	a := s.att
	switch m.kind {
	case msgMark:
		if m.phase == "dns" {
			a.ip = m.ip
		}
		if !s.firstFrame || a.reconnect {
			a.mark(m.phase, m.at)
		}
	case msgResponse:
		a.cached = m.cached
		s.httpStatus = m.status
	case msgFrame:
		s.onFrame(m.f)
	case msgEnd:
		s.connEnded(m.code, m.err)
	}
}

func (s *session) connEnded(code int, err error) {
	if err == nil {
		err = errors.New("connection ended")
	}
	if !errors.Is(err, io.EOF) {
		s.attemptFailed(code, err.Error())
		return
	}
	switch {
	case !s.firstFrame:
		s.attemptFailed(CodeStreamEnded, "edge ended the stream before the first frame")
	case s.cfg.Duration == 0:
		// Watching until the stream ends: it did. Play out the buffer.
		s.att.dead = true
		s.drain(CodeOK, "stream ended")
	default:
		s.attemptFailed(CodeStreamEnded, "stream ended before the watch duration")
	}
}

// attemptFailed ends the current attempt. Before the first frame it is a
// play_stop of its own and the next attempt tries the other line; after
// it, the play reconnects on the other line, or stops when no switch is
// left.
func (s *session) attemptFailed(code int, reason string) {
	a := s.att
	a.dead = true
	a.cancel()
	s.reasons = append(s.reasons, a.line+": "+reason)
	canSwitch := s.switches < s.cfg.MaxLineSwitches && s.ctx.Err() == nil &&
		code != CodeDecode && code != CodeInternal // another line does not fix the decoder
	if !s.firstFrame {
		now := s.now()
		blocked := phases[a.phase]
		s.emit("play_stop", now, report.Event{
			"code": code, "first_frame_blocked": blocked,
			"play_duration_ms": msOf(now.Sub(a.start)), "stall_count": 0, "stall_total_ms": 0,
			"bytes": s.bytes.Load() - a.bytes0, "reason": truncate(reason),
			"will_retry": canSwitch, // a retry continues the view
		})
		s.res.Code, s.res.Blocked, s.res.Reason = code, blocked, reason
		if canSwitch {
			s.switches++
			s.startAttempt(otherLine(a.line), false)
			return
		}
		s.done = true
		return
	}
	if canSwitch {
		s.switches++
		s.flushForReconnect(s.now())
		s.startAttempt(otherLine(a.line), true)
		return
	}
	s.stopPlay(code, strings.Join(s.reasons, "; "))
}

// flushForReconnect drops the buffer, as a player reopening the stream
// does, and stalls until the new line's media reaches the resume
// threshold: the reconnect is a stall (cause "reconnect") from now.
func (s *session) flushForReconnect(now time.Time) {
	if s.pb.running() {
		until := now
		if dry := s.pb.dryAt(); dry.Before(now) {
			until = dry
		}
		s.showFrames(until)
	}
	buf := s.pb.buffer(now)
	s.queue = nil
	s.pb.drop(s.pb.position(now), s.frameMs)
	if !s.pb.started {
		return // still in startup after the first frame: not a stall
	}
	if !s.stallOpen {
		s.pb.stall(now)
		s.stallOpen, s.stallStart, s.stallBuf = true, now, buf
		s.stalls++
	}
	s.stallCause = "reconnect"
}

// drain plays out the buffer, then stops with code.
func (s *session) drain(code int, reason string) {
	s.draining, s.drainCode, s.drainReason = true, code, reason
	now := s.now()
	if !s.pb.started {
		s.pb.run(now)
	}
	if s.pb.stalled || s.pb.buffer(now) == 0 {
		s.stopPlay(code, reason)
	}
}

func (s *session) userExit() {
	if !s.firstFrame {
		a := s.att
		now := s.now()
		a.dead = true
		a.cancel()
		s.emit("play_stop", now, report.Event{
			"code": CodeOK, "first_frame_blocked": phases[a.phase],
			"play_duration_ms": msOf(now.Sub(a.start)), "stall_count": 0, "stall_total_ms": 0,
			"bytes": s.bytes.Load() - a.bytes0, "reason": "user_exit",
		})
		s.res.Code, s.res.Blocked, s.res.Reason = CodeOK, phases[a.phase], "user_exit"
		s.done = true
		return
	}
	s.stopPlay(CodeOK, "user_exit")
}

func (s *session) onFrame(f frame) {
	a := s.att
	if f.kind == kindMeta {
		if s.width == 0 || s.height == 0 {
			s.width, s.height = f.width, f.height
		}
		return
	}
	// The primary track drives first frame and buffer: video, or audio for
	// an audio-only rendition.
	if (f.kind == kindVideo) == s.rend.AudioOnly {
		return
	}
	if f.codec != "" {
		s.codec = f.codec
	}
	if !a.gotPrimary {
		a.gotPrimary = true
		if !s.firstFrame {
			a.mark("video_first_packet", f.at)
		}
	}
	if f.config {
		a.haveConfig = true
	}
	if !f.picture {
		return
	}
	now := s.now()
	if !a.keyed {
		if !f.key || (f.needConfig && !a.haveConfig) {
			return // a decoder cannot start here
		}
		a.keyed = true
		s.startTimeline(a, f.ts)
		if !s.firstFrame {
			fault := s.fault(Frame{Index: 0, Time: durMs(f.ts + s.off), Keyframe: true, Width: s.width, Height: s.height})
			if fault.Fail {
				s.attemptFailed(CodeDecode, "decoder failed on the first keyframe")
				return
			}
			a.decodeAt = f.at.Add(s.decodeCost())
		}
	}
	ts := s.mapTs(a, f.ts)
	s.lastMediaAt = now
	if d := f.at.UnixMilli() - ts; !s.anchorSet || d < s.anchor {
		s.anchor, s.anchorSet = d, true
	}
	if f.capture > 0 {
		s.stampOff, s.stampSet = f.capture-ts, true
	}
	if s.pb.has && ts <= s.pb.newest {
		return // not after what we have: nothing to play
	}
	if s.pb.has {
		if d := ts - s.pb.newest; d > 0 && d < 1000 {
			s.frameMs = d
		}
	} else {
		s.pb.pos = ts // the first keyframe is where playback starts
	}
	s.pb.add(ts, s.frameMs)
	s.queue = append(s.queue, queued{ts: ts, key: f.key})
	s.maybeRun(now)
}

// startTimeline maps an attempt's stream clock onto the play's media time
// at its first keyframe. The first attempt of a play keeps the stream's
// clock. A reconnect continues right after what was played, whatever the
// new edge's clock says (edges may restart timestamps per viewer).
func (s *session) startTimeline(a *attempt, raw int64) {
	a.lastRaw = raw
	if !s.firstFrame && !s.pb.has {
		s.off = 0
		return
	}
	s.rebase(raw)
}

func (s *session) rebase(raw int64) {
	// The new clock's frame comes right after the end of the buffer.
	s.off = s.pb.end - raw
	s.anchorSet, s.stampSet = false, false // the latency anchors belonged to the old clock
}

// mapTs maps a stream timestamp to media time, rebasing on a jump.
func (s *session) mapTs(a *attempt, raw int64) int64 {
	if raw < a.lastRaw-maxBackJumpMs || raw > a.lastRaw+maxForwardJumpMs {
		s.rebase(raw)
	}
	a.lastRaw = raw
	return raw + s.off
}

// maybeRun starts playback once the start threshold is buffered, and
// resumes it after a stall once the resume threshold is.
func (s *session) maybeRun(now time.Time) {
	if !s.firstFrame {
		return
	}
	buf := s.pb.end - s.pb.pos
	switch {
	case !s.pb.started && buf >= msOf(s.cfg.Buffer.Start):
		s.pb.run(now)
	case s.pb.stalled && buf >= msOf(s.cfg.Buffer.Resume):
		s.endStall(now)
		s.pb.run(now)
	}
}

func (s *session) onFirstFrame(a *attempt, now time.Time) {
	at := a.renderAt
	a.mark("first_render", at)
	s.firstFrame, s.firstFrameAt = true, at
	// Phases telescope from the attempt's start, so they add up to total_ms
	// exactly.
	s.ffMs = make(map[string]int64, len(phases)+1)
	fields := report.Event{}
	prev := int64(0)
	for i, p := range phases {
		off := max(prev, msOf(a.marks[i].Sub(a.start)))
		s.ffMs[p] = off - prev
		fields[p+"_ms"] = off - prev
		prev = off
	}
	s.ffMs["total"] = prev
	fields["total_ms"] = prev
	fields["server_ip"] = a.ip
	if a.cached != nil {
		fields["edge_cached"] = *a.cached
	}
	s.emit("first_frame", at, fields)

	s.hbLast, s.hbNext = at, at.Add(s.cfg.HeartbeatEvery)
	s.hbBytes = s.bytes.Load()
	if len(s.queue) > 0 { // the keyframe just rendered
		s.queue = s.queue[1:]
		s.shown, s.hbFrames = 1, 1
	}
	s.lastRSMedia = s.pb.pos
	if s.lastMediaAt.Before(now) {
		s.lastMediaAt = now // the no-media timeout counts from playback, not from the download
	}
	s.maybeRun(now)
}

// advance moves playback to now: frames due are shown, a dry buffer
// stalls, a finished render stall is reported.
func (s *session) advance(now time.Time) {
	if s.pb.running() {
		dry := s.pb.dryAt()
		until := now
		if dry.Before(now) {
			until = dry
		}
		s.showFrames(until)
		if s.done {
			return
		}
		if !now.Before(dry) {
			if s.draining {
				s.stopPlay(s.drainCode, s.drainReason)
				return
			}
			s.pb.stall(dry)
			// The playhead reached the end of the buffer: nothing was left.
			s.stallOpen, s.stallStart, s.stallBuf = true, dry, 0
			s.stalls++
			s.stallCause = "network"
			if a := s.att; a == nil || a.dead || a.reconnect && !a.keyed {
				s.stallCause = "reconnect"
			}
		}
	}
	s.endRenderStall(now, false)
}

// showFrames shows (or drops, during a render stall) the frames due by
// until, asking the decode model about each.
func (s *session) showFrames(until time.Time) {
	pos := s.pb.position(until)
	for len(s.queue) > 0 && s.queue[0].ts <= pos {
		q := s.queue[0]
		s.queue = s.queue[1:]
		at := s.pb.displayAt(q.ts)
		idx := s.shown
		s.shown++
		fault := s.fault(Frame{Index: idx, Time: durMs(q.ts), Keyframe: q.key, Width: s.width, Height: s.height})
		if fault.Fail {
			s.stopPlay(CodeDecode, fmt.Sprintf("decoder failed on frame %d", idx))
			return
		}
		s.endRenderStall(at, false)
		if s.rs.active {
			s.rs.dropped++
			continue
		}
		if fault.Stall > 0 {
			s.rs = renderStall{active: true, start: at, end: at.Add(fault.Stall), buf: s.pb.buffer(at)}
		}
		s.hbFrames++
	}
}

// endRenderStall reports a render stall that is over at now (or cut short
// by the end of the play, with force).
func (s *session) endRenderStall(now time.Time, force bool) {
	if !s.rs.active {
		return
	}
	end := s.rs.end
	if now.Before(end) {
		if !force {
			return
		}
		end = now
	}
	if end.Sub(s.rs.start) < time.Millisecond {
		// Cut to nothing by the end of the play: a stall under 1 ms would
		// report duration_ms 0.
		s.rs = renderStall{}
		return
	}
	d := msOf(end.Sub(s.rs.start))
	s.emit("render_stall", s.rs.start, report.Event{
		"duration_ms": d, "dropped_frames": s.rs.dropped,
		"cause": "decoder", "buffer_ms_before": s.rs.buf,
	})
	s.renderStalls++
	s.renderStallMs += d
	s.rs = renderStall{}
}

func (s *session) endStall(now time.Time) {
	if !s.stallOpen {
		return
	}
	d := msOf(now.Sub(s.stallStart))
	s.stallMs += d
	s.stallOpen = false
	s.emit("stall", s.stallStart, report.Event{
		"duration_ms": d, "buffer_ms_before": s.stallBuf, "cause": s.stallCause,
	})
}

// stalledMs is the stalled time of the play up to now.
func (s *session) stalledMs(now time.Time) int64 {
	if s.stallOpen {
		return s.stallMs + msOf(now.Sub(s.stallStart))
	}
	return s.stallMs
}

// latency is glass-to-glass latency at now (see the package doc), -1 when
// unknown: now minus the capture time of the media time showing, from the
// latest capture stamp, or estimated from the live-edge anchor until a
// stamp was seen.
func (s *session) latency(now time.Time) int64 {
	switch {
	case !s.pb.has:
		return -1
	case s.stampSet:
		return max(0, now.UnixMilli()-(s.pb.position(now)+s.stampOff))
	case s.anchorSet:
		return max(0, now.UnixMilli()-(s.pb.position(now)+s.anchor))
	}
	return -1
}

func (s *session) heartbeat(now time.Time) {
	interval := msOf(now.Sub(s.hbLast))
	if interval <= 0 {
		return
	}
	bytes := s.bytes.Load() - s.hbBytes
	stalled := s.stalledMs(now)
	state := "playing"
	if s.stallOpen {
		state = "stalled"
	}
	fields := report.Event{
		"interval_ms":  interval,
		"bitrate_kbps": round1(float64(bytes) * 8 / float64(interval)),
		"fps":          round1(float64(s.hbFrames) * 1000 / float64(interval)),
		"bytes":        bytes,
		"buffer_ms":    s.pb.buffer(now),
		"stall_count":  s.stalls - s.hbStalls,
		"stall_ms":     stalled - s.hbStallMs,
		"state":        state,
		// Render stalls are counted, whole, in the heartbeat after they end.
		"render_stall_count": s.renderStalls - s.hbRS,
		"render_stall_ms":    s.renderStallMs - s.hbRSMs,
	}
	if l := s.latency(now); l >= 0 {
		fields["latency_ms"] = l
	}
	s.emit("heartbeat", now, fields)
	s.hbLast, s.hbBytes, s.hbFrames, s.hbStalls, s.hbStallMs = now, s.bytes.Load(), 0, s.stalls, stalled
	s.hbRS, s.hbRSMs = s.renderStalls, s.renderStallMs
}

// stopPlay ends a play that reached the first frame: a last heartbeat for
// the partial interval (so viewing and stall time add up), the stall or
// render stall under way, then play_stop.
func (s *session) stopPlay(code int, reason string) {
	if s.done {
		return
	}
	now := s.now()
	if s.pb.running() {
		until := now
		if dry := s.pb.dryAt(); dry.Before(now) {
			until = dry
		}
		s.showFrames(until)
		if s.done {
			return
		}
	}
	s.endRenderStall(now, true) // first, so that the last heartbeat has it
	s.heartbeat(now)
	s.endStall(now)
	fields := report.Event{
		"code": code, "first_frame_blocked": "",
		"play_duration_ms": msOf(now.Sub(s.playStart)),
		"stall_count":      s.stalls, "stall_total_ms": s.stallMs,
		"render_stall_count": s.renderStalls, "render_stall_total_ms": s.renderStallMs,
		"bytes": s.bytes.Load() - s.playBytes0, "reason": truncate(reason),
	}
	if l := s.latency(now); l >= 0 {
		fields["latency_ms"] = l
	}
	s.emit("play_stop", now, fields)
	s.res.Code, s.res.Blocked, s.res.Reason = code, "", reason
	s.done = true
	if s.att != nil {
		s.att.dead = true
		s.att.cancel()
	}
}

func (s *session) result() Result {
	r := s.res
	r.SessionID = s.cfg.SessionID
	r.FirstFrame = s.firstFrame
	r.FirstFrameMs = s.ffMs
	r.Stalls, r.StallMs, r.RenderStalls = s.stalls, s.stallMs, s.renderStalls
	r.HTTPStatus = s.httpStatus
	r.Bytes = s.bytes.Load()
	r.Attempts = s.attempts
	if a := s.att; a != nil {
		r.Line, r.Node, r.CDN = a.line, a.l.Node, a.l.CDN
	}
	return r
}

// crashed turns a panic (a bug, or a panicking Hook) into a failed session.
func (s *session) crashed(r any) Result {
	reason := fmt.Sprintf("internal error: %v", r)
	func() {
		defer func() { _ = recover() }()
		s.cleanup()
		if !s.done {
			s.emit("play_stop", s.now(), report.Event{"code": CodeInternal, "first_frame_blocked": "", "reason": truncate(reason)})
		}
	}()
	res := s.result()
	res.Code, res.Reason = CodeInternal, reason
	return res
}
