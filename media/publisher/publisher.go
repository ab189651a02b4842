// Package publisher is the built-in broadcaster: it asks the scheduler for
// a signed push URL, pushes a real H.264/AAC stream (media/sample, padded to
// the configured bitrate) over RTMP at real-time pace, and logs push_start,
// push_stats every StatsEvery and push_stop. It can be told to degrade:
// cap its uplink below the bitrate, hold the link for a while, or
// disconnect.
//
// # Uplink model
//
// The encoder produces tags at real-time pace into a send buffer; a sender
// writes them, oldest first, to the RTMP connection through the link. A
// capped link (Degrade.ThrottleKbps) lets at most the cap through on the
// socket, from the moment the cap is set: a token bucket whose burst is one
// UplinkPlan.Quantum, so idle time earns no credit and the server sees the
// cap on the wire. Frames the link cannot carry wait in the send buffer.
// When the video queued spans more than UplinkPlan.DropAfter, the encoder
// drops every queued video frame except keyframes and the one being sent,
// then every new video frame until the next keyframe, as OBS does; audio
// is never dropped. UplinkPlan.MaxBytes bounds the buffer whatever it
// holds. Lifting the cap sends what is queued at the socket's speed (at
// most DropAfter of video and its keyframes) and then the stream's rate.
//
// What viewers then see follows from that: the ingest receives about the
// cap in bits, made of each GOP's keyframe and the frames after it until
// the buffer overflows, then nothing but audio until the next keyframe.
// Every viewer of the room, on every CDN and rendition, renders a fraction
// of the frames (a choppy picture, its frame rate falling with the cap),
// and frames arrive up to DropAfter late. A viewer whose buffer is shorter
// than the gaps also stalls: HLS players more often than HTTP-FLV ones,
// whose edge sends the stream as it comes.
//
// push_stats report what happened in the interval: bitrate_kbps, the bytes
// written on the wire (RTMP headers included) over the interval; fps, the
// video frames sent; dropped_frames, the video frames dropped; and
// send_buffer_ms, the video queued at the tick (newest minus oldest
// timestamp). bytes is the total written on the wire.
//
// Every keyframe, and any frame clock.Every after the last stamp, carries
// its capture time (when it was due from the camera, before any uplink
// queue) in an SEI message (media/clock), so that the hops downstream
// measure true latency.
//
// push_stop codes: 0 normal stop; 2001 could not get a push URL; 2002
// could not connect or publish; 2003 the connection failed mid-push;
// 2004 disconnected on purpose (fault).
package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/media/clock"
	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/report"
	"github.com/lastmile-qoe/lastmile/media/rtmp"
	"github.com/lastmile-qoe/lastmile/media/sample"
)

// push_stop codes.
const (
	CodeOK         = 0
	CodeNoURL      = 2001
	CodeConnect    = 2002
	CodeConnLost   = 2003
	CodeDisconnect = 2004
)

// Reporter takes the publisher's log events.
type Reporter interface{ Log(report.Event) }

// Config of one broadcaster.
type Config struct {
	SchedulerURL string
	// PushToken is the scheduler's bearer token for /v1/push.
	PushToken string
	Room      string
	// PushURL skips the scheduler when set.
	PushURL                     string
	DeviceID, UserID, SessionID string
	Region, ISP, AppVersion, OS string
	Network                     string
	BitrateKbps                 int           // video bitrate, default 2000
	StatsEvery                  time.Duration // default 5s
	Duration                    time.Duration // 0: until ctx ends
	HTTPClient                  *http.Client
	// Uplink bounds the send buffer of a link slower than the stream;
	// zero fields take DefaultUplinkPlan's.
	Uplink UplinkPlan
}

// Degrade makes the uplink misbehave; the zero value is healthy.
type Degrade struct {
	// ThrottleKbps caps the uplink (0: no cap): the socket carries at most
	// this many kbit/s from the moment the cap is set. Below the stream's
	// bitrate frames queue in the send buffer and, past Config.Uplink's
	// bound, are dropped to the next keyframe (see the package doc).
	ThrottleKbps int
	// StallFor holds the link once, for this long; the encoder goes on,
	// so the send buffer fills and drops as under a cap.
	StallFor time.Duration
	// Disconnect cuts the connection.
	Disconnect bool
}

// Publisher is one broadcaster.
type Publisher struct {
	cfg    Config
	rep    Reporter
	logger log.Logger

	mu      sync.Mutex
	degrade Degrade

	// bytes written on the wire, video frames sent and dropped, over
	// every Run.
	bytes, frames, dropped atomic.Int64
	up                     atomic.Pointer[uplink] // the current Run's send buffer
}

// New returns a publisher; Run pushes.
func New(cfg Config, rep Reporter, logger log.Logger) *Publisher {
	if cfg.BitrateKbps <= 0 {
		cfg.BitrateKbps = 2000
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 5 * time.Second
	}
	if cfg.SessionID == "" {
		cfg.SessionID = fmt.Sprintf("push-%s-%d", cfg.Room, time.Now().UnixNano())
	}
	if cfg.DeviceID == "" {
		cfg.DeviceID = "broadcaster-" + cfg.Room
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	cfg.Uplink = cfg.Uplink.withDefaults()
	return &Publisher{cfg: cfg, rep: rep, logger: logger}
}

// SetDegrade changes the uplink's behaviour while Run pushes.
func (p *Publisher) SetDegrade(d Degrade) {
	p.mu.Lock()
	p.degrade = d
	p.mu.Unlock()
}

func (p *Publisher) currentDegrade() Degrade {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.degrade
}

// Run pushes until ctx ends, Duration passes or the push fails; it logs
// push_stop and returns the stop code.
func (p *Publisher) Run(ctx context.Context) int {
	start := time.Now()
	stop := func(code int, reason string) int {
		p.log("push_stop", map[string]any{"code": code, "reason": reason, "bytes": p.bytes.Load(),
			"duration_ms": time.Since(start).Milliseconds()})
		level.Info(p.logger).Log("msg", "push ended", "room", p.cfg.Room, "code", code, "reason", reason)
		return code
	}
	pushURL := p.cfg.PushURL
	if pushURL == "" {
		u, err := p.askPushURL(ctx)
		if err != nil {
			return stop(CodeNoURL, err.Error())
		}
		pushURL = u
	}
	if u, err := url.Parse(pushURL); err == nil {
		q := u.Query()
		q.Set("sid", p.cfg.SessionID) // lets ingest logs join this push session
		u.RawQuery = q.Encode()
		pushURL = u.String()
	}
	src, err := sample.New(sample.Options{VideoBitrate: p.cfg.BitrateKbps * 1000, Realtime: false})
	if err != nil {
		return stop(CodeConnect, err.Error())
	}
	info := src.Info()
	t0 := time.Now()
	// Every byte of the publish, handshake included, crosses the link.
	lk := &link{quantum: p.cfg.Uplink.Quantum}
	lk.setCap(p.currentDegrade().ThrottleKbps)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	pub, err := rtmp.DialPublishWith(dctx, pushURL, rtmp.DialOptions{WrapConn: func(nc net.Conn) net.Conn { return pacedConn{Conn: nc, l: lk} }})
	cancel()
	if err != nil {
		return stop(CodeConnect, err.Error())
	}
	connectMs := time.Since(t0).Milliseconds()
	serverIP := ""
	if u, err := url.Parse(pushURL); err == nil {
		serverIP = u.Hostname()
		if ips, err := net.DefaultResolver.LookupIP(ctx, "ip", serverIP); err == nil && len(ips) > 0 {
			serverIP = ips[0].String()
		}
	}
	p.log("push_start", map[string]any{"url": redact(pushURL), "target_bitrate_kbps": p.cfg.BitrateKbps, "fps": info.FPS,
		"width": info.Width, "height": info.Height, "server_ip": serverIP, "connect_ms": connectMs})
	level.Info(p.logger).Log("msg", "pushing", "room", p.cfg.Room, "url", redact(pushURL), "connect_ms", connectMs)

	up := newUplink(p.cfg.Uplink)
	p.up.Store(up)
	statsDone := make(chan struct{})
	go p.statsLoop(statsDone)
	defer close(statsDone)
	code, reason := p.push(ctx, pub, src, up, lk)
	pub.Close()
	return stop(code, reason)
}

// push is the encoder: it produces tags at real-time pace into the send
// buffer, while send writes them through the link, as the degrade settings
// allow.
func (p *Publisher) push(ctx context.Context, pub *rtmp.Publisher, src *sample.Source, up *uplink, lk *link) (int, string) {
	// The sender stops when push says so, never on its own when ctx ends:
	// a nil from it then means nothing went wrong.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sendErr := make(chan error, 1)
	go func() { sendErr <- p.send(sctx, pub, up) }()
	code, reason := p.encode(ctx, src, up, lk, sendErr)
	cancel()
	if err := <-sendErr; err != nil && code == CodeOK {
		code, reason = CodeConnLost, err.Error()
	}
	return code, reason
}

// encode feeds the send buffer until the push ends; it returns the stop
// code and reason.
func (p *Publisher) encode(ctx context.Context, src *sample.Source, up *uplink, lk *link, sendErr chan error) (int, string) {
	begin := time.Now()
	stalled := false
	st := stamper{}
	for {
		if p.cfg.Duration > 0 && time.Since(begin) >= p.cfg.Duration {
			return CodeOK, "done"
		}
		t, err := src.Next(ctx)
		if err != nil {
			return CodeOK, "stopped"
		}
		due := begin.Add(time.Duration(t.Time) * time.Millisecond) // the capture time
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return CodeOK, "stopped"
			case err := <-sendErr:
				sendErr <- err // push reads it again
				return CodeConnLost, fmt.Sprint(err)
			case <-time.After(d):
			}
		}
		dg := p.currentDegrade()
		if dg.Disconnect {
			return CodeDisconnect, "disconnected (fault)"
		}
		if dg.StallFor > 0 && !stalled {
			stalled = true
			lk.pause(time.Now().Add(dg.StallFor))
		} else if dg.StallFor == 0 {
			stalled = false
		}
		lk.setCap(dg.ThrottleKbps)
		st.stamp(&t, due)
		p.dropped.Add(int64(up.offer(t.Clone())))
	}
}

// stamper writes capture stamps into video frames (see the package doc).
type stamper struct {
	tr   clock.Tracker // learns the NAL length size from the sequence header
	last time.Time
	buf  []byte
}

// stamp puts capture time at into t when it is due for one; t.Data then
// points at the stamper's buffer, valid until the next call.
func (st *stamper) stamp(t *flv.Tag, at time.Time) {
	st.tr.Capture(t)
	if !t.IsFrame() || st.tr.LenSize() == 0 || !t.IsKeyframe() && at.Sub(st.last) < clock.Every {
		return
	}
	if out, ok := clock.Stamp(st.buf, t.Data, st.tr.LenSize(), at.UnixMilli()); ok {
		st.buf, t.Data, st.last = out, out, at
	}
}

// send writes the send buffer's tags to the server, oldest first; each
// write takes as long as the link needs. It returns nil when ctx ends, or
// the write error.
func (p *Publisher) send(ctx context.Context, pub *rtmp.Publisher, up *uplink) error {
	wire := pub.BytesWritten()
	for ctx.Err() == nil {
		t, ok := up.front()
		if !ok {
			select {
			case <-ctx.Done():
			case <-up.wake:
			}
			continue
		}
		if err := pub.WriteTag(&t); err != nil {
			return err
		}
		if up.sent() {
			p.frames.Add(1)
		}
		w := pub.BytesWritten()
		p.bytes.Add(w - wire)
		wire = w
	}
	return nil
}

// statsLoop logs push_stats every StatsEvery: what the link carried in the
// interval (bytes on the wire, RTMP headers included), the video frames
// sent and dropped, and the send buffer's fill at the tick.
func (p *Publisher) statsLoop(done chan struct{}) {
	tk := time.NewTicker(p.cfg.StatsEvery)
	defer tk.Stop()
	last, lastBytes, lastFrames, lastDropped := time.Now(), p.bytes.Load(), p.frames.Load(), p.dropped.Load()
	for {
		select {
		case <-done:
			return
		case now := <-tk.C:
			b, f, d := p.bytes.Load(), p.frames.Load(), p.dropped.Load()
			secs := now.Sub(last).Seconds()
			var bufMs int64
			if up := p.up.Load(); up != nil {
				lv, _ := up.level()
				bufMs = lv.Milliseconds()
			}
			p.log("push_stats", map[string]any{"bitrate_kbps": float64(b-lastBytes) * 8 / 1000 / secs, "fps": float64(f-lastFrames) / secs,
				"dropped_frames": d - lastDropped, "bytes": b, "interval_ms": now.Sub(last).Milliseconds(), "send_buffer_ms": bufMs})
			last, lastBytes, lastFrames, lastDropped = now, b, f, d
		}
	}
}

func (p *Publisher) askPushURL(ctx context.Context) (string, error) {
	u := p.cfg.SchedulerURL + "/v1/push?room=" + url.QueryEscape(p.cfg.Room)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("push url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.PushToken)
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("push url: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		URL   string `json:"url"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("push url: scheduler answered %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.URL == "" {
		return "", fmt.Errorf("push url: scheduler answered %s: %s", resp.Status, body.Error)
	}
	return body.URL, nil
}

// redact drops the signature from a URL for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	if q.Has("sign") {
		q.Set("sign", "…")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (p *Publisher) log(logType string, extra map[string]any) {
	ev := report.Event{"log_type": logType, "source": "client", "device_id": p.cfg.DeviceID, "user_id": p.cfg.UserID,
		"session_id": p.cfg.SessionID, "room_id": p.cfg.Room, "stream_id": "live/" + p.cfg.Room, "region": p.cfg.Region,
		"isp": p.cfg.ISP, "app_version": p.cfg.AppVersion, "os": p.cfg.OS, "network": p.cfg.Network, "protocol": "rtmp",
		"rendition": "source", "codec": "h264"}
	for k, v := range extra {
		ev[k] = v
	}
	p.rep.Log(ev)
}
