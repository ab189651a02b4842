package player

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/clock"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

// maxTagSize bounds one FLV tag from an edge: a 4K keyframe is a few MB;
// more is a broken stream, not a reason to allocate 16 MiB.
const maxTagSize = 8 << 20

// readFLV parses an HTTP-FLV body into frames until it ends.
func (c *conn) readFLV(ctx context.Context, body io.Reader) (int, error) {
	r := flv.NewReader(body)
	r.MaxDataSize = maxTagSize
	if _, err := r.ReadHeader(); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && r.Offset() == 0 {
			return CodeStreamEnded, fmt.Errorf("edge closed the stream before the FLV header: %w", io.EOF)
		}
		return CodeReadError, fmt.Errorf("http-flv: %w", err)
	}
	var stamps clock.Tracker
	for {
		t, err := r.ReadTag()
		if err != nil {
			if err == io.EOF {
				return CodeStreamEnded, io.EOF
			}
			return CodeReadError, fmt.Errorf("http-flv at byte %d: %w", r.Offset(), err)
		}
		f, ok := flvFrame(&t)
		if !ok {
			continue
		}
		f.capture, _ = stamps.Capture(&t)
		f.at = c.now()
		if !c.send(ctx, msg{kind: msgFrame, at: f.at, f: f}) {
			return 0, ctx.Err()
		}
	}
}

// flvFrame reduces a tag to a frame; ok is false for tags the player
// ignores (other script data).
func flvFrame(t *flv.Tag) (frame, bool) {
	f := frame{ts: int64(t.Time)}
	switch {
	case t.IsVideo():
		if len(t.Data) == 0 {
			return f, false
		}
		f.kind = kindVideo
		codec := t.Data[0] & 0x0f
		f.codec = videoCodecName(codec)
		f.needConfig = codec == flv.CodecAVC || codec == flv.CodecHEVC
		f.config = t.IsSequenceHeader()
		f.picture = t.IsFrame()
		f.key = f.picture && t.IsKeyframe()
	case t.IsAudio():
		if len(t.Data) == 0 {
			return f, false
		}
		f.kind = kindAudio
		sound := t.Data[0] >> 4
		f.codec = audioCodecName(sound)
		f.needConfig = sound == flv.SoundAAC
		f.config = t.IsSequenceHeader()
		f.picture = !f.config
		f.key = f.picture // every audio frame starts decoding
	case t.IsMetadata():
		meta, err := amf0.ParseMetaData(t.Data)
		if err != nil {
			return f, false // metadata only helps the decode model; a bad one is not fatal
		}
		f.kind = kindMeta
		w, _ := meta.Number("width")
		h, _ := meta.Number("height")
		if w > 0 && h > 0 && w < 1<<15 && h < 1<<15 {
			f.width, f.height = int(w), int(h)
		}
	default:
		return f, false
	}
	return f, true
}

func videoCodecName(id uint8) string {
	switch id {
	case flv.CodecAVC:
		return "h264"
	case flv.CodecHEVC:
		return "hevc"
	case 2:
		return "h263"
	case 4, 5:
		return "vp6"
	}
	return fmt.Sprintf("flv-video-%d", id)
}

func audioCodecName(id uint8) string {
	switch id {
	case flv.SoundAAC:
		return "aac"
	case 2, 14:
		return "mp3"
	}
	return fmt.Sprintf("flv-audio-%d", id)
}
