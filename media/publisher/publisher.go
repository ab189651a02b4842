// Package publisher is the built-in broadcaster: it asks the scheduler for
// a signed push URL, pushes a real H.264/AAC stream (media/sample, padded to
// the configured bitrate) over RTMP at real-time pace, and logs push_start,
// push_stats every StatsEvery and push_stop. It can be told to degrade:
// throttle its uplink below the bitrate (frames queue, then drop), stall for
// a while, or disconnect.
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
}

// Degrade makes the uplink misbehave; the zero value is healthy.
type Degrade struct {
	// ThrottleKbps caps the uplink (0: no cap). Below the stream's bitrate
	// frames queue; once a frame is more than a second late the encoder
	// drops frames until the next keyframe, as real encoders do.
	ThrottleKbps int
	// StallFor pauses sending once, for this long.
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

	bytes, frames, dropped atomic.Int64
	lagMs                  atomic.Int64
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
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	pub, err := rtmp.DialPublish(dctx, pushURL)
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

	statsDone := make(chan struct{})
	go p.statsLoop(statsDone)
	defer close(statsDone)
	code, reason := p.push(ctx, pub, src)
	pub.Close()
	return stop(code, reason)
}

// push sends tags at real-time pace, as the degrade settings allow.
func (p *Publisher) push(ctx context.Context, pub *rtmp.Publisher, src *sample.Source) (int, string) {
	begin := time.Now()
	var sent float64 // bytes, for the throttle
	skipping := false
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
		due := begin.Add(time.Duration(t.Time) * time.Millisecond)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return CodeOK, "stopped"
			case <-time.After(d):
			}
		}
		dg := p.currentDegrade()
		if dg.Disconnect {
			return CodeDisconnect, "disconnected (fault)"
		}
		if dg.StallFor > 0 && !stalled {
			stalled = true
			time.Sleep(dg.StallFor)
		} else if dg.StallFor == 0 {
			stalled = false
		}
		// Throttle: the uplink sends at most ThrottleKbps; a frame due more
		// than a second ago starts a drop until the next keyframe.
		if dg.ThrottleKbps > 0 {
			sent += float64(len(t.Data))
			ready := begin.Add(time.Duration(sent * 8 / float64(dg.ThrottleKbps) * float64(time.Millisecond)))
			if d := time.Until(ready); d > 0 {
				time.Sleep(d)
			}
		} else {
			sent = float64(time.Since(begin).Milliseconds()) * float64(p.cfg.BitrateKbps) / 8
		}
		lag := time.Since(due)
		p.lagMs.Store(lag.Milliseconds())
		if t.IsVideo() && !t.IsSequenceHeader() {
			switch {
			case lag > time.Second && !t.IsKeyframe():
				skipping = true
			case t.IsKeyframe():
				skipping = false
			}
			if skipping {
				p.dropped.Add(1)
				continue
			}
			p.frames.Add(1)
		}
		st.stamp(&t, due)
		if err := pub.WriteTag(&t); err != nil {
			return CodeConnLost, err.Error()
		}
		p.bytes.Add(int64(len(t.Data)))
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

func (p *Publisher) statsLoop(done chan struct{}) {
	tk := time.NewTicker(p.cfg.StatsEvery)
	defer tk.Stop()
	last, lastBytes, lastFrames, lastDropped := time.Now(), int64(0), int64(0), int64(0)
	for {
		select {
		case <-done:
			return
		case now := <-tk.C:
			b, f, d := p.bytes.Load(), p.frames.Load(), p.dropped.Load()
			secs := now.Sub(last).Seconds()
			p.log("push_stats", map[string]any{"bitrate_kbps": float64(b-lastBytes) * 8 / 1000 / secs, "fps": float64(f-lastFrames) / secs,
				"dropped_frames": d - lastDropped, "bytes": b, "interval_ms": now.Sub(last).Milliseconds(), "send_buffer_ms": max(0, p.lagMs.Load())})
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
