package player

import (
	"math"
	"net"
	"time"

	"github.com/google/uuid"

	"github.com/lastmile-qoe/lastmile/media/report"
)

// Reporter receives the player's events, in order, from one goroutine at a
// time. *report.Client satisfies it.
type Reporter interface {
	Log(report.Event)
}

// Formats and the protocol dimension they report.
const (
	FormatFLV = "flv"
	FormatHLS = "hls"

	ProtocolFLV = "http-flv"
	ProtocolHLS = "hls"
)

// Lines of a rendition (play_start.line, Result.Line).
const (
	LineMain   = "main"
	LineBackup = "backup"
)

// Config of one play session. Zero values take the defaults noted.
type Config struct {
	// SchedulerURL is the scheduler's base URL (http://HOST:PORT); the
	// player asks it GET /v1/schedule. A URL whose path already ends in
	// /v1/schedule is used as is.
	SchedulerURL string
	Room         string

	// DeviceID defaults to the session id: the scheduler and the catalog
	// both need one. SessionID is generated (random, unique) when empty.
	DeviceID, UserID, SessionID string

	// Dimensions copied onto every event.
	Region, ISP, AppVersion, OS, Network, AppID string

	// Rendition to play; default "source" when offered, else the first.
	Rendition string
	// Format is FormatFLV (default) or FormatHLS.
	Format string

	// Resolver looks up the scheduler and edge hosts; nil is
	// net.DefaultResolver. media/dns.Resolver points it at the stack's DNS.
	Resolver *net.Resolver
	// Reporter receives the events; nil discards them.
	Reporter Reporter

	// Duration is how long to watch after the first frame; 0 watches until
	// the stream ends or ctx is done.
	Duration time.Duration
	// HeartbeatEvery is the heartbeat period; default 10 s.
	HeartbeatEvery time.Duration
	Buffer         BufferModel
	Decode         DecodeModel
	// FirstFrameTimeout bounds each attempt from its play_start to its first
	// rendered frame (for a reconnect: to its first keyframe); default 10 s.
	FirstFrameTimeout time.Duration
	// MaxKbps caps how fast the player downloads, as a weak network would
	// (0: no cap). Below the stream's bitrate the buffer drains and the
	// player stalls.
	MaxKbps int
	// MaxLineSwitches bounds the switches between the main and the backup
	// line in one session, before or after the first frame; default 2
	// (main, backup, main). Negative means never switch.
	MaxLineSwitches int
	// Clock is the time source for every measurement and event ts; default
	// time.Now. It must be safe for concurrent use. Waits still use real
	// timers.
	Clock func() time.Time
}

// BufferModel is the playback buffer. Playback consumes media at real-time
// speed by tag timestamps; the buffer is downloaded media time minus played
// time.
type BufferModel struct {
	// Start is the media buffered before playback starts after the first
	// frame; default 500 ms.
	Start time.Duration
	// Resume is the media buffered before playback resumes after a stall;
	// default 1 s.
	Resume time.Duration
}

// DecodeModel stands in for the decoder and renderer a headless player does
// not run. Costs are real waits, so the timeline of events stays true.
type DecodeModel struct {
	// DecodeBase + DecodePerMegapixel × megapixels is the cost of decoding
	// the first keyframe; defaults 10 ms and 15 ms (so 1080p ≈ 41 ms,
	// 240p ≈ 11.5 ms). The picture size comes from the schedule, else the
	// stream's onMetaData, else 1280×720 is assumed.
	DecodeBase, DecodePerMegapixel time.Duration
	// Render is the cost of rendering the first decoded frame; default 5 ms.
	Render time.Duration
	// Jitter spreads each cost uniformly by ± this fraction; default 0.2,
	// negative for none. The draw is seeded by the session id, so a session
	// replays the same.
	Jitter float64

	// Defects, for scenarios (for example one app version with a bad
	// decoder). FailFirstDecode makes the first keyframe undecodable (code
	// 1007). Every RenderStallEvery of media after the first frame, the
	// renderer freezes for RenderStallFor and drops the frames due meanwhile
	// (a render_stall event).
	FailFirstDecode  bool
	RenderStallEvery time.Duration
	RenderStallFor   time.Duration
	// Hook, when set, is asked about every frame about to be shown
	// (Index 0 is the first keyframe); its answer adds to the defects above.
	// It runs on the session's goroutine and must not block.
	Hook func(Frame) Fault
}

// Frame describes a video frame (the audio frame, for an audio-only
// rendition) about to be decoded and shown.
type Frame struct {
	Index         int           // 0 for the first frame of the session
	Time          time.Duration // media time (stream timestamp)
	Keyframe      bool
	Width, Height int
}

// Fault is what goes wrong with a Frame.
type Fault struct {
	// Fail makes the decoder fail on this frame: the play stops with code
	// 1007 (first_frame_blocked "first_decode" at Index 0).
	Fail bool
	// Stall freezes rendering for this long from this frame on; frames due
	// meanwhile are dropped. Ignored while a render stall is under way.
	Stall time.Duration
}

// Result sums up a session.
type Result struct {
	SessionID  string
	FirstFrame bool
	// FirstFrameMs holds the first_frame phases ("dns", "tcp_connect",
	// "tcp_first_packet", "video_first_packet", "first_decode",
	// "first_render") and "total", in ms; nil without a first frame.
	FirstFrameMs map[string]int64
	Stalls       int
	StallMs      int64
	RenderStalls int
	// Code is the final play_stop code (see the package doc); Blocked its
	// first_frame_blocked; Reason its reason.
	Code    int
	Blocked string
	Reason  string
	// HTTPStatus is the edge's last HTTP status (0 when none came).
	HTTPStatus int
	// Bytes counts every byte received from edges, headers included.
	Bytes int64
	// Attempts is the number of play_start events (connections tried).
	Attempts int
	// Line, Node and CDN are those of the last attempt.
	Line, Node, CDN string
}

// Defaults.
const (
	DefaultHeartbeatEvery    = 10 * time.Second
	DefaultFirstFrameTimeout = 10 * time.Second
	DefaultMaxLineSwitches   = 2
	DefaultBufferStart       = 500 * time.Millisecond
	DefaultBufferResume      = time.Second
)

// withDefaults returns cfg with defaults filled in.
func (cfg Config) withDefaults() Config {
	if cfg.SessionID == "" {
		cfg.SessionID = uuid.NewString()
	}
	if cfg.DeviceID == "" {
		cfg.DeviceID = cfg.SessionID
	}
	if cfg.Format == "" {
		cfg.Format = FormatFLV
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Reporter == nil {
		cfg.Reporter = discard{}
	}
	if cfg.Duration < 0 {
		cfg.Duration = 0
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = DefaultHeartbeatEvery
	}
	if cfg.FirstFrameTimeout <= 0 {
		cfg.FirstFrameTimeout = DefaultFirstFrameTimeout
	}
	switch {
	case cfg.MaxLineSwitches == 0:
		cfg.MaxLineSwitches = DefaultMaxLineSwitches
	case cfg.MaxLineSwitches < 0:
		cfg.MaxLineSwitches = 0
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Buffer.Start <= 0 {
		cfg.Buffer.Start = DefaultBufferStart
	}
	if cfg.Buffer.Resume <= 0 {
		cfg.Buffer.Resume = DefaultBufferResume
	}
	d := &cfg.Decode
	if d.DecodeBase <= 0 {
		d.DecodeBase = 10 * time.Millisecond
	}
	if d.DecodePerMegapixel <= 0 {
		d.DecodePerMegapixel = 15 * time.Millisecond
	}
	if d.Render <= 0 {
		d.Render = 5 * time.Millisecond
	}
	switch {
	case d.Jitter == 0:
		d.Jitter = 0.2
	case d.Jitter < 0 || math.IsNaN(d.Jitter):
		d.Jitter = 0
	case d.Jitter > 1:
		d.Jitter = 1
	}
	return cfg
}

type discard struct{}

func (discard) Log(report.Event) {}
