package transcode

import (
	"bytes"
	"context"
	"os/exec"
	"testing"

	"github.com/lastmile-qoe/lastmile/media/clock"
	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/sample"
)

// stampBase is the capture time of media time 0 in the stamped input.
const stampBase = int64(1_764_950_400_000)

// stampedSample is 3 s of the sample with every keyframe stamped with
// stampBase + its timestamp, as the publisher does.
func stampedSample(t *testing.T) []flv.Tag {
	t.Helper()
	src, err := sample.New(sample.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var tr clock.Tracker
	var tags []flv.Tag
	for {
		tag, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tag.Time > 3000 {
			return tags
		}
		tr.Capture(&tag)
		if tag.IsFrame() && tag.IsKeyframe() {
			if out, ok := clock.Stamp(nil, tag.Data, tr.LenSize(), stampBase+int64(tag.Time)); ok {
				tag.Data = out
			}
		}
		tags = append(tags, tag.Clone())
	}
}

// checkStamps: the rendition's stamps sit on the frames of the input's
// stamped frames, give or take a frame interval (ffmpeg may shift the
// output clock by a frame).
func checkStamps(t *testing.T, name string, out []flv.Tag, want int) {
	t.Helper()
	var tr clock.Tracker
	n := 0
	for i := range out {
		ms, ok := tr.Capture(&out[i])
		if !ok {
			continue
		}
		n++
		if d := ms - stampBase - int64(out[i].Time); d < -40 || d > 40 {
			t.Errorf("%s: frame at %d ms carries the stamp of %d ms", name, out[i].Time, ms-stampBase)
		}
	}
	if n < want {
		t.Errorf("%s: %d stamped output frames, want %d (one per input keyframe)", name, n, want)
	}
}

func TestSyntheticCarriesStamp(t *testing.T) {
	in := stampedSample(t)
	tc := &Synthetic{BitrateKbps: 500}
	var out []flv.Tag
	for i := range in {
		o, ok, err := tc.Transform(&in[i])
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out = append(out, o.Clone())
		}
	}
	checkStamps(t, "synthetic", out, 3)
}

func TestFFmpegCarriesStamp(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not found; install ffmpeg to run this test")
	}
	in := flv.AppendHeader(nil, flv.Header{Audio: true, Video: true})
	for _, tag := range stampedSample(t) {
		in = flv.AppendTag(in, &tag)
	}
	var out []flv.Tag
	ff := &FFmpeg{BitrateKbps: 300, Width: 320, Height: 180}
	err := ff.Run(context.Background(), bytes.NewReader(in), func(t *flv.Tag) error {
		out = append(out, t.Clone())
		return nil
	})
	if err != nil && err.Error() != "EOF" {
		t.Fatalf("ffmpeg: %v", err)
	}
	checkStamps(t, "ffmpeg", out, 3)
}
