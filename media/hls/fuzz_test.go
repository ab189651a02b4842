package hls

import (
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// FuzzWriteTag feeds arbitrary tag bodies to a packager that already has
// valid sequence headers, so that the frame paths are reached: it must
// never panic, and what it publishes must stay a valid playlist.
func FuzzWriteTag(f *testing.F) {
	for _, tg := range synthStream(0.2, 25, true, true) {
		f.Add(tg.Type, tg.Time, tg.Data)
	}
	f.Add(flv.TagVideo, uint32(100), append([]byte{0x17, 0, 0, 0, 0}, testConfig...))
	f.Add(flv.TagAudio, uint32(100), []byte{0xaf, 0, 0x2b, 0x11, 0x88, 0x00})
	f.Add(flv.TagVideo, uint32(3000), []byte{0x17, 1, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0x65})
	f.Fuzz(func(t *testing.T, typ uint8, ms uint32, data []byte) {
		p := NewPackager("fuzz", Options{TargetDuration: time.Second})
		for _, tg := range synthStream(1.1, 25, true, true) {
			if err := p.WriteTag(&tg); err != nil {
				t.Fatal(err)
			}
		}
		tag := flv.Tag{Type: typ, Time: ms, Data: data}
		_ = p.WriteTag(&tag)
		// And the stream goes on.
		more := synthStream(2.1, 25, true, true)
		for _, tg := range more {
			if tg.Time >= 1100 {
				tg.Time += ms
				_ = p.WriteTag(&tg)
			}
		}
		p.Close()
		if _, err := ParsePlaylist(p.Playlist()); err != nil {
			t.Fatalf("playlist after tag type %d % x: %v\n%s", typ, data, err, p.Playlist())
		}
	})
}

// BenchmarkWriteTag packages 6 s of ffmpeg-encoded 320x180 H.264 + AAC
// per iteration; MB/s is FLV input.
func BenchmarkWriteTag(b *testing.B) {
	tags := ffmpegFLV(b, avArgs)
	b.SetBytes(int64(flvBytes(tags)))
	b.ReportAllocs()
	for b.Loop() {
		p := NewPackager("bench", Options{})
		for i := range tags {
			if err := p.WriteTag(&tags[i]); err != nil {
				b.Fatal(err)
			}
		}
		p.Close()
	}
	b.ReportMetric(float64(len(tags)), "tags/op")
}
