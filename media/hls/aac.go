package hls

import (
	"fmt"
)

// aacConfig is what ADTS needs from an AudioSpecificConfig (ISO 14496-3
// 1.6.2.1).
type aacConfig struct {
	profile    uint8 // ADTS profile: audio object type - 1
	freqIndex  uint8
	channels   uint8
	sampleRate int
}

var aacSampleRates = [...]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// parseASC reads the fields of an AudioSpecificConfig that ADTS can carry.
// HE-AAC (SBR, PS) configs map to their AAC-LC core, which is how ADTS
// signals them implicitly.
func parseASC(b []byte) (*aacConfig, error) {
	r := bitReader{b: b}
	aot := readAOT(&r)
	freq := r.read(4)
	if freq == 15 {
		return nil, fmt.Errorf("aac config: explicit sample rate cannot be carried in ADTS")
	}
	ch := r.read(4)
	if aot == 5 || aot == 29 { // SBR / PS: the core object type follows
		if r.read(4) == 15 {
			r.read(24)
		}
		aot = readAOT(&r)
	}
	if r.err {
		return nil, fmt.Errorf("aac config: %d bytes: %w", len(b), errShort)
	}
	if aot < 1 || aot > 4 {
		return nil, fmt.Errorf("aac config: audio object type %d cannot be carried in ADTS", aot)
	}
	if int(freq) >= len(aacSampleRates) {
		return nil, fmt.Errorf("aac config: sample rate index %d is reserved", freq)
	}
	if ch == 0 || ch > 7 {
		return nil, fmt.Errorf("aac config: channel configuration %d not supported", ch)
	}
	return &aacConfig{profile: uint8(aot - 1), freqIndex: uint8(freq), channels: uint8(ch), sampleRate: aacSampleRates[freq]}, nil
}

func readAOT(r *bitReader) uint32 {
	aot := r.read(5)
	if aot == 31 {
		aot = 32 + r.read(6)
	}
	return aot
}

// adtsHeaderLen is the ADTS header without CRC.
const adtsHeaderLen = 7

// maxADTSFrame is the largest frame the 13-bit ADTS frame_length holds.
const maxADTSFrame = 1<<13 - 1

// appendADTS appends one raw AAC frame with its ADTS header.
func appendADTS(dst []byte, c *aacConfig, frame []byte) ([]byte, error) {
	n := adtsHeaderLen + len(frame)
	if n > maxADTSFrame {
		return dst, fmt.Errorf("aac frame of %d bytes is too large for ADTS", len(frame))
	}
	dst = append(dst,
		0xff,
		0xf1, // MPEG-4, layer 0, no CRC
		c.profile<<6|c.freqIndex<<2|c.channels>>2,
		(c.channels&3)<<6|byte(n>>11),
		byte(n>>3),
		byte(n&7)<<5|0x1f, // buffer fullness 0x7ff: variable bit rate
		0xfc,              // ...and one raw data block
	)
	return append(dst, frame...), nil
}

// bitReader reads big-endian bit fields; reading past the end sets err
// and yields zeros, so parsers check once at the end.
type bitReader struct {
	b   []byte
	pos int // in bits
	err bool
}

func (r *bitReader) read(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		if r.pos>>3 >= len(r.b) {
			r.err = true
			return 0
		}
		bit := r.b[r.pos>>3] >> (7 - uint(r.pos&7)) & 1
		v = v<<1 | uint32(bit)
		r.pos++
	}
	return v
}
