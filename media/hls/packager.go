// Package hls packages a live stream of FLV tags (H.264 and AAC) as HLS: a
// sliding-window media playlist and MPEG-TS segments held in memory, served
// over HTTP by Handler. It is what a CDN edge serves to HLS players.
//
// Segments start at an IDR frame, carry PAT and PMT at their start and
// in-band SPS/PPS, so each decodes on its own. Audio-only streams (an
// audio-only rendition of a ladder) are cut on audio frames instead.
package hls

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// Options tune a Packager. Zero values take the defaults.
type Options struct {
	// TargetDuration is the segment length aimed at: a segment is cut at
	// the first keyframe at or after it, so segments are as long as the
	// GOP structure allows. Default 2s.
	TargetDuration time.Duration
	// Window is the number of segments in the live playlist. Default 6.
	Window int
	// Keep is the number of segments kept for players that are behind the
	// window. Default Window+2; never less than Window.
	Keep int
	// FirstWait bounds how long a playlist request waits for the first
	// segment (see Handler). The first segment is cut at the first
	// keyframe TargetDuration after the stream's first one, so this covers
	// a GOP of up to twice the target. Default 3×TargetDuration.
	FirstWait time.Duration
}

func (o Options) withDefaults() Options {
	if o.TargetDuration <= 0 {
		o.TargetDuration = 2 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 6
	}
	if o.Keep <= 0 {
		o.Keep = o.Window + 2
	}
	if o.Keep < o.Window {
		o.Keep = o.Window
	}
	if o.FirstWait <= 0 {
		o.FirstWait = 3 * o.TargetDuration
	}
	return o
}

// Stats describe what a Packager has produced so far.
type Stats struct {
	Segments            uint64        // segments completed
	Bytes               uint64        // MPEG-TS bytes in completed segments
	LastSegmentDuration time.Duration // duration of the newest completed segment
	Dropped             uint64        // media tags dropped: before their sequence header or the first keyframe, or of a track the stream started without
	HasVideo, HasAudio  bool          // tracks in the segments, fixed when the first segment starts
	Waiting             int           // HTTP requests waiting for the segment in progress or the first playlist
}

// ErrClosed is returned by WriteTag after Close.
var ErrClosed = errors.New("hls: packager closed")

// audioOnlyAfter is how much audio (media time) is held back without any
// video sequence header before the stream is taken to be audio-only.
// Publishers send both sequence headers before the first frame, so this
// only costs an audio-only stream its first second of latency.
const audioOnlyAfter = 1000 // ms

// Audio frames are grouped into one PES (as ffmpeg does) because one
// 200-byte AAC frame per PES would double the bitrate of an audio-only
// rendition in TS overhead; a few frames keep latency under ~100 ms.
const (
	maxAudioPESFrames = 4
	maxAudioPESBytes  = 4096
)

type segment struct {
	seq  uint64
	data []byte
	dur  time.Duration
	disc bool // starts a new timeline: #EXT-X-DISCONTINUITY before it
}

// A timestamp this far from the previous frame is a new timeline (the
// publisher restarted, or the stream stalled), not media: the segment is
// cut there and marked as a discontinuity instead of being stretched.
const (
	jumpBack    = 1000  // ms
	jumpForward = 10000 // ms, or twice the target duration if longer
)

type heldAudio struct {
	time int64
	adts []byte
}

// Packager turns FLV tags into HLS. All methods are safe for concurrent
// use; tags must be written in stream order, as one reader of the stream
// does. Segments live in memory: Keep of them, each as long as a segment.
type Packager struct {
	name string
	opt  Options

	mu sync.Mutex

	// input side
	avc          *avcConfig
	aac          *aacConfig
	started      bool
	closed       bool
	video, audio bool // tracks, fixed at the first segment
	ts           *tsWriter
	held         []heldAudio // audio while waiting to learn whether video comes
	cur          *bytes.Buffer
	curStart     int64 // ms
	curEnd       int64 // ms, end of the latest frame in the segment
	curAudioPES  bool  // an audio PES went into the current segment
	curDisc      bool  // the current segment starts a new timeline
	lastTime     int64 // ms, latest frame written, any track
	jumpPending  bool  // the timeline jumped since the last cut
	lastVideo    int64
	videoDur     int64 // ms, last video frame interval, for the final segment
	audioBuf     []byte
	audioPTS     int64
	audioFrames  int
	scratch      []byte

	// output side
	segs     []segment // oldest first, at most opt.Keep
	discs    uint64    // segments with disc made so far, for #EXT-X-DISCONTINUITY-SEQUENCE
	target   int       // #EXT-X-TARGETDURATION, seconds, never decreases
	playlist []byte
	changed  chan struct{} // closed and replaced when a segment completes or on Close
	stats    Stats

	segmentCache string // Cache-Control of segments
	waiting      int    // requests in await
}

// NewPackager returns a Packager for the stream called name (used in
// errors).
func NewPackager(name string, o Options) *Packager {
	o = o.withDefaults()
	p := &Packager{
		name:    name,
		opt:     o,
		target:  int((o.TargetDuration + time.Second - 1) / time.Second),
		changed: make(chan struct{}),
	}
	// Segments may be cached while they can still be listed.
	p.segmentCache = "max-age=" + strconv.Itoa(int(o.TargetDuration.Seconds()*float64(o.Keep)+0.5))
	p.playlist = p.renderPlaylist()
	return p
}

// WriteTag consumes one FLV tag. Sequence headers update the codec
// configuration; frames are muxed into the current segment. A tag it
// cannot use is rejected with an error and changes nothing else. The
// tag's Data is not kept after the call.
func (p *Packager) WriteTag(t *flv.Tag) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var err error
	switch t.Type {
	case flv.TagVideo:
		err = p.writeVideo(t)
	case flv.TagAudio:
		err = p.writeAudio(t)
	default:
		return nil // script data (onMetaData) has no place in TS
	}
	if err != nil {
		return fmt.Errorf("hls: stream %q: %s tag at %d ms: %w", p.name, tagKind(t.Type), t.Time, err)
	}
	return nil
}

func tagKind(typ uint8) string {
	if typ == flv.TagVideo {
		return "video"
	}
	return "audio"
}

func (p *Packager) writeVideo(t *flv.Tag) error {
	d := t.Data
	if len(d) < 2 {
		return fmt.Errorf("header of %d bytes: %w", len(d), errShort)
	}
	if codec := d[0] & 0x0f; codec != flv.CodecAVC {
		return fmt.Errorf("video codec %d not supported, only AVC (%d)", codec, flv.CodecAVC)
	}
	if len(d) < 5 {
		return fmt.Errorf("header of %d bytes: %w", len(d), errShort)
	}
	switch d[1] {
	case 0:
		c, err := parseAVCConfig(d[5:])
		if err != nil {
			return err
		}
		p.avc = c
		p.held = nil // video is coming: the stream starts at its first keyframe
		return nil
	case 1:
	case 2:
		return nil // end of sequence: nothing to mux
	default:
		return fmt.Errorf("unknown AVC packet type %d", d[1])
	}
	if p.avc == nil || (p.started && !p.video) {
		p.stats.Dropped++
		return nil
	}
	// Composition time offset: signed 24-bit milliseconds.
	cts := int64(int32(uint32(d[2])<<24|uint32(d[3])<<16|uint32(d[4])<<8) >> 8)
	buf, idr, err := avccToAnnexB(p.scratch[:0], d[5:], p.avc)
	p.scratch = buf[:0]
	if err != nil {
		return err
	}
	now := int64(t.Time)
	if !p.started {
		if !idr {
			p.stats.Dropped++
			return nil
		}
		if err := p.start(true, p.aac != nil, now); err != nil {
			return err
		}
	}
	p.noteTime(now)
	if idr && (p.jumpPending || now-p.curStart >= p.opt.TargetDuration.Milliseconds()) {
		if err := p.cut(now); err != nil {
			return err
		}
	}
	if err := p.ts.writePES(videoPID, (now+cts)*90, now*90, idr, buf); err != nil {
		return err
	}
	if p.lastVideo < now && now-p.lastVideo < 1000 {
		p.videoDur = now - p.lastVideo
	}
	p.lastVideo = now
	if !p.jumpPending {
		p.curEnd = max(p.curEnd, now+p.videoDur)
	}
	return nil
}

func (p *Packager) writeAudio(t *flv.Tag) error {
	d := t.Data
	if len(d) < 2 {
		return fmt.Errorf("header of %d bytes: %w", len(d), errShort)
	}
	if format := d[0] >> 4; format != flv.SoundAAC {
		return fmt.Errorf("sound format %d not supported, only AAC (%d)", format, flv.SoundAAC)
	}
	switch d[1] {
	case 0:
		c, err := parseASC(d[2:])
		if err != nil {
			return err
		}
		p.aac = c
		return nil
	case 1:
	default:
		return fmt.Errorf("unknown AAC packet type %d", d[1])
	}
	if p.aac == nil || (p.started && !p.audio) || (!p.started && p.avc != nil) {
		p.stats.Dropped++
		return nil
	}
	if len(d) == 2 {
		return nil
	}
	now := int64(t.Time)
	if !p.started {
		adts, err := appendADTS(nil, p.aac, d[2:])
		if err != nil {
			return err
		}
		p.held = append(p.held, heldAudio{now, adts})
		if now-p.held[0].time >= audioOnlyAfter {
			return p.startAudioOnly()
		}
		return nil
	}
	adts, err := appendADTS(p.scratch[:0], p.aac, d[2:])
	p.scratch = adts[:0]
	if err != nil {
		return err
	}
	return p.writeAudioFrame(now, adts)
}

func (p *Packager) startAudioOnly() error {
	held := p.held
	p.held = nil
	if err := p.start(false, true, held[0].time); err != nil {
		return err
	}
	for _, h := range held {
		if err := p.writeAudioFrame(h.time, h.adts); err != nil {
			return err
		}
	}
	return nil
}

func (p *Packager) writeAudioFrame(now int64, adts []byte) error {
	p.noteTime(now)
	if !p.video && (p.jumpPending || now-p.curStart >= p.opt.TargetDuration.Milliseconds()) {
		if err := p.cut(now); err != nil {
			return err
		}
	}
	if p.audioFrames == 0 {
		p.audioPTS = now
	}
	p.audioBuf = append(p.audioBuf, adts...)
	p.audioFrames++
	if !p.video && !p.jumpPending { // with video, segments are timed by the video track
		p.curEnd = max(p.curEnd, now+int64(1024*1000/p.aac.sampleRate))
	}
	if p.audioFrames >= maxAudioPESFrames || len(p.audioBuf) >= maxAudioPESBytes {
		return p.flushAudio()
	}
	return nil
}

func (p *Packager) flushAudio() error {
	if p.audioFrames == 0 {
		return nil
	}
	// In an audio-only stream the first PES of a segment is its random
	// access point; it also brings PAT/PMT (see tsWriter.writePES).
	rai := !p.video && !p.curAudioPES
	err := p.ts.writePES(audioPID, p.audioPTS*90, p.audioPTS*90, rai, p.audioBuf)
	p.audioBuf = p.audioBuf[:0]
	p.audioFrames = 0
	p.curAudioPES = true
	return err
}

// start fixes the tracks and opens the first segment at time at (ms).
func (p *Packager) start(video, audio bool, at int64) error {
	ts, err := newTSWriter(video, audio)
	if err != nil {
		return err
	}
	p.ts, p.video, p.audio, p.started = ts, video, audio, true
	p.stats.HasVideo, p.stats.HasAudio = video, audio
	p.lastVideo, p.lastTime = at, at
	p.openSegment(at)
	return nil
}

func (p *Packager) openSegment(at int64) {
	size := 64 << 10
	if n := len(p.segs); n > 0 {
		size = len(p.segs[n-1].data) + len(p.segs[n-1].data)/8
	}
	p.cur = bytes.NewBuffer(make([]byte, 0, size))
	p.ts.out = p.cur
	p.curStart, p.curEnd, p.curAudioPES, p.curDisc = at, at, false, false
}

// noteTime records the time of a frame about to be written and notices a
// jump to a new timeline; the next cut point then starts a discontinuity.
func (p *Packager) noteTime(now int64) {
	fwd := max(jumpForward, 2*p.opt.TargetDuration.Milliseconds())
	if now < p.lastTime-jumpBack || now > p.lastTime+fwd {
		p.jumpPending = true
	}
	p.lastTime = now
}

// cut completes the current segment where the next one starts, at ms.
// Across a timeline jump the old segment ends with its last frame and the
// new one is marked as a discontinuity.
func (p *Packager) cut(at int64) error {
	if err := p.flushAudio(); err != nil {
		return err
	}
	disc := p.jumpPending
	end := at
	if disc {
		end = p.curEnd
	}
	p.finishSegment(time.Duration(max(end-p.curStart, 0)) * time.Millisecond)
	p.openSegment(at)
	p.curDisc, p.jumpPending = disc, false
	return nil
}

func (p *Packager) finishSegment(dur time.Duration) {
	seg := segment{seq: p.stats.Segments, data: p.cur.Bytes(), dur: dur, disc: p.curDisc}
	if seg.disc {
		p.discs++
	}
	p.cur = nil
	p.segs = append(p.segs, seg)
	if len(p.segs) > p.opt.Keep {
		n := len(p.segs) - p.opt.Keep
		clear(p.segs[:n]) // let evicted segments be collected
		p.segs = p.segs[n:]
	}
	// RFC 8216 4.3.3.1: every EXTINF, rounded, must fit the target
	// duration, and a GOP longer than the target makes a longer segment.
	if secs := int((dur + time.Second/2) / time.Second); secs > p.target {
		p.target = secs
	}
	p.stats.Segments++
	p.stats.Bytes += uint64(len(seg.data))
	p.stats.LastSegmentDuration = dur
	p.publish()
}

// publish renders the playlist and wakes waiting requests.
func (p *Packager) publish() {
	p.playlist = p.renderPlaylist()
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close completes the segment in progress and ends the playlist with
// #EXT-X-ENDLIST. Later WriteTag calls fail with ErrClosed; segments and
// playlist stay readable.
func (p *Packager) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if !p.started && len(p.held) > 0 {
		_ = p.startAudioOnly() // held frames were validated when they came in
	}
	if p.started && p.cur != nil {
		_ = p.flushAudio() // a failed flush still leaves a usable segment
		if p.cur.Len() > 0 {
			p.finishSegment(time.Duration(p.curEnd-p.curStart) * time.Millisecond)
		}
	}
	p.closed = true
	p.publish()
}

// Playlist returns the current media playlist.
func (p *Packager) Playlist() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.playlist)
}

// Segment returns segment n ("seg-<n>.ts") if it is complete and still
// kept. The bytes are shared and must not be modified.
func (p *Packager) Segment(n uint64) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.segment(n)
}

func (p *Packager) segment(n uint64) ([]byte, bool) {
	if len(p.segs) == 0 || n < p.segs[0].seq {
		return nil, false
	}
	i := n - p.segs[0].seq
	if i >= uint64(len(p.segs)) {
		return nil, false
	}
	return p.segs[i].data, true
}

// Stats returns counters of what was produced so far.
func (p *Packager) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Waiting = p.waiting
	return s
}
