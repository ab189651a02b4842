// Package stream is the live fan-out hub of origin and edge: one writer (the
// publisher, or the edge's pull from origin) and many viewers of one stream.
//
// Each tag is serialised to FLV bytes once, on Write, into an immutable
// buffer that every viewer sends as is. Tags sit in a ring of atomic
// pointers indexed by sequence number; a viewer is only a cursor into it, so
// the writer never looks at viewers and a viewer never takes a lock: with
// thousands of viewers per stream, per-viewer work in the writer or a shared
// lock would be the bottleneck. The writer wakes waiting viewers by closing
// a channel. There is no goroutine per viewer: whoever serves the viewer
// (the HTTP handler) calls Next.
//
// The ring keeps the GOP cache (the last Options.CacheGOPs GOPs, for quick
// start) and whatever lies within Options.QueueBytes of the newest tag, the
// most a viewer may fall behind. A viewer further behind skips ahead to a
// keyframe (see Viewer.Next), so the ring never grows for a stuck viewer.
package stream

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// Options tune a Stream. The zero value gives the defaults.
type Options struct {
	// CacheGOPs is the number of GOPs kept for quick start (default 2).
	CacheGOPs int
	// QueueBytes bounds how far (in FLV bytes) a viewer may fall behind the
	// newest tag before it drops to a later keyframe (default 4 MiB, about
	// 16 s at 2 Mbit/s).
	QueueBytes int
	// AudioWake is how much stream time audio may wait for the next video
	// tag before viewers are woken for it. Viewers are woken for every
	// video, script and sequence-header tag; audio in between goes out with
	// the next wake, so a viewer costs one wakeup (and one socket write) per
	// video frame instead of per tag. Default 50 ms; negative wakes viewers
	// for every tag. Streams without video wake for every tag.
	AudioWake time.Duration
}

const (
	defaultCacheGOPs  = 2
	defaultQueueBytes = 4 << 20
	defaultAudioWake  = 50 * time.Millisecond

	// audioSyncMs spaces the start points of a stream without video: every
	// AAC frame decodes alone, but a "GOP" of one frame would make the GOP
	// cache useless.
	audioSyncMs = 1000
)

// Entry flags.
const (
	fConfig   = 1 << iota // onMetaData or a sequence header
	fSync                 // a viewer may start here: video keyframe, or audio in a stream without video
	fFrame                // a video picture
	fKey                  // a video keyframe picture
	fHasAudio             // the stream has carried audio by this entry
	fHasVideo             // ...and video
)

// entry is one tag as every viewer sends it. Immutable once published.
type entry struct {
	seq   uint64
	off   uint64 // stream bytes before this entry
	buf   []byte // the FLV tag: header, body, PreviousTagSize
	time  uint32 // ms
	flags uint8
	key   uint64  // seq+1 of the newest sync point at or before this entry, 0 if none
	cfg   *config // headers in force once this entry is applied
}

// config is the set of headers a decoder needs, replaced (never modified)
// when one of them changes. Its tags alias entry buffers.
type config struct {
	meta, video, audio flv.Tag
}

// appendTo appends the headers as FLV tags stamped at time ms: a viewer
// joining at a keyframe gets them with the keyframe's timestamp, so its
// timestamps never go backwards. The first onMetaData a viewer gets is
// stamped 0: ffmpeg's FLV demuxer takes metadata at any other time for a
// data stream and shows the stream with an extra "text" track.
func (c *config) appendTo(dst []byte, ms uint32, first bool) []byte {
	for _, t := range [...]*flv.Tag{&c.meta, &c.video, &c.audio} {
		if t.Data != nil {
			tt := flv.Tag{Type: t.Type, Time: ms, Data: t.Data}
			if first && t == &c.meta {
				tt.Time = 0
			}
			dst = flv.AppendTag(dst, &tt)
		}
	}
	return dst
}

// count is the number of headers appendTo writes.
func (c *config) count() int {
	n := 0
	for _, d := range [...][]byte{c.meta.Data, c.video.Data, c.audio.Data} {
		if d != nil {
			n++
		}
	}
	return n
}

// header is the FLV header for a viewer whose first entry is e: the flags
// say what the stream carries so far, both when it is not known yet.
func (e *entry) header() flv.Header {
	h := flv.Header{
		Audio: e.cfg.audio.Data != nil || e.flags&fHasAudio != 0,
		Video: e.cfg.video.Data != nil || e.flags&fHasVideo != 0,
	}
	if !h.Audio && !h.Video {
		return flv.Header{Audio: true, Video: true}
	}
	return h
}

// ring holds entries by seq & mask. A slot whose entry has another seq was
// trimmed (or not yet reached).
type ring struct {
	slots []atomic.Pointer[entry]
	mask  uint64
}

func newRing(n int) *ring {
	return &ring{slots: make([]atomic.Pointer[entry], n), mask: uint64(n - 1)}
}

func (r *ring) get(seq uint64) *entry {
	if e := r.slots[seq&r.mask].Load(); e != nil && e.seq == seq {
		return e
	}
	return nil
}

// Stream is one live stream. Write and Close belong to the single writer;
// Subscribe, Stats and the viewers may run on any goroutine.
type Stream struct {
	name      string
	cacheGOPs int
	queue     uint64
	audioWake int64 // ms; <0 wakes on every tag

	// Read by viewers without locks.
	ring       atomic.Pointer[ring]
	head       atomic.Uint64 // seq of the next entry
	total      atomic.Uint64 // stream bytes written (off of the next entry)
	cacheStart atomic.Uint64 // seq+1 of the oldest cached sync point, 0 if none
	wake       atomic.Value  // chan struct{}, closed to wake viewers
	closed     atomic.Bool
	err        error // set before closed

	// Writer state, under mu. Write is meant for one goroutine; the mutex
	// is uncontended then and guards against misuse and against Stats.
	mu        sync.Mutex
	tail      uint64   // oldest entry kept
	keys      []uint64 // seqs of the cached sync points, oldest first
	cfg       *config
	sawVideo  bool
	sawAudio  bool
	lastSync  uint32 // time of the newest audio sync point
	lastWake  uint32
	lastKeyAt time.Time

	viewers      atomic.Int64
	tagsIn       atomic.Int64
	framesIn     atomic.Int64
	bytesIn      atomic.Int64
	rejected     atomic.Int64
	droppedTags  atomic.Int64
	droppedBytes atomic.Int64
	lastKey      atomic.Int64 // stream time of the newest keyframe, -1 if none
}

// New returns an empty stream.
func New(name string, o Options) *Stream {
	s := &Stream{
		name:      name,
		cacheGOPs: o.CacheGOPs,
		queue:     uint64(o.QueueBytes),
		audioWake: o.AudioWake.Milliseconds(),
		cfg:       &config{},
	}
	if s.cacheGOPs <= 0 {
		s.cacheGOPs = defaultCacheGOPs
	}
	if o.QueueBytes <= 0 {
		s.queue = defaultQueueBytes
	}
	switch {
	case o.AudioWake == 0:
		s.audioWake = defaultAudioWake.Milliseconds()
	case o.AudioWake < 0:
		s.audioWake = -1
	}
	s.ring.Store(newRing(256))
	s.wake.Store(make(chan struct{}))
	s.lastKey.Store(-1)
	return s
}

// Name is the stream's name.
func (s *Stream) Name() string { return s.name }

// Write publishes one tag to every viewer. It copies t.Data (the caller may
// reuse it), strips an RTMP "@setDataFrame" from metadata, and ignores tags
// of unknown type, tags too large for FLV, and anything after Close.
func (s *Stream) Write(t *flv.Tag) {
	if t.Type != flv.TagAudio && t.Type != flv.TagVideo && t.Type != flv.TagScript {
		s.rejected.Add(1)
		return
	}
	data := t.Data
	if t.Type == flv.TagScript {
		data = flv.StripSetDataFrame(data)
	}
	if len(data) > flv.MaxDataSize {
		s.rejected.Add(1)
		return
	}
	tag := flv.Tag{Type: t.Type, Time: t.Time, Data: data}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return
	}
	seq := s.head.Load()
	off := s.total.Load()
	e := &entry{seq: seq, off: off, time: t.Time}
	e.buf = flv.AppendTag(make([]byte, 0, flv.TagSize(&tag)), &tag)
	body := e.buf[flv.TagHeaderSize : len(e.buf)-4 : len(e.buf)-4]

	wake := true
	switch {
	case tag.IsMetadata(), tag.IsSequenceHeader():
		e.flags = fConfig
		s.setHeader(&tag, body)
	case tag.IsVideo():
		s.sawVideo = true
		if tag.IsFrame() {
			e.flags = fFrame
			if tag.IsKeyframe() {
				e.flags |= fKey | fSync
			}
		}
	case tag.IsAudio():
		s.sawAudio = true
		if !s.sawVideo && s.cfg.video.Data == nil {
			if len(s.keys) == 0 || t.Time-s.lastSync >= audioSyncMs {
				e.flags = fSync
				s.lastSync = t.Time
			}
		} else if s.audioWake >= 0 && int64(int32(t.Time-s.lastWake)) < s.audioWake {
			wake = false
		}
	}
	e.cfg = s.cfg
	if s.sawAudio {
		e.flags |= fHasAudio
	}
	if s.sawVideo {
		e.flags |= fHasVideo
	}

	if e.flags&fSync != 0 {
		s.keys = append(s.keys, seq)
		if len(s.keys) > s.cacheGOPs {
			s.keys = append(s.keys[:0], s.keys[len(s.keys)-s.cacheGOPs:]...)
		}
		s.cacheStart.Store(s.keys[0] + 1)
		if e.flags&fKey != 0 {
			s.lastKey.Store(int64(t.Time))
			s.lastKeyAt = time.Now()
		}
	}
	if seq > 0 {
		if prev := s.ring.Load().get(seq - 1); prev != nil {
			e.key = prev.key
		}
	}
	if e.flags&fSync != 0 {
		e.key = seq + 1
	}

	newTotal := off + uint64(len(e.buf))
	r := s.trim(seq, newTotal)
	r.slots[seq&r.mask].Store(e)
	s.head.Store(seq + 1)
	s.total.Store(newTotal)
	s.tagsIn.Add(1)
	if e.flags&fFrame != 0 {
		s.framesIn.Add(1)
	}
	s.bytesIn.Add(int64(len(e.buf)))
	if wake {
		s.lastWake = t.Time
		s.wakeViewers()
	}
}

// setHeader records a new onMetaData or sequence header. The config is
// replaced only when a header actually changed: encoders that repeat
// identical headers do not make skipping viewers resend them.
func (s *Stream) setHeader(t *flv.Tag, body []byte) {
	c := *s.cfg
	cur := &c.meta
	switch t.Type {
	case flv.TagVideo:
		cur = &c.video
	case flv.TagAudio:
		cur = &c.audio
	}
	if cur.Data != nil && bytes.Equal(cur.Data, body) {
		return
	}
	*cur = flv.Tag{Type: t.Type, Data: body}
	s.cfg = &c
}

// trim drops entries no viewer may need any more: older than the GOP cache
// and further than QueueBytes behind the newest byte. It returns the ring
// to store entry seq in, grown if it is full.
func (s *Stream) trim(seq, newTotal uint64) *ring {
	r := s.ring.Load()
	keep := s.cacheStart.Load() // seq+1, 0 = no cache yet
	for s.tail < seq {
		e := r.get(s.tail)
		if e != nil && (keep != 0 && e.seq >= keep-1 || newTotal-e.off <= s.queue) {
			break
		}
		r.slots[s.tail&r.mask].Store(nil)
		s.tail++
	}
	if seq-s.tail < uint64(len(r.slots)) {
		return r
	}
	// Full: double. Readers holding the old ring still find every entry
	// they may read there; new entries go only to the new one, which is
	// published before head moves.
	nr := newRing(2 * len(r.slots))
	for i := s.tail; i < seq; i++ {
		nr.slots[i&nr.mask].Store(r.slots[i&r.mask].Load())
	}
	s.ring.Store(nr)
	return nr
}

func (s *Stream) wakeViewers() {
	old := s.wake.Swap(make(chan struct{})).(chan struct{})
	close(old)
}

// Close ends the stream: viewers get what was written, then err (io.EOF if
// err is nil). Later Writes are ignored; Close is idempotent.
func (s *Stream) Close(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return
	}
	if err == nil {
		err = io.EOF
	}
	s.err = err
	s.closed.Store(true)
	s.wakeViewers()
}

// Stats is a snapshot of a stream.
type Stats struct {
	Name         string
	Viewers      int   // open viewers
	TagsIn       int64 // tags written
	FramesIn     int64 // video pictures written (frame rate = its rate)
	BytesIn      int64 // FLV bytes written (tag headers included)
	Rejected     int64 // tags ignored: unknown type or too large
	HasKeyframe  bool
	LastKeyframe time.Duration // stream timestamp of the newest keyframe
	LastKeyAt    time.Time     // when it was written
	CachedGOPs   int
	CacheTags    int // tags from the oldest cached keyframe on
	// CacheSpan is the media time from the oldest cached keyframe to the
	// newest tag: how much a quick start can hand out.
	CacheSpan    time.Duration
	CacheBytes   int64 // their FLV bytes
	RingBytes    int64 // bytes held for viewers, cache included
	DroppedTags  int64 // over all viewers, closed ones included
	DroppedBytes int64
	Closed       bool
}

// Stats returns a snapshot.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Name:         s.name,
		Viewers:      int(s.viewers.Load()),
		TagsIn:       s.tagsIn.Load(),
		FramesIn:     s.framesIn.Load(),
		BytesIn:      s.bytesIn.Load(),
		Rejected:     s.rejected.Load(),
		CachedGOPs:   len(s.keys),
		DroppedTags:  s.droppedTags.Load(),
		DroppedBytes: s.droppedBytes.Load(),
		Closed:       s.closed.Load(),
		LastKeyAt:    s.lastKeyAt,
	}
	if k := s.lastKey.Load(); k >= 0 {
		st.HasKeyframe = true
		st.LastKeyframe = time.Duration(k) * time.Millisecond
	}
	r, head, total := s.ring.Load(), s.head.Load(), s.total.Load()
	if len(s.keys) > 0 {
		if e := r.get(s.keys[0]); e != nil {
			st.CacheTags = int(head - e.seq)
			st.CacheBytes = int64(total - e.off)
			if last := r.get(head - 1); last != nil && last.time >= e.time {
				st.CacheSpan = time.Duration(last.time-e.time) * time.Millisecond
			}
		}
	}
	if e := r.get(s.tail); e != nil {
		st.RingBytes = int64(total - e.off)
	}
	return st
}

// ErrClosed is returned by Next after the viewer's Close.
var ErrClosed = errors.New("stream: viewer closed")
