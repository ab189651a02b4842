package stream

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// maxChunk caps how many bytes Next copies together. Coalescing small tags
// (audio with the next video frame) saves a socket write each; a tag larger
// than this goes out alone, uncopied.
const maxChunk = 64 << 10

// Viewer is one subscriber's position in a stream. Next is meant for one
// goroutine (the one serving the viewer); Close, Dropped and Stats may be
// called from any.
type Viewer struct {
	s *Stream

	// Owned by the goroutine calling Next.
	cursor      uint64 // seq of the next entry
	off         uint64 // its stream byte offset
	sentCfg     *config
	headerSent  bool
	waitKey     bool // skipping media until a sync point
	countWait   bool // ...because of a drop: the skipped tags count as dropped
	videoSynced bool // a video keyframe went out; P-frames may follow
	parts       [][]byte
	hdr         []byte // FLV header and re-sent headers of this chunk
	buf         []byte // coalesced chunk

	closed atomic.Bool
	done   chan struct{}

	fromCache   bool
	startBuffer time.Duration

	bytesSent    atomic.Int64
	tagsSent     atomic.Int64
	droppedTags  atomic.Int64
	droppedBytes atomic.Int64
	drops        atomic.Int64
	firstKeyAt   atomic.Int64 // unix ns, 0 until the first keyframe goes out
	firstKeyTime atomic.Int64 // its stream time, ms
	lastTime     atomic.Int64 // stream time of the newest tag handed out, -1 before
}

// Subscribe adds a viewer. Its first bytes are the FLV header, onMetaData
// and the sequence headers, then the tags from a cached keyframe: the latest
// one at or before (newest tag time − lowerBound), so the player starts with
// at least lowerBound of buffer when the cache holds that much, and from
// the oldest cached keyframe when it does not. lowerBound 0 starts at the
// latest keyframe (lowest latency). With no keyframe cached yet, the viewer
// starts at the next one written.
func (s *Stream) Subscribe(lowerBound time.Duration) *Viewer {
	v := &Viewer{s: s, done: make(chan struct{}), waitKey: true}
	v.lastTime.Store(-1)
	s.viewers.Add(1)
	closed := s.closed.Load()
	h := s.head.Load()
	r := s.ring.Load()
	v.cursor = h
	if h == 0 {
		return v
	}
	last := r.get(h - 1)
	if last == nil {
		// Cannot happen: the newest entry is never trimmed. Start live.
		v.off = s.total.Load()
		return v
	}
	v.off = last.off + uint64(len(last.buf))
	if closed || last.key == 0 {
		return v
	}
	cacheStart := s.cacheStart.Load()
	target := int64(last.time) - lowerBound.Milliseconds()
	k := r.get(last.key - 1)
	for k != nil && int64(k.time) > target && k.seq > 0 {
		// The entry before a sync point knows the previous sync point.
		p := r.get(k.seq - 1)
		if p == nil || p.key == 0 || p.key < cacheStart {
			break
		}
		pk := r.get(p.key - 1)
		if pk == nil {
			break
		}
		k = pk
	}
	if k == nil {
		return v // trimmed under us; the next keyframe will do
	}
	v.cursor, v.off, v.waitKey = k.seq, k.off, false
	v.fromCache = true
	v.startBuffer = time.Duration(last.time-k.time) * time.Millisecond
	return v
}

// Next returns the next bytes of the viewer's FLV stream, waiting for the
// writer when it has all there is. It may coalesce several tags into one
// chunk to save writes. The chunk is shared with other viewers or reused:
// it is valid until the next call and must not be modified.
//
// A viewer more than QueueBytes behind the newest tag drops what it has
// queued and resumes at the earliest keyframe within QueueBytes of the
// newest tag, or, if there is none, at the next keyframe written; it never
// resumes mid-GOP, and headers that changed meanwhile are resent before the
// keyframe. Dropped counts what was skipped.
//
// After the stream's Close, Next returns the rest, then the close error
// (io.EOF for a plain Close). It returns ctx.Err() when ctx ends while
// waiting, and ErrClosed after the viewer's Close.
func (v *Viewer) Next(ctx context.Context) ([]byte, error) {
	s := v.s
	for {
		if v.closed.Load() {
			return nil, ErrClosed
		}
		// The wake channel is loaded before head: a Write after this
		// point either shows in head or closes this channel.
		wake := s.wake.Load().(chan struct{})
		closed := s.closed.Load()
		h := s.head.Load()
		if v.cursor < h {
			if b := v.fill(h); len(b) > 0 {
				return b, nil
			}
			continue // everything was skipped
		}
		if closed {
			return nil, s.err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-v.done:
			return nil, ErrClosed
		}
	}
}

// fill gathers the entries before h into one chunk.
func (v *Viewer) fill(h uint64) []byte {
	s := v.s
	r := s.ring.Load() // after head: it holds every entry before h
	end := s.total.Load()
	if last := r.get(h - 1); last != nil {
		end = last.off + uint64(len(last.buf))
	}
	if end-v.off > s.queue {
		v.skip(r, h, end)
	}
	parts, size, tags := v.parts[:0], 0, 0
	v.hdr = v.hdr[:0]
	var lastTime uint32
	for v.cursor < h {
		e := r.get(v.cursor)
		if e == nil { // trimmed: we were too far behind
			v.skip(r, h, end)
			continue
		}
		if size > 0 && size+len(e.buf) > maxChunk {
			break
		}
		v.cursor++
		v.off += uint64(len(e.buf))
		if !v.accept(e) {
			continue
		}
		pre := len(v.hdr)
		if !v.headerSent {
			v.hdr = flv.AppendHeader(v.hdr, e.header())
			v.headerSent = true
		}
		if e.flags&fConfig != 0 {
			v.sentCfg = e.cfg
		} else if e.cfg != v.sentCfg {
			n := len(v.hdr)
			v.hdr = e.cfg.appendTo(v.hdr, e.time, v.sentCfg == nil)
			if len(v.hdr) > n {
				tags += e.cfg.count()
			}
			v.sentCfg = e.cfg
		}
		if len(v.hdr) > pre {
			parts = append(parts, v.hdr[pre:])
			size += len(v.hdr) - pre
		}
		parts = append(parts, e.buf)
		size += len(e.buf)
		tags++
		lastTime = e.time
		if e.flags&fSync != 0 && v.firstKeyAt.Load() == 0 {
			v.firstKeyTime.Store(int64(e.time))
			v.firstKeyAt.Store(time.Now().UnixNano())
		}
		if e.flags&fKey != 0 {
			v.videoSynced = true
		}
	}
	if tags == 0 {
		return nil
	}
	v.tagsSent.Add(int64(tags))
	v.bytesSent.Add(int64(size))
	v.lastTime.Store(int64(lastTime))
	var out []byte
	if len(parts) == 1 {
		out = parts[0] // one tag: send the shared buffer itself
	} else {
		v.buf = v.buf[:0]
		for _, p := range parts {
			v.buf = append(v.buf, p...)
		}
		out = v.buf
	}
	clear(parts) // let trimmed entries go
	v.parts = parts
	return out
}

// accept decides whether entry e goes to this viewer.
func (v *Viewer) accept(e *entry) bool {
	switch {
	case e.flags&fConfig != 0:
		return true // headers always go, in order
	case v.waitKey:
		if e.flags&fSync == 0 {
			if v.countWait {
				v.dropped(1, uint64(len(e.buf)))
			}
			return false
		}
		v.waitKey, v.countWait = false, false
	case e.flags&fFrame != 0 && e.flags&fKey == 0 && !v.videoSynced:
		return false // a P-frame before any keyframe cannot be decoded
	}
	return true
}

// skip drops the viewer's backlog: it moves the cursor to the earliest sync
// point within QueueBytes of end (the stream offset at h), or to h, waiting
// for the next one.
func (v *Viewer) skip(r *ring, h, end uint64) {
	s := v.s
	var best *entry
	if last := r.get(h - 1); last != nil && last.key != 0 {
		k := r.get(last.key - 1)
		for k != nil && k.seq >= v.cursor && end-k.off <= s.queue {
			best = k
			if k.seq == 0 {
				break
			}
			p := r.get(k.seq - 1)
			if p == nil || p.key == 0 {
				break
			}
			k = r.get(p.key - 1)
		}
	}
	v.drops.Add(1)
	if best != nil {
		v.dropped(best.seq-v.cursor, best.off-v.off)
		v.cursor, v.off, v.waitKey = best.seq, best.off, false
		return
	}
	v.dropped(h-v.cursor, end-v.off)
	v.cursor, v.off = h, end
	v.waitKey, v.countWait = true, true
}

func (v *Viewer) dropped(tags, bytes uint64) {
	v.droppedTags.Add(int64(tags))
	v.droppedBytes.Add(int64(bytes))
	v.s.droppedTags.Add(int64(tags))
	v.s.droppedBytes.Add(int64(bytes))
}

// Close detaches the viewer; a Next blocked in another goroutine returns
// ErrClosed. Idempotent.
func (v *Viewer) Close() {
	if v.closed.Swap(true) {
		return
	}
	close(v.done)
	v.s.viewers.Add(-1)
}

// Dropped reports the tags and FLV bytes this viewer skipped because it fell
// more than QueueBytes behind.
func (v *Viewer) Dropped() (tags int64, bytes int64) {
	return v.droppedTags.Load(), v.droppedBytes.Load()
}

// ViewerStats is what edge and player logs report about one viewer.
type ViewerStats struct {
	BytesSent int64 // FLV bytes handed out by Next, header included
	TagsSent  int64
	// Drops is the number of times the viewer fell behind and skipped.
	Drops        int64
	DroppedTags  int64
	DroppedBytes int64
	// FromCache is true when the viewer started from the GOP cache, false
	// when it had to wait for a keyframe (nothing cached yet): the edge's
	// "stream was cached" for first-frame logs.
	FromCache bool
	// StartBuffer is how far behind the newest tag the start keyframe was
	// at Subscribe: the buffer quick start gave the player.
	StartBuffer time.Duration
	// FirstKeyframeAt is when Next first returned a keyframe (zero until
	// then); FirstKeyframeTime is that keyframe's stream timestamp.
	FirstKeyframeAt   time.Time
	FirstKeyframeTime time.Duration
	// Lag is the newest tag written minus the newest tag handed out, in
	// stream time: how far behind live the viewer is at the hub.
	Lag time.Duration
}

// Stats returns a snapshot of the viewer's counters.
func (v *Viewer) Stats() ViewerStats {
	st := ViewerStats{
		BytesSent:    v.bytesSent.Load(),
		TagsSent:     v.tagsSent.Load(),
		Drops:        v.drops.Load(),
		DroppedTags:  v.droppedTags.Load(),
		DroppedBytes: v.droppedBytes.Load(),
		FromCache:    v.fromCache,
		StartBuffer:  v.startBuffer,
	}
	if ns := v.firstKeyAt.Load(); ns != 0 {
		st.FirstKeyframeAt = time.Unix(0, ns)
		st.FirstKeyframeTime = time.Duration(v.firstKeyTime.Load()) * time.Millisecond
	}
	if lt := v.lastTime.Load(); lt >= 0 {
		s := v.s
		if h := s.head.Load(); h > 0 {
			if e := s.ring.Load().get(h - 1); e != nil {
				st.Lag = time.Duration(int32(e.time-uint32(lt))) * time.Millisecond
			}
		}
	}
	return st
}

// Reader returns the viewer's FLV stream as an io.Reader, for an
// flv.Reader: how the origin's transcode workers and the edge's HLS
// packagers consume a hub. Reads end with Next's error (io.EOF at the end
// of the stream).
func (v *Viewer) Reader(ctx context.Context) io.Reader { return &viewerReader{v: v, ctx: ctx} }

type viewerReader struct {
	v   *Viewer
	ctx context.Context
	buf []byte
}

func (r *viewerReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		b, err := r.v.Next(r.ctx)
		if err != nil {
			return 0, err
		}
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
