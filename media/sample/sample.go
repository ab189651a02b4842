// Package sample is the built-in publisher's media: a short real H.264/AAC
// recording (made once with ffmpeg, see testdata/README.md) looped into an
// endless live stream with continuous timestamps. The video bitrate is made
// real by padding frames with H.264 filler data, so a 2 Mbit/s test stream
// costs 2 Mbit/s on the wire and still decodes, with no encoder at run time.
package sample

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

//go:embed testdata/sample.flv
var sampleFLV []byte

// Sample returns the embedded FLV file (4 s, 426x240 25 fps H.264 Main with
// a keyframe every second, AAC-LC 44.1 kHz mono). Do not modify it.
func Sample() []byte { return sampleFLV }

// Options configure a Source.
type Options struct {
	// VideoBitrate is the target video bitrate in bit/s, counting the H.264
	// payload (what ffprobe counts as packet size). 0, or anything below the
	// recording's own bitrate, leaves frames as they are: padding can only
	// add bytes.
	VideoBitrate int
	// Realtime makes Next wait until each tag is due, measured from the
	// first call, as a live encoder would deliver it. Off, Next returns at
	// once (tests, benchmarks).
	Realtime bool
	// FLV replaces the embedded sample with another recording: H.264 video
	// starting with a keyframe, optionally AAC audio.
	FLV []byte
}

// Info describes the stream a Source produces.
type Info struct {
	Width, Height int           // from the recording's metadata, 0 if it had none
	FPS           float64       // the recording's frame rate, kept as is
	GOP           time.Duration // keyframe interval, the recording's
	Loop          time.Duration // recording length; each loop adds it to timestamps
	SourceBitrate int           // bit/s of the recording's H.264 payload
	VideoBitrate  int           // bit/s after padding
	AudioBitrate  int           // bit/s of the AAC payload, 0 without audio
	SampleRate    int           // audio sample rate, 0 without audio
	Channels      int
}

// Source loops a recording forever. It is not safe for concurrent use.
type Source struct {
	opt    Options
	info   Info
	lenSz  int       // AVCC NAL unit length prefix size
	heads  []flv.Tag // onMetaData, video and audio sequence headers
	body   []flv.Tag // frames and audio of one loop, in order
	loopMs uint32

	next  int // index into heads, then body
	loop  uint32
	start time.Time
	timer *time.Timer
	buf   []byte

	// Padding state: the padded stream follows scale × the recording's
	// cumulative payload, so large frames stay large (an I-frame is still
	// several P-frames) and the long-run rate is exact.
	scale  float64
	natCum int64
	outCum int64
}

// New returns a Source of the embedded sample, or of o.FLV.
func New(o Options) (*Source, error) {
	data := o.FLV
	if data == nil {
		data = sampleFLV
	}
	s := &Source{opt: o}
	if err := s.load(data); err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	return s, nil
}

// Info describes the produced stream.
func (s *Source) Info() Info { return s.info }

func (s *Source) load(data []byte) error {
	r := flv.NewReader(bytes.NewReader(data))
	var (
		meta, vseq, aseq     *flv.Tag
		videoTimes, keyTimes []uint32
		videoBytes           int64
		audioBytes           int64
		asc                  flv.AudioSpecificConfig
	)
	for {
		t, err := r.ReadTagCopy()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case t.IsMetadata():
			if meta == nil {
				meta = &t
			}
		case t.IsVideo() && t.IsSequenceHeader():
			if vseq != nil {
				continue // a mid-file config change would need a real encoder
			}
			if t.Data[0]&0x0f != flv.CodecAVC {
				return errors.New("video is not H.264")
			}
			c, err := flv.ParseAVCConfig(t.Data)
			if err != nil {
				return err
			}
			s.lenSz = c.LengthSize
			vseq = &t
		case t.IsAudio() && t.IsSequenceHeader():
			if aseq != nil {
				continue
			}
			if asc, err = flv.ParseAACConfig(t.Data); err != nil {
				return err
			}
			aseq = &t
		case t.IsFrame():
			if vseq == nil {
				return errors.New("video frame before the AVC sequence header")
			}
			if len(videoTimes) == 0 && !t.IsKeyframe() {
				return errors.New("video does not start with a keyframe")
			}
			videoTimes = append(videoTimes, t.Time)
			if t.IsKeyframe() {
				keyTimes = append(keyTimes, t.Time)
			}
			videoBytes += int64(len(t.Data) - 5)
			s.body = append(s.body, t)
		case t.IsAudio() && aseq != nil && len(t.Data) > 2:
			s.body = append(s.body, t)
		}
		// Anything else (end of sequence, cue points, audio before its
		// config) does not survive looping.
	}
	if len(videoTimes) < 2 {
		return fmt.Errorf("need at least 2 video frames, have %d", len(videoTimes))
	}

	// One loop lasts from the first frame to one interval past the last,
	// so the frame cadence continues across the seam.
	first, last := videoTimes[0], videoTimes[len(videoTimes)-1]
	interval := float64(last-first) / float64(len(videoTimes)-1)
	s.loopMs = uint32(math.Round(float64(last-first) + interval))
	if s.loopMs == 0 {
		return errors.New("video frames all have the same timestamp")
	}

	// Audio that would overlap the next loop's first audio frame is cut,
	// keeping timestamps monotonic and the audio free of overlaps.
	if aseq != nil {
		frame := asc.FrameDuration()
		firstAudio := int64(-1)
		kept := s.body[:0]
		for _, t := range s.body {
			if t.IsAudio() {
				if firstAudio < 0 {
					firstAudio = int64(t.Time)
				}
				if float64(t.Time)+frame > float64(firstAudio)+float64(s.loopMs)+0.5 {
					continue
				}
				audioBytes += int64(len(t.Data) - 2)
			}
			kept = append(kept, t)
		}
		s.body = kept
	}

	loop := time.Duration(s.loopMs) * time.Millisecond
	s.info = Info{
		FPS:           1000 / interval,
		GOP:           loop,
		Loop:          loop,
		SourceBitrate: int(float64(videoBytes) * 8 / loop.Seconds()),
		AudioBitrate:  int(float64(audioBytes) * 8 / loop.Seconds()),
		SampleRate:    asc.SampleRate,
		Channels:      asc.Channels,
	}
	if len(keyTimes) > 1 {
		s.info.GOP = time.Duration(keyTimes[1]-keyTimes[0]) * time.Millisecond
	}
	s.info.VideoBitrate = s.info.SourceBitrate
	if s.opt.VideoBitrate > s.info.SourceBitrate {
		s.info.VideoBitrate = s.opt.VideoBitrate
		s.scale = float64(s.opt.VideoBitrate) / float64(s.info.SourceBitrate)
	}
	if meta != nil {
		s.info.Width = int(metaNumber(meta.Data, "width"))
		s.info.Height = int(metaNumber(meta.Data, "height"))
	}

	m := flv.Tag{Type: flv.TagScript, Data: s.metadata(aseq != nil)}
	s.heads = append(s.heads, m, *vseq)
	if aseq != nil {
		s.heads = append(s.heads, *aseq)
	}
	for i := range s.heads {
		s.heads[i].Time = 0
	}
	return nil
}

// Next returns the next tag: onMetaData and the sequence headers first,
// then the recording over and over, each loop's timestamps offset by
// Info().Loop. In Realtime mode it waits until the tag is due and returns
// ctx.Err() if ctx ends first. The returned Data is shared or reused: it is
// valid until the next call and must not be modified.
func (s *Source) Next(ctx context.Context) (flv.Tag, error) {
	var t flv.Tag
	if s.next < len(s.heads) {
		t = s.heads[s.next]
		s.next++
	} else {
		i := s.next - len(s.heads)
		if i == len(s.body) {
			i, s.next = 0, len(s.heads)
			s.loop++
		}
		s.next++
		t = s.body[i]
		t.Time += s.loop * s.loopMs
		if t.IsFrame() && s.scale > 0 {
			t.Data = s.pad(t.Data)
		}
	}
	if s.opt.Realtime {
		if err := s.wait(ctx, t.Time); err != nil {
			return flv.Tag{}, err
		}
	}
	return t, nil
}

func (s *Source) wait(ctx context.Context, ms uint32) error {
	now := time.Now()
	if s.start.IsZero() {
		s.start = now
	}
	d := s.start.Add(time.Duration(ms) * time.Millisecond).Sub(now)
	if d <= 0 {
		return ctx.Err()
	}
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-s.timer.C:
		return nil
	case <-ctx.Done():
		s.timer.Stop()
		return ctx.Err()
	}
}

// pad appends H.264 filler data NAL units (nal_unit_type 12: 0xFF bytes
// closed by the 0x80 stop bit) after the frame's own NAL units. Filler may
// follow the picture's slices in an access unit, and decoders discard it,
// so the frame decodes as before while the bytes on the wire grow.
func (s *Source) pad(frame []byte) []byte {
	nat := int64(len(frame) - 5)
	s.natCum += nat
	want := int64(math.Round(float64(s.natCum) * s.scale))
	need := want - s.outCum - nat
	minNAL := int64(s.lenSz + 2) // prefix, header byte, stop byte
	if need < minNAL {
		s.outCum += nat
		return frame
	}
	maxNAL := int64(1)<<(8*s.lenSz) - 1 + int64(s.lenSz)
	s.buf = append(s.buf[:0], frame...)
	s.outCum += nat + need
	for need > 0 {
		n := min(need, maxNAL)
		if rest := need - n; rest > 0 && rest < minNAL {
			n -= minNAL // leave room for one more whole filler unit
		}
		s.buf = appendFiller(s.buf, s.lenSz, int(n))
		need -= n
	}
	return s.buf
}

// appendFiller appends one filler NAL unit taking n bytes with its length
// prefix (n >= lenSize+2).
func appendFiller(b []byte, lenSize, n int) []byte {
	size := n - lenSize
	for i := lenSize - 1; i >= 0; i-- {
		b = append(b, byte(size>>(8*i)))
	}
	b = append(b, flv.NALFiller) // nal_ref_idc 0, as the spec requires
	start := len(b)
	b = append(b, make([]byte, size-2)...)
	for i := start; i < len(b); i++ {
		b[i] = 0xff
	}
	return append(b, 0x80)
}

// metadata builds the stream's onMetaData: the recording's figures, the
// padded bitrate, and duration 0 (live: a player must not stop at the
// recording's length).
func (s *Source) metadata(audio bool) []byte {
	var e amfWriter
	e.str("onMetaData")
	e.b = append(e.b, 0x08) // ECMA array
	countAt := len(e.b)
	e.b = append(e.b, 0, 0, 0, 0)
	n := 0
	num := func(k string, v float64) { e.key(k); e.num(v); n++ }
	num("duration", 0)
	if s.info.Width > 0 && s.info.Height > 0 {
		num("width", float64(s.info.Width))
		num("height", float64(s.info.Height))
	}
	// ffmpeg writes data rates in units of 1024 bit/s; follow it, as ffmpeg
	// and ffprobe are the players that read these.
	num("videodatarate", float64(s.info.VideoBitrate)/1024)
	num("framerate", s.info.FPS)
	num("videocodecid", float64(flv.CodecAVC))
	if audio {
		num("audiodatarate", float64(s.info.AudioBitrate)/1024)
		num("audiosamplerate", float64(s.info.SampleRate))
		num("audiosamplesize", 16)
		e.key("stereo")
		e.b = append(e.b, 0x01, b2u8(s.info.Channels == 2))
		n++
		num("audiocodecid", float64(flv.SoundAAC))
	}
	e.key("encoder")
	e.str("lastmile media/sample")
	n++
	binary.BigEndian.PutUint32(e.b[countAt:], uint32(n))
	e.b = append(e.b, 0, 0, 0x09) // object end
	return e.b
}

func b2u8(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// amfWriter writes the few AMF0 types onMetaData needs. media/amf0 is the
// general codec; this keeps the sample free of a dependency for 30 lines.
type amfWriter struct{ b []byte }

func (e *amfWriter) key(k string) {
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(k)))
	e.b = append(e.b, k...)
}

func (e *amfWriter) str(v string) {
	e.b = append(e.b, 0x02)
	e.key(v)
}

func (e *amfWriter) num(v float64) {
	e.b = append(e.b, 0x00)
	e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(v))
}

// metaNumber finds a number property in an onMetaData body by its encoded
// key, enough to carry width and height over from the recording.
func metaNumber(data []byte, key string) float64 {
	pat := binary.BigEndian.AppendUint16(nil, uint16(len(key)))
	pat = append(append(pat, key...), 0x00)
	i := bytes.Index(data, pat)
	if i < 0 || len(data) < i+len(pat)+8 {
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(data[i+len(pat):]))
	if math.IsNaN(v) || v < 0 || v > 1<<16 {
		return 0
	}
	return v
}
