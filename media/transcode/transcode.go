// Package transcode makes the renditions of a ladder from a source stream.
// The default, Synthetic, is a rate-reducing transcoder that fits a whole
// topology on 2 cores: it keeps the source's pictures and sizes each video
// frame to the rendition's bitrate with H.264 filler data (NAL type 12),
// which decoders skip, so every rendition stays a real, decodable stream
// whose bitrate is the rendition's. An audio-only rendition drops video.
package transcode

import (
	"fmt"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// nalFiller is the H.264 filler data NAL unit type.
const nalFiller = 12

// Synthetic transforms a source's tags into one rendition. Not safe for
// concurrent use: one per rendition worker.
type Synthetic struct {
	// BitrateKbps is the rendition's total target (video part: minus the
	// audio, which passes through unchanged).
	BitrateKbps int
	AudioOnly   bool

	lenSize  int     // NAL length size from the AVC sequence header
	fps      float64 // measured from video timestamps
	lastTime uint32
	frames   int
	out      []byte
}

// Transform returns the rendition's version of t, or ok=false when the
// rendition drops it. The returned tag's Data is valid until the next call.
func (s *Synthetic) Transform(t *flv.Tag) (out flv.Tag, ok bool, err error) {
	switch {
	case t.IsAudio(), t.IsScript():
		return *t, true, nil
	case !t.IsVideo() || s.AudioOnly:
		return flv.Tag{}, false, nil
	case t.IsSequenceHeader():
		cfg, err := flv.ParseAVCConfig(t.Data)
		if err != nil {
			return flv.Tag{}, false, fmt.Errorf("transcode: %w", err)
		}
		s.lenSize = cfg.LengthSize
		return *t, true, nil
	}
	if pt, ok := flv.AVCPacketType(t); !ok || pt != 1 || s.lenSize == 0 {
		return *t, true, nil // end of sequence, or frames before a header: pass through
	}
	s.measure(t.Time)
	// Keep the header and every NAL unit but filler, then pad to the
	// rendition's per-frame budget.
	s.out = append(s.out[:0], t.Data[:5]...)
	for nalu, err := range flv.NALUs(t.Data, s.lenSize) {
		if err != nil {
			return flv.Tag{}, false, fmt.Errorf("transcode: %w", err)
		}
		if flv.NALType(nalu) == nalFiller {
			continue
		}
		s.out = appendLen(s.out, len(nalu), s.lenSize)
		s.out = append(s.out, nalu...)
	}
	if budget := s.frameBudget(); budget > len(s.out) {
		s.out = appendFiller(s.out, budget-len(s.out), s.lenSize)
	}
	return flv.Tag{Type: t.Type, Time: t.Time, Data: s.out}, true, nil
}

// measure keeps a running frame rate from the video timestamps.
func (s *Synthetic) measure(ms uint32) {
	if s.frames > 0 && ms > s.lastTime {
		f := 1000 / float64(ms-s.lastTime)
		if s.fps == 0 {
			s.fps = f
		} else {
			s.fps += (f - s.fps) / 16
		}
	}
	s.lastTime = ms
	s.frames++
}

// frameBudget is the bytes a video frame gets at the target bitrate.
func (s *Synthetic) frameBudget() int {
	fps := s.fps
	if fps <= 0 {
		fps = 25
	}
	return int(float64(s.BitrateKbps) * 1000 / 8 / fps)
}

func appendLen(b []byte, n, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// appendFiller appends one filler NAL unit taking n bytes in all (length
// prefix included): header 0x0c, 0xff payload, rbsp trailing bits 0x80.
func appendFiller(b []byte, n, lenSize int) []byte {
	body := n - lenSize
	if body < 2 {
		return b
	}
	b = appendLen(b, body, lenSize)
	b = append(b, nalFiller)
	for i := 0; i < body-2; i++ {
		b = append(b, 0xff)
	}
	return append(b, 0x80)
}
