package player

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/lastmile-qoe/lastmile/media/clock"
)

// A minimal MPEG-TS demuxer: enough of PAT, PMT and PES to find the video
// and audio access units of an HLS segment with their timestamps, keyframes
// and in-band decoder configuration. Every length is checked against the
// packet: a broken segment is an error, never a panic.

const tsPacketSize = 188

// maxPES bounds one PES packet being assembled (a 4K keyframe is a few MB).
const maxPES = 8 << 20

var errTSSync = errors.New("mpeg-ts: lost sync (no 0x47 sync byte)")

// TS stream types the player understands.
const (
	streamH264 = 0x1b
	streamHEVC = 0x24
	streamAAC  = 0x0f
	streamMP3a = 0x03
	streamMP3b = 0x04
)

type tsDemuxer struct {
	pmtPID     int // -1 until the PAT names it
	videoPID   int // -1 when none
	audioPID   int
	videoCodec string
	audioCodec string
	video      []byte // PES being assembled
	audio      []byte
	emit       func(frame) error
}

func newTSDemuxer(emit func(frame) error) *tsDemuxer {
	return &tsDemuxer{pmtPID: -1, videoPID: -1, audioPID: -1, emit: emit}
}

// packet consumes one 188-byte packet.
func (d *tsDemuxer) packet(p []byte) error {
	if len(p) != tsPacketSize || p[0] != 0x47 {
		return errTSSync
	}
	pusi := p[1]&0x40 != 0
	pid := int(p[1]&0x1f)<<8 | int(p[2])
	afc := p[3] >> 4 & 3
	if afc&1 == 0 {
		return nil // adaptation field only, no payload
	}
	start := 4
	if afc&2 != 0 {
		start = 5 + int(p[4])
		if start > tsPacketSize {
			return fmt.Errorf("mpeg-ts: pid %d: adaptation field longer than the packet", pid)
		}
	}
	payload := p[start:]
	switch {
	case pid == 0:
		if pusi {
			d.pat(payload)
		}
	case pid == d.pmtPID:
		if pusi {
			d.pmt(payload)
		}
	case pid == d.videoPID:
		return d.pes(&d.video, pusi, payload, kindVideo)
	case pid == d.audioPID:
		return d.pes(&d.audio, pusi, payload, kindAudio)
	}
	return nil
}

// section returns the PSI section after the pointer field, bounded by its
// section_length (without the CRC); nil when malformed.
func section(payload []byte) []byte {
	if len(payload) < 1 {
		return nil
	}
	ptr := int(payload[0])
	if 1+ptr+3 > len(payload) {
		return nil
	}
	s := payload[1+ptr:]
	n := int(s[1]&0x0f)<<8 | int(s[2])
	if n < 4 || 3+n > len(s) {
		return nil // sections spanning packets do not occur for our small tables
	}
	return s[:3+n-4]
}

func (d *tsDemuxer) pat(payload []byte) {
	s := section(payload)
	if len(s) < 8 || s[0] != 0 {
		return
	}
	for i := 8; i+4 <= len(s); i += 4 {
		program := int(s[i])<<8 | int(s[i+1])
		if program != 0 { // 0 is the network PID
			d.pmtPID = int(s[i+2]&0x1f)<<8 | int(s[i+3])
			return
		}
	}
}

func (d *tsDemuxer) pmt(payload []byte) {
	s := section(payload)
	if len(s) < 12 || s[0] != 2 {
		return
	}
	i := 12 + (int(s[10]&0x0f)<<8 | int(s[11]))
	for i+5 <= len(s) {
		typ := s[i]
		pid := int(s[i+1]&0x1f)<<8 | int(s[i+2])
		i += 5 + (int(s[i+3]&0x0f)<<8 | int(s[i+4]))
		switch typ {
		case streamH264, streamHEVC:
			if d.videoPID < 0 {
				d.videoPID = pid
				d.videoCodec = map[byte]string{streamH264: "h264", streamHEVC: "hevc"}[typ]
			}
		case streamAAC, streamMP3a, streamMP3b:
			if d.audioPID < 0 {
				d.audioPID = pid
				d.audioCodec = map[byte]string{streamAAC: "aac", streamMP3a: "mp3", streamMP3b: "mp3"}[typ]
			}
		}
	}
}

// pes assembles a PES packet; a new one (pusi) completes the previous.
func (d *tsDemuxer) pes(buf *[]byte, pusi bool, payload []byte, kind frameKind) error {
	if pusi {
		if err := d.flushOne(buf, kind); err != nil {
			return err
		}
	} else if len(*buf) == 0 {
		return nil // continuation of a PES we did not see start
	}
	if len(*buf)+len(payload) > maxPES {
		return fmt.Errorf("mpeg-ts: PES longer than %d bytes", maxPES)
	}
	*buf = append(*buf, payload...)
	return nil
}

// flush completes the PES packets in progress (end of a segment).
func (d *tsDemuxer) flush() error {
	if err := d.flushOne(&d.video, kindVideo); err != nil {
		return err
	}
	return d.flushOne(&d.audio, kindAudio)
}

func (d *tsDemuxer) flushOne(buf *[]byte, kind frameKind) error {
	b := *buf
	*buf = b[:0]
	if len(b) == 0 {
		return nil
	}
	if len(b) < 9 || b[0] != 0 || b[1] != 0 || b[2] != 1 {
		return errors.New("mpeg-ts: PES without a start code")
	}
	flags := b[7] >> 6
	hdr := 9 + int(b[8])
	if hdr > len(b) || flags == 1 || (flags&2 != 0 && len(b) < 14) || (flags == 3 && len(b) < 19) {
		return errors.New("mpeg-ts: PES header longer than the packet")
	}
	if flags&2 == 0 {
		return nil // no timestamp: nothing a player can schedule
	}
	ts := pts90(b[9:14])
	if flags == 3 {
		ts = pts90(b[14:19]) // DTS: decode order, like FLV timestamps
	}
	f := frame{kind: kind, ts: ts / 90}
	data := b[hdr:]
	if kind == kindVideo {
		f.codec = d.videoCodec
		f.needConfig = true
		f.picture, f.key, f.config = scanNALs(data, d.videoCodec == "hevc")
		if d.videoCodec == "h264" {
			f.capture, _ = clock.FromAnnexB(data)
		}
	} else {
		f.codec = d.audioCodec
		f.picture, f.key = true, true // ADTS frames carry their own configuration
	}
	return d.emit(f)
}

// pts90 decodes a 33-bit PTS/DTS field (90 kHz).
func pts90(b []byte) int64 {
	return int64(b[0]>>1&7)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
}

// scanNALs looks through an Annex B access unit for pictures, keyframes
// (IDR, or HEVC IRAP) and parameter sets.
func scanNALs(b []byte, hevc bool) (picture, key, config bool) {
	for {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 || i+3 >= len(b) {
			return
		}
		b = b[i+3:]
		if hevc {
			t := b[0] >> 1 & 0x3f
			switch {
			case t <= 21:
				picture = true
				key = key || t >= 16
			case t == 32 || t == 33 || t == 34:
				config = true
			}
			continue
		}
		switch t := b[0] & 0x1f; {
		case t >= 1 && t <= 5:
			picture = true
			key = key || t == 5
		case t == 7 || t == 8:
			config = true
		}
	}
}
