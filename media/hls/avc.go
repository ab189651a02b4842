package hls

import (
	"errors"
	"fmt"
)

// H.264 NAL unit types the packager looks at.
const (
	nalIDR = 5
	nalSPS = 7
	nalPPS = 8
	nalAUD = 9
)

var (
	startCode = []byte{0, 0, 0, 1}
	// audNAL is an access unit delimiter with primary_pic_type 7 ("any
	// slice type"); Annex B in MPEG-TS wants one at the start of every
	// access unit, and AVCC (FLV) streams normally carry none.
	audNAL = []byte{0x09, 0xf0}
)

// avcConfig is what the packager keeps from an
// AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1).
type avcConfig struct {
	lengthSize int
	sps, pps   [][]byte
}

var errShort = errors.New("truncated")

// parseAVCConfig reads an AVCDecoderConfigurationRecord. The parameter sets
// are copied: the tag body belongs to the caller.
func parseAVCConfig(b []byte) (*avcConfig, error) {
	if len(b) < 7 {
		return nil, fmt.Errorf("avc config: %d bytes: %w", len(b), errShort)
	}
	if b[0] != 1 {
		return nil, fmt.Errorf("avc config: version %d, want 1", b[0])
	}
	c := &avcConfig{lengthSize: int(b[4]&0x03) + 1}
	if c.lengthSize == 3 {
		return nil, fmt.Errorf("avc config: NAL length size 3 is not allowed")
	}
	pos := 6
	readSets := func(n int, what string) ([][]byte, error) {
		var sets [][]byte
		for i := 0; i < n; i++ {
			if pos+2 > len(b) {
				return nil, fmt.Errorf("avc config: %s %d length: %w", what, i, errShort)
			}
			l := int(b[pos])<<8 | int(b[pos+1])
			pos += 2
			if l == 0 || pos+l > len(b) {
				return nil, fmt.Errorf("avc config: %s %d of %d bytes: %w", what, i, l, errShort)
			}
			sets = append(sets, append([]byte(nil), b[pos:pos+l]...))
			pos += l
		}
		return sets, nil
	}
	var err error
	if c.sps, err = readSets(int(b[5]&0x1f), "SPS"); err != nil {
		return nil, err
	}
	if pos >= len(b) {
		return nil, fmt.Errorf("avc config: PPS count: %w", errShort)
	}
	n := int(b[pos])
	pos++
	if c.pps, err = readSets(n, "PPS"); err != nil {
		return nil, err
	}
	if len(c.sps) == 0 || len(c.pps) == 0 {
		return nil, fmt.Errorf("avc config: %d SPS and %d PPS, need at least one of each", len(c.sps), len(c.pps))
	}
	// Trailing High-profile fields (chroma format, bit depth, SPS ext) are
	// not needed to write Annex B and are ignored.
	return c, nil
}

// avccToAnnexB appends one access unit in Annex B form to dst: an AUD
// first (unless the frame has one), then SPS and PPS before an IDR that does
// not carry them in band, so that every segment decodes on its own.
// It reports whether the access unit holds an IDR slice.
func avccToAnnexB(dst, src []byte, c *avcConfig) (out []byte, idr bool, err error) {
	// A first pass validates lengths and learns what the frame carries
	// before anything is written.
	var hasAUD, hasSPS bool
	first := true
	for pos := 0; pos < len(src); {
		n, err := nalLen(src[pos:], c.lengthSize)
		if err != nil {
			return dst, false, fmt.Errorf("NAL at byte %d: %w", pos, err)
		}
		pos += c.lengthSize
		if n > 0 {
			switch src[pos] & 0x1f {
			case nalIDR:
				idr = true
			case nalSPS:
				hasSPS = true
			case nalAUD:
				hasAUD = hasAUD || first
			}
			first = false
		}
		pos += n
	}
	if first {
		return dst, false, errors.New("no NAL units")
	}
	if !hasAUD {
		dst = append(dst, startCode...)
		dst = append(dst, audNAL...)
	}
	wroteSets := !idr || hasSPS
	for pos := 0; pos < len(src); {
		n, _ := nalLen(src[pos:], c.lengthSize)
		pos += c.lengthSize
		if n == 0 {
			continue
		}
		nal := src[pos : pos+n]
		pos += n
		t := nal[0] & 0x1f
		if !wroteSets && t != nalAUD {
			for _, s := range c.sps {
				dst = append(append(dst, startCode...), s...)
			}
			for _, s := range c.pps {
				dst = append(append(dst, startCode...), s...)
			}
			wroteSets = true
		}
		dst = append(append(dst, startCode...), nal...)
	}
	return dst, idr, nil
}

func nalLen(b []byte, size int) (int, error) {
	if len(b) < size {
		return 0, fmt.Errorf("length field: %w", errShort)
	}
	n := 0
	for i := 0; i < size; i++ {
		n = n<<8 | int(b[i])
	}
	if n > len(b)-size {
		return 0, fmt.Errorf("length %d, %d bytes left: %w", n, len(b)-size, errShort)
	}
	return n, nil
}
