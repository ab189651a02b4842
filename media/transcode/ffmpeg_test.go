package transcode

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/sample"
)

// TestFFmpegRendition: the real transcoder turns 3 s of the sample into a
// decodable H.264 rendition at the asked size, with the audio kept.
func TestFFmpegRendition(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg not found: .ci/run installs it")
		}
		t.Skip("ffmpeg not found; install ffmpeg to run this test")
	}
	src, err := sample.New(sample.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := flv.AppendHeader(nil, flv.Header{Audio: true, Video: true})
	for {
		tag, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tag.Time > 3000 {
			break
		}
		in = flv.AppendTag(in, &tag)
	}
	ff := &FFmpeg{BitrateKbps: 300, Width: 320, Height: 180}
	var videos, audios, keys int
	var cfg flv.AVCConfig
	err = ff.Run(context.Background(), bytes.NewReader(in), func(t *flv.Tag) error {
		switch {
		case t.IsVideo() && t.IsSequenceHeader():
			c, err := flv.ParseAVCConfig(t.Data)
			cfg = c
			return err
		case t.IsKeyframe():
			keys++
			videos++
		case t.IsVideo():
			videos++
		case t.IsAudio() && !t.IsSequenceHeader():
			audios++
		}
		return nil
	})
	if err != nil && err.Error() != "EOF" {
		t.Fatalf("ffmpeg: %v", err)
	}
	if len(cfg.SPS) == 0 || videos < 60 || keys < 2 || audios < 100 {
		t.Errorf("rendition: SPS %d, %d video frames (%d keyframes), %d audio frames; want an AVC config, ~75 frames, a keyframe a second, ~130 audio frames",
			len(cfg.SPS), videos, keys, audios)
	}
}
