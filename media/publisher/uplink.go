package publisher

import (
	"net"
	"sync"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// UplinkPlan is how the broadcaster's uplink behaves when it cannot keep
// up: the send buffer's bounds and the pacing quantum of a capped link.
type UplinkPlan struct {
	// DropAfter bounds the send buffer in media time: when the video
	// queued (newest minus oldest timestamp) exceeds it, the encoder drops
	// every queued video frame but keyframes and then every new one until
	// the next keyframe. Audio is never dropped. OBS's P-frame drop
	// threshold (900 ms) is the default.
	DropAfter time.Duration
	// MaxBytes bounds the send buffer in bytes whatever it holds (a cap
	// below the audio and keyframes alone): past it new tags are dropped.
	MaxBytes int
	// Quantum is the largest write a capped link lets through at once; the
	// link's burst is one quantum, so it never sends faster than its cap
	// for longer than that.
	Quantum int
}

// DefaultUplinkPlan is the plan of a Config without one.
var DefaultUplinkPlan = UplinkPlan{DropAfter: 900 * time.Millisecond, MaxBytes: 4 << 20, Quantum: 4 << 10}

func (pl UplinkPlan) withDefaults() UplinkPlan {
	d := DefaultUplinkPlan
	if pl.DropAfter <= 0 {
		pl.DropAfter = d.DropAfter
	}
	if pl.MaxBytes <= 0 {
		pl.MaxBytes = d.MaxBytes
	}
	if pl.Quantum <= 0 {
		pl.Quantum = d.Quantum
	}
	return pl
}

// queued is one tag in the send buffer.
type queued struct {
	tag   flv.Tag // owns its Data
	video bool    // a video frame (not a sequence header)
	key   bool
}

// sendBuffer is the pure model of the encoder's output queue: tags wait
// here until the link has sent them; past the plan's bounds frames are
// dropped to the next keyframe, as OBS's RTMP output does. Not safe for
// concurrent use (uplink locks it).
type sendBuffer struct {
	plan     UplinkPlan
	q        []queued // q[0] may be in flight: still counted until sent
	bytes    int
	dropping bool // dropping video until the next keyframe
}

// offer adds a tag the encoder produced, or drops it; it returns the video
// frames dropped by this call (queued ones included).
func (b *sendBuffer) offer(t flv.Tag) (dropped int) {
	video := t.IsVideo() && !t.IsSequenceHeader()
	e := queued{tag: t, video: video, key: video && t.IsKeyframe()}
	if video {
		dropped += b.checkDrop()
		if b.dropping && !e.key {
			return dropped + 1
		}
		b.dropping = false
	}
	if b.bytes+len(t.Data) > b.plan.MaxBytes && len(b.q) > 0 {
		if video {
			b.dropping = true
			return dropped + 1
		}
		return dropped
	}
	b.q = append(b.q, e)
	b.bytes += len(t.Data)
	return dropped
}

// checkDrop drops every queued video frame but keyframes and the one in
// flight when the buffer holds more than DropAfter of video, and starts
// dropping new frames until the next keyframe.
func (b *sendBuffer) checkDrop() (dropped int) {
	if b.level() <= b.plan.DropAfter {
		return 0
	}
	kept := b.q[:0]
	for i, e := range b.q {
		if i == 0 || !e.video || e.key {
			kept = append(kept, e)
			continue
		}
		b.bytes -= len(e.tag.Data)
		dropped++
	}
	clear(b.q[len(kept):])
	b.q = kept
	b.dropping = true
	return dropped
}

// level is the media time of video waiting to be sent (the one in flight
// included): the newest queued video frame's timestamp minus the oldest's.
func (b *sendBuffer) level() time.Duration {
	first, last := -1, -1
	for i, e := range b.q {
		if e.video {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0
	}
	return time.Duration(int64(b.q[last].tag.Time)-int64(b.q[first].tag.Time)) * time.Millisecond
}

// front is the next tag to send; it stays queued until sent.
func (b *sendBuffer) front() (flv.Tag, bool) {
	if len(b.q) == 0 {
		return flv.Tag{}, false
	}
	return b.q[0].tag, true
}

// sent removes the front tag once written; it reports whether it was a
// video frame.
func (b *sendBuffer) sent() (video bool) {
	if len(b.q) == 0 {
		return false
	}
	e := b.q[0]
	b.bytes -= len(e.tag.Data)
	b.q[0] = queued{}
	b.q = b.q[1:]
	return e.video
}

// link is the uplink's physical pace: with a cap it lets bytes through at
// most at the cap, from the moment the cap applies (a token bucket whose
// burst is one quantum, so idle time earns no credit); without one, at the
// socket's speed. A pause holds every byte until it ends.
type link struct {
	quantum int

	mu       sync.Mutex
	rate     float64 // bytes per second; 0: uncapped
	tokens   float64 // may go negative: debt the writer sleeps off
	last     time.Time
	pausedTo time.Time
}

// setCap changes the cap (kbit/s, 0: none); a new cap starts with no
// credit.
func (l *link) setCap(kbps int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := float64(kbps) * 1000 / 8
	if rate != l.rate {
		l.rate, l.tokens, l.last = rate, 0, time.Now()
	}
}

// capped reports whether writes must go a quantum at a time.
func (l *link) capped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate > 0
}

// pause holds the link until t.
func (l *link) pause(t time.Time) {
	l.mu.Lock()
	l.pausedTo = t
	l.mu.Unlock()
}

// reserve takes n bytes from the bucket and returns how long the writer
// must wait before sending them.
func (l *link) reserve(n int, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := time.Duration(0)
	if now.Before(l.pausedTo) {
		wait = l.pausedTo.Sub(now)
	}
	if l.rate == 0 {
		return wait
	}
	start := now.Add(wait)
	if start.After(l.last) {
		l.tokens = min(float64(l.quantum), l.tokens+start.Sub(l.last).Seconds()*l.rate)
		l.last = start
	}
	l.tokens -= float64(n)
	if l.tokens < 0 {
		wait += time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	return wait
}

// pacedConn writes through a link: each quantum waits for the link
// before it goes on the socket, so the peer sees the cap on the wire.
type pacedConn struct {
	net.Conn
	l *link
}

func (c pacedConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := len(p) - n
		if c.l.capped() {
			k = min(k, c.l.quantum)
		}
		if d := c.l.reserve(k, time.Now()); d > 0 {
			time.Sleep(d)
		}
		m, err := c.Conn.Write(p[n : n+k])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// CloseWrite half-closes the socket, so rtmp.Publisher.Close can wait for
// the server to hang up.
func (c pacedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// uplink is the send buffer shared by the encoder (offer) and the sender
// (front, sent).
type uplink struct {
	mu   sync.Mutex
	buf  sendBuffer
	wake chan struct{} // a tag was queued
}

func newUplink(plan UplinkPlan) *uplink {
	return &uplink{buf: sendBuffer{plan: plan}, wake: make(chan struct{}, 1)}
}

func (u *uplink) offer(t flv.Tag) (dropped int) {
	u.mu.Lock()
	dropped = u.buf.offer(t)
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
	return dropped
}

func (u *uplink) front() (flv.Tag, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.buf.front()
}

func (u *uplink) sent() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.buf.sent()
}

// level is the send buffer's fill: media time of video and bytes.
func (u *uplink) level() (time.Duration, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.buf.level(), u.buf.bytes
}
