package transcode

import (
	"context"
	"testing"

	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/sample"
)

// TestSyntheticBitrate: a 2 Mbit/s source becomes each rendition's bitrate,
// frames stay well-formed AVCC, and audio-only drops every video tag.
func TestSyntheticBitrate(t *testing.T) {
	for _, tc := range []struct {
		kbps      int
		audioOnly bool
	}{{800, false}, {500, false}, {64, true}} {
		src, err := sample.New(sample.Options{VideoBitrate: 2_000_000})
		if err != nil {
			t.Fatal(err)
		}
		s := &Synthetic{BitrateKbps: tc.kbps, AudioOnly: tc.audioOnly}
		var videoBytes, videos int
		var first, last uint32
		lenSize := 0
		for i := 0; i < 800; i++ {
			tag, err := src.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out, ok, err := s.Transform(&tag)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			if tc.audioOnly && out.IsVideo() {
				t.Fatal("audio-only rendition kept a video tag")
			}
			if out.IsSequenceHeader() && out.IsVideo() {
				cfg, _ := flv.ParseAVCConfig(out.Data)
				lenSize = cfg.LengthSize
			}
			if out.IsVideo() && !out.IsSequenceHeader() {
				for _, err := range flv.NALUs(out.Data, lenSize) {
					if err != nil {
						t.Fatalf("frame %d malformed: %v", videos, err)
					}
				}
				if videos == 0 {
					first = out.Time
				}
				videos++
				videoBytes += len(out.Data)
				last = out.Time
			}
		}
		if tc.audioOnly {
			continue
		}
		kbps := float64(videoBytes) * 8 / float64(last-first) // bytes*8/ms = kbit/s
		if kbps < 0.85*float64(tc.kbps) || kbps > 1.3*float64(tc.kbps) {
			t.Errorf("rendition %d kbps came out at %.0f kbps", tc.kbps, kbps)
		}
	}
}
