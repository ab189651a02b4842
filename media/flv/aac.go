package flv

import (
	"errors"
	"fmt"
)

// AACPacketType values: the second byte of an AAC audio tag.
const (
	AACSequenceHeader uint8 = 0 // body is an AudioSpecificConfig
	AACRaw            uint8 = 1 // body is one raw AAC frame
)

// AudioSpecificConfig is the part of an AAC AudioSpecificConfig (ISO/IEC
// 14496-3 1.6.2.1) that muxers and players need. With explicit SBR/PS
// signalling (object type 5 or 29) ObjectType, SampleRate and
// SampleRateIndex describe the core AAC layer, which is what an ADTS header
// carries, and SBR/PS are set.
type AudioSpecificConfig struct {
	ObjectType      uint8 // 2 is AAC-LC
	SampleRateIndex uint8 // 0..12, or 15 when the rate is explicit
	SampleRate      int   // Hz
	ChannelConfig   uint8 // 0 means a program config element decides
	Channels        int   // 0 when ChannelConfig is 0
	SBR, PS         bool
}

var aacRates = [13]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// ErrNotAAC reports an audio tag that is not an AAC sequence header.
var ErrNotAAC = errors.New("flv: not an AAC sequence header")

// ParseAACConfig parses the AudioSpecificConfig in the body of an AAC
// sequence header tag (Tag.Data, starting with the 2-byte audio tag header).
func ParseAACConfig(data []byte) (AudioSpecificConfig, error) {
	if len(data) < 2 || data[0]>>4 != SoundAAC || data[1] != AACSequenceHeader {
		return AudioSpecificConfig{}, ErrNotAAC
	}
	return ParseAudioSpecificConfig(data[2:])
}

// ParseAudioSpecificConfig parses a bare AudioSpecificConfig.
func ParseAudioSpecificConfig(asc []byte) (AudioSpecificConfig, error) {
	br := bitReader{b: asc}
	var c AudioSpecificConfig
	c.ObjectType = br.objectType()
	var err error
	c.SampleRateIndex, c.SampleRate, err = br.sampleRate()
	if err != nil {
		return AudioSpecificConfig{}, err
	}
	c.ChannelConfig = uint8(br.read(4))
	if c.ObjectType == 5 || c.ObjectType == 29 {
		c.SBR, c.PS = true, c.ObjectType == 29
		// The extension (SBR) rate comes next, then the core object type.
		if _, _, err := br.sampleRate(); err != nil {
			return AudioSpecificConfig{}, err
		}
		c.ObjectType = br.objectType()
	}
	if br.short {
		return AudioSpecificConfig{}, fmt.Errorf("flv: AudioSpecificConfig truncated (%d bytes)", len(asc))
	}
	if c.ObjectType == 0 {
		return AudioSpecificConfig{}, fmt.Errorf("flv: AudioSpecificConfig: object type 0 is invalid")
	}
	switch {
	case c.ChannelConfig >= 1 && c.ChannelConfig <= 6:
		c.Channels = int(c.ChannelConfig)
	case c.ChannelConfig == 7:
		c.Channels = 8
	case c.ChannelConfig != 0:
		return AudioSpecificConfig{}, fmt.Errorf("flv: AudioSpecificConfig: reserved channel configuration %d", c.ChannelConfig)
	}
	return c, nil
}

// FrameDuration is the duration of one AAC frame in milliseconds (1024
// samples per frame for AAC-LC; SBR doubles the output rate, not the time).
func (c AudioSpecificConfig) FrameDuration() float64 {
	if c.SampleRate == 0 {
		return 0
	}
	return 1024 * 1000 / float64(c.SampleRate)
}

// bitReader reads big-endian bit fields; reading past the end yields zeros
// and sets short, so callers check once at the end.
type bitReader struct {
	b     []byte
	pos   int // in bits
	short bool
}

func (r *bitReader) read(n int) uint32 {
	var v uint32
	for range n {
		i := r.pos >> 3
		if i >= len(r.b) {
			r.short = true
			v <<= 1
			continue
		}
		v = v<<1 | uint32(r.b[i]>>(7-uint(r.pos&7)))&1
		r.pos++
	}
	return v
}

func (r *bitReader) objectType() uint8 {
	t := r.read(5)
	if t == 31 {
		t = 32 + r.read(6)
	}
	return uint8(t)
}

func (r *bitReader) sampleRate() (uint8, int, error) {
	i := uint8(r.read(4))
	switch {
	case i == 15:
		return i, int(r.read(24)), nil
	case int(i) < len(aacRates):
		return i, aacRates[i], nil
	}
	return 0, 0, fmt.Errorf("flv: AudioSpecificConfig: reserved sampling frequency index %d", i)
}
