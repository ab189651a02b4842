package flv

import (
	"errors"
	"fmt"
	"iter"
)

// AVCPacketType values: the second byte of an AVC or HEVC video tag.
const (
	AVCSequenceHeader uint8 = 0 // body is an AVCDecoderConfigurationRecord
	AVCNALU           uint8 = 1 // body is length-prefixed NAL units
	AVCEndOfSequence  uint8 = 2
)

// H.264 NAL unit types (ISO/IEC 14496-10 table 7-1) that the stack looks at.
const (
	NALSlice  uint8 = 1
	NALIDR    uint8 = 5
	NALSEI    uint8 = 6
	NALSPS    uint8 = 7
	NALPPS    uint8 = 8
	NALAUD    uint8 = 9
	NALFiller uint8 = 12
)

// NALType is the nal_unit_type of an H.264 NAL unit (0 for an empty one).
func NALType(nalu []byte) uint8 {
	if len(nalu) == 0 {
		return 0
	}
	return nalu[0] & 0x1f
}

// videoHeaderSize is FrameType/CodecID, AVCPacketType and CompositionTime.
const videoHeaderSize = 5

// ErrNotAVC reports a video tag that is not the AVC/HEVC packet a helper
// expects.
var ErrNotAVC = errors.New("flv: not an AVC packet of the expected kind")

// AVCPacketType returns the AVCPacketType of an AVC or HEVC video tag; ok is
// false for other tags.
func AVCPacketType(t *Tag) (typ uint8, ok bool) {
	if t.Type != TagVideo || len(t.Data) < 2 {
		return 0, false
	}
	if c := t.Data[0] & 0x0f; c != CodecAVC && c != CodecHEVC {
		return 0, false
	}
	return t.Data[1], true
}

// IsFrame reports a video tag carrying a picture (AVC/HEVC NALUs, or any
// other codec's frame), as opposed to a sequence header, an end of sequence
// or a command frame (frame type 5).
func (t *Tag) IsFrame() bool {
	if t.Type != TagVideo || len(t.Data) == 0 || t.Data[0]>>4 == 5 {
		return false
	}
	if typ, ok := AVCPacketType(t); ok {
		return typ == AVCNALU
	}
	return true
}

// CompositionTime returns the composition time offset (pts - dts, in ms) of
// an AVC/HEVC NALU tag, a signed 24-bit field; 0 for any other tag.
func CompositionTime(t *Tag) int32 {
	if typ, ok := AVCPacketType(t); !ok || typ != AVCNALU || len(t.Data) < videoHeaderSize {
		return 0
	}
	v := int32(t.Data[2])<<16 | int32(t.Data[3])<<8 | int32(t.Data[4])
	return v << 8 >> 8 // sign-extend 24 bits
}

// AVCConfig is the decoder configuration carried by an AVC sequence header
// (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 5.2.4.1). SPS and PPS
// alias the parsed body.
type AVCConfig struct {
	Profile       uint8 // AVCProfileIndication (66 baseline, 77 main, 100 high)
	Compatibility uint8
	Level         uint8 // level_idc, e.g. 30 for 3.0
	LengthSize    int   // bytes in each NAL unit length prefix: 1, 2 or 4
	SPS           [][]byte
	PPS           [][]byte
}

// ParseAVCConfig parses the body of an AVC sequence header tag (Tag.Data,
// starting with the 5-byte video tag header).
func ParseAVCConfig(data []byte) (AVCConfig, error) {
	if len(data) < videoHeaderSize || data[0]&0x0f != CodecAVC || data[1] != AVCSequenceHeader {
		return AVCConfig{}, fmt.Errorf("%w: want an AVC sequence header", ErrNotAVC)
	}
	return ParseAVCDecoderConfig(data[videoHeaderSize:])
}

// ParseAVCDecoderConfig parses a bare AVCDecoderConfigurationRecord.
func ParseAVCDecoderConfig(rec []byte) (AVCConfig, error) {
	if len(rec) < 6 {
		return AVCConfig{}, fmt.Errorf("flv: AVC config: %d bytes, need at least 6", len(rec))
	}
	if rec[0] != 1 {
		return AVCConfig{}, fmt.Errorf("flv: AVC config: configurationVersion %d, want 1", rec[0])
	}
	c := AVCConfig{
		Profile:       rec[1],
		Compatibility: rec[2],
		Level:         rec[3],
		LengthSize:    int(rec[4]&0x03) + 1,
	}
	p := rec[5:]
	var err error
	c.SPS, p, err = paramSets(p, int(p[0]&0x1f), "SPS")
	if err != nil {
		return AVCConfig{}, err
	}
	if len(p) < 1 {
		return AVCConfig{}, fmt.Errorf("flv: AVC config: missing PPS count")
	}
	c.PPS, _, err = paramSets(p, int(p[0]), "PPS")
	if err != nil {
		return AVCConfig{}, err
	}
	// High-profile records may carry chroma/bit-depth extensions after the
	// PPS; the SPS says the same, so they are not parsed.
	return c, nil
}

// paramSets reads count u16-length-prefixed NAL units after the count byte.
func paramSets(p []byte, count int, what string) ([][]byte, []byte, error) {
	p = p[1:]
	sets := make([][]byte, 0, count)
	for i := range count {
		if len(p) < 2 {
			return nil, nil, fmt.Errorf("flv: AVC config: %s %d of %d: length truncated", what, i+1, count)
		}
		n := int(p[0])<<8 | int(p[1])
		if n == 0 || len(p)-2 < n {
			return nil, nil, fmt.Errorf("flv: AVC config: %s %d of %d: %d bytes, %d left", what, i+1, count, n, len(p)-2)
		}
		sets = append(sets, p[2:2+n:2+n])
		p = p[2+n:]
	}
	return sets, p, nil
}

// NALUs iterates over the NAL units of an AVC/HEVC NALU video tag body
// (Tag.Data: the 5-byte video tag header is skipped), each prefixed by a
// big-endian length of lenSize bytes (AVCConfig.LengthSize). The units alias
// data. On malformed input it yields one final (nil, error) and stops.
func NALUs(data []byte, lenSize int) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		if lenSize < 1 || lenSize > 4 {
			yield(nil, fmt.Errorf("flv: NAL unit length size %d, want 1 to 4", lenSize))
			return
		}
		if len(data) < videoHeaderSize || (data[0]&0x0f != CodecAVC && data[0]&0x0f != CodecHEVC) || data[1] != AVCNALU {
			yield(nil, fmt.Errorf("%w: want an AVC/HEVC NALU tag", ErrNotAVC))
			return
		}
		p := data[videoHeaderSize:]
		off := videoHeaderSize
		for len(p) > 0 {
			if len(p) < lenSize {
				yield(nil, fmt.Errorf("flv: NAL unit at byte %d: length truncated", off))
				return
			}
			n := 0
			for _, b := range p[:lenSize] {
				n = n<<8 | int(b)
			}
			p = p[lenSize:]
			if n > len(p) {
				yield(nil, fmt.Errorf("flv: NAL unit at byte %d: %d bytes, only %d left", off, n, len(p)))
				return
			}
			if !yield(p[:n:n], nil) {
				return
			}
			p = p[n:]
			off += lenSize + n
		}
	}
}
