// Package clock carries the publisher's capture clock through the stream, so
// that every hop can measure true latency: an H.264 SEI NAL unit of type
// user_data_unregistered (payloadType 5) whose payload is the lastmile UUID
// followed by the capture wall-clock time in Unix milliseconds (8 bytes, big
// endian). It rides in the access unit of the frame it stamps, so it
// survives every path of the stack untouched: RTMP and HTTP-FLV carry the
// NAL units as they are, the HLS packager copies them into the Annex B
// access unit of the TS segment, the synthetic transcoder keeps every NAL
// unit but filler, and ffmpeg's libx264 re-emits it with -udu_sei 1.
//
// One parser (ParseSEI) serves every reader; FromAVCC and FromAnnexB find
// the stamp in an FLV tag body or an MPEG-TS access unit.
package clock

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// UUID identifies a lastmile capture stamp among user_data_unregistered
// messages (x264, for one, writes its own).
var UUID = [16]byte{0x6c, 0x61, 0x73, 0x74, 0x6d, 0x69, 0x6c, 0x65, 0x2d, 0x63, 0x61, 0x70, 0x74, 0x75, 0x72, 0x65} // "lastmile-capture"

// Every is how often the publisher stamps a frame (keyframes are always
// stamped, so a viewer starting at a keyframe reads one at once).
const Every = time.Second

const (
	seiUserDataUnregistered = 5
	payloadSize             = 16 + 8
)

// SEI returns an SEI NAL unit (header byte included, no length prefix or
// start code) stamping capture time ms, with emulation prevention applied.
func SEI(ms int64) []byte {
	rbsp := make([]byte, 0, 3+payloadSize)
	rbsp = append(rbsp, seiUserDataUnregistered, payloadSize)
	rbsp = append(rbsp, UUID[:]...)
	rbsp = binary.BigEndian.AppendUint64(rbsp, uint64(ms))
	rbsp = append(rbsp, 0x80) // rbsp_trailing_bits
	nal := []byte{flv.NALSEI}
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			nal = append(nal, 3)
			zeros = 0
		}
		nal = append(nal, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return nal
}

// ParseSEI returns the capture time carried by an H.264 SEI NAL unit
// (header byte included); ok is false for any other NAL unit, an SEI
// without a lastmile stamp, or malformed bytes.
func ParseSEI(nal []byte) (ms int64, ok bool) {
	if flv.NALType(nal) != flv.NALSEI {
		return 0, false
	}
	p := unescape(nal[1:])
	for len(p) > 0 && !(len(p) == 1 && p[0] == 0x80) {
		typ, n, ok := seiNumber(p)
		if !ok {
			return 0, false
		}
		size, m, ok := seiNumber(p[n:])
		if !ok || size > len(p)-n-m {
			return 0, false
		}
		body := p[n+m : n+m+size]
		if typ == seiUserDataUnregistered && size >= payloadSize && bytes.Equal(body[:16], UUID[:]) {
			return int64(binary.BigEndian.Uint64(body[16:24])), true
		}
		p = p[n+m+size:]
	}
	return 0, false
}

// seiNumber reads an SEI payloadType or payloadSize: 0xff bytes adding 255
// each, then a last byte; n is the bytes read.
func seiNumber(p []byte) (v, n int, ok bool) {
	for n < len(p) {
		b := p[n]
		n++
		v += int(b)
		if b != 0xff {
			return v, n, true
		}
		if v > 1<<20 {
			return 0, 0, false // longer than any NAL unit we accept
		}
	}
	return 0, 0, false
}

// unescape removes emulation prevention bytes (00 00 03 → 00 00).
func unescape(p []byte) []byte {
	if !bytes.Contains(p, []byte{0, 0, 3}) {
		return p
	}
	out := make([]byte, 0, len(p))
	zeros := 0
	for _, b := range p {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// FromAVCC returns the capture stamp of an AVC NALU video tag body
// (flv.Tag.Data) whose NAL units have lenSize-byte length prefixes.
func FromAVCC(data []byte, lenSize int) (ms int64, ok bool) {
	for nal, err := range flv.NALUs(data, lenSize) {
		if err != nil {
			return 0, false
		}
		if ms, ok := ParseSEI(nal); ok {
			return ms, true
		}
	}
	return 0, false
}

// FromAnnexB returns the capture stamp of an H.264 Annex B access unit (an
// MPEG-TS video PES payload).
func FromAnnexB(au []byte) (ms int64, ok bool) {
	for {
		i := bytes.Index(au, []byte{0, 0, 1})
		if i < 0 {
			return 0, false
		}
		au = au[i+3:]
		end := bytes.Index(au, []byte{0, 0, 1})
		nal := au
		if end >= 0 {
			nal = au[:end]
		}
		nal = bytes.TrimRight(nal, "\x00") // trailing_zero_8bits, or the next 4-byte start code's zero
		if ms, ok := ParseSEI(nal); ok {
			return ms, true
		}
	}
}

// Stamp returns an AVC NALU video tag body (flv.Tag.Data) with a capture
// stamp inserted before its first picture NAL unit (SEI must precede the
// coded picture), appended to dst[:0]. Without a picture NAL unit, or on a
// malformed body, it returns data unchanged and false.
func Stamp(dst, data []byte, lenSize int, ms int64) ([]byte, bool) {
	off, pos := -1, 5 // pos: the current NAL unit's length prefix
	for nal, err := range flv.NALUs(data, lenSize) {
		if err != nil {
			return data, false
		}
		if t := flv.NALType(nal); t >= flv.NALSlice && t <= flv.NALIDR {
			off = pos
			break
		}
		pos += lenSize + len(nal)
	}
	if off < 0 {
		return data, false
	}
	sei := SEI(ms)
	dst = append(dst[:0], data[:off]...)
	for i := lenSize - 1; i >= 0; i-- {
		dst = append(dst, byte(len(sei)>>(8*i)))
	}
	dst = append(dst, sei...)
	return append(dst, data[off:]...), true
}

// Tracker reads the capture stamps of one FLV stream: it learns the NAL
// length size from the AVC sequence header. Not safe for concurrent use.
type Tracker struct{ lenSize int }

// Capture returns the capture stamp of t, a tag of the stream in order;
// ok is false for tags without one.
func (tr *Tracker) Capture(t *flv.Tag) (ms int64, ok bool) {
	typ, isAVC := flv.AVCPacketType(t)
	if !isAVC || t.Data[0]&0x0f != flv.CodecAVC {
		return 0, false
	}
	switch typ {
	case flv.AVCSequenceHeader:
		if c, err := flv.ParseAVCConfig(t.Data); err == nil {
			tr.lenSize = c.LengthSize
		}
	case flv.AVCNALU:
		if tr.lenSize > 0 {
			return FromAVCC(t.Data, tr.lenSize)
		}
	}
	return 0, false
}

// LenSize is the NAL length size learnt, 0 before a sequence header.
func (tr *Tracker) LenSize() int { return tr.lenSize }

// Ms is a latency in whole milliseconds, rounded up: a stamped frame that
// crossed a hop within its capture millisecond reports 1 ms, so 0 keeps
// meaning "no stamp seen yet".
func Ms(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// Since is the latency from capture time ms to now, never negative (clocks
// of one machine; across machines it is as good as their NTP).
func Since(ms int64, now time.Time) time.Duration {
	return max(0, now.Sub(time.UnixMilli(ms)))
}
