package player

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/flv"
	"github.com/lastmile-qoe/lastmile/media/hls"
	"github.com/lastmile-qoe/lastmile/media/sample"
)

// sampleSegments packages 3 s of the sample stream into HLS segments.
func sampleSegments(t testing.TB) [][]byte {
	t.Helper()
	src, err := sample.New(sample.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := hls.NewPackager("t", hls.Options{TargetDuration: time.Second})
	for {
		tag, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tag.Time > 3000 {
			break
		}
		if err := p.WriteTag(&tag); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	var segs [][]byte
	for n := uint64(0); ; n++ {
		b, ok := p.Segment(n)
		if !ok {
			break
		}
		segs = append(segs, b)
	}
	if len(segs) < 2 {
		t.Fatalf("packager made %d segments of 3 s", len(segs))
	}
	return segs
}

func demuxAll(data []byte) ([]frame, error) {
	var out []frame
	d := newTSDemuxer(func(f frame) error { out = append(out, f); return nil })
	for len(data) >= tsPacketSize {
		if err := d.packet(data[:tsPacketSize]); err != nil {
			return out, err
		}
		data = data[tsPacketSize:]
	}
	return out, d.flush()
}

// The demuxer finds in real segments what the FLV had: 25 fps H.264 with a
// keyframe (carrying SPS/PPS) every second, and AAC.
func TestTSDemuxSample(t *testing.T) {
	var video, keys, audio int
	last := int64(-1)
	for i, seg := range sampleSegments(t) {
		frames, err := demuxAll(seg)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		for j, f := range frames {
			switch f.kind {
			case kindVideo:
				if j == 0 || (video == 0) {
					if !f.key || !f.config {
						t.Errorf("segment %d starts with %+v, want a keyframe with its SPS", i, f)
					}
				}
				if f.codec != "h264" || !f.picture || f.ts <= last {
					t.Errorf("video frame %+v after ts %d", f, last)
				}
				last = f.ts
				video++
				if f.key {
					keys++
				}
			case kindAudio:
				if f.codec != "aac" {
					t.Errorf("audio frame %+v", f)
				}
				audio++
			}
		}
	}
	if video < 70 || keys < 3 || keys > 4 || audio == 0 {
		t.Errorf("%d video frames, %d keyframes, %d audio PES in 3 s", video, keys, audio)
	}
}

// A broken segment is an error, never a panic.
func FuzzTSDemux(f *testing.F) {
	segs := sampleSegments(f)
	f.Add(segs[0][:tsPacketSize*8])
	f.Add(segs[1][:tsPacketSize*3])
	f.Add([]byte{0x47, 0x40, 0x00, 0x30, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data)%tsPacketSize != 0 {
			data = append(data, make([]byte, tsPacketSize-len(data)%tsPacketSize)...)
		}
		demuxAll(data)
	})
}

// readFLVAll runs the FLV body parser on b, collecting frames. Every tag
// takes at least 15 bytes, so the channel holds every frame and readFLV runs
// on this goroutine: a fuzz execution costs no goroutine switch per frame.
func readFLVAll(b []byte) ([]frame, int, error) {
	ch := make(chan msg, len(b)/(flv.TagHeaderSize+4)+1)
	c := &conn{now: time.Now, bytes: new(atomic.Int64), out: ch}
	code, err := c.readFLV(context.Background(), bytes.NewReader(b))
	close(ch)
	var frames []frame
	for m := range ch {
		frames = append(frames, m.f)
	}
	return frames, code, err
}

func sampleFLV(t testing.TB, tags int) []byte {
	t.Helper()
	src, err := sample.New(sample.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := flv.AppendHeader(nil, flv.Header{Audio: true, Video: true})
	for range tags {
		tag, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b = flv.AppendTag(b, &tag)
	}
	return b
}

func TestReadFLV(t *testing.T) {
	b := sampleFLV(t, 60)
	frames, code, err := readFLVAll(b)
	if code != CodeStreamEnded || err != io.EOF {
		t.Fatalf("clean end: code %d, err %v", code, err)
	}
	if frames[0].kind != kindMeta || frames[0].width != 426 || frames[0].height != 240 {
		t.Errorf("first frame %+v, want the metadata", frames[0])
	}
	var seq, key bool
	for _, f := range frames {
		if f.kind == kindVideo && f.config && !f.picture {
			seq = true
		}
		if f.kind == kindVideo && f.key {
			if !seq {
				t.Error("keyframe before the sequence header")
			}
			key = true
		}
	}
	if !seq || !key {
		t.Errorf("no sequence header or keyframe in %d frames", len(frames))
	}

	// Cut inside a tag: a read error, not a clean end.
	if _, code, err := readFLVAll(b[:len(b)-3]); code != CodeReadError || err == nil {
		t.Errorf("truncated: code %d, err %v", code, err)
	}
	// Not FLV at all.
	if _, code, _ := readFLVAll([]byte("HTTP/1.1 200 OK\r\n")); code != CodeReadError {
		t.Errorf("garbage: code %d", code)
	}
	// Nothing at all.
	if _, code, _ := readFLVAll(nil); code != CodeStreamEnded {
		t.Errorf("empty body: code %d", code)
	}
}

// shortFLV is the start of the sample stream with its metadata cut to the
// picture size and every picture and audio frame to its first 16 bytes (the
// player reads no more of them): ~0.3 KB instead of ~7 KB for 8 tags.
func shortFLV(t testing.TB, tags int) []byte {
	t.Helper()
	src, err := sample.New(sample.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := flv.AppendHeader(nil, flv.Header{Audio: true, Video: true})
	for range tags {
		tag, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tag.IsMetadata():
			tag.Data, err = amf0.Encode(nil, amf0.OnMetaData, amf0.ECMAArray{{Key: "width", Value: 426.0}, {Key: "height", Value: 240.0}})
			if err != nil {
				t.Fatal(err)
			}
		case !tag.IsSequenceHeader() && len(tag.Data) > 16:
			tag.Data = tag.Data[:16]
		}
		b = flv.AppendTag(b, &tag)
	}
	return b
}

// Any body ends, in time linear in its size, with frames or an error.
// Seeds stay small: the fuzzer minimizes every new input it finds, in time
// quadratic in its size; from the former ~7 KB sample seed, each worker spent
// the 60 s default minimizing and counted no executions (the "stall").
func FuzzReadFLV(f *testing.F) {
	f.Add(shortFLV(f, 8))
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\x00\x00\x05"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, code, err := readFLVAll(b)
		if err == nil || (code != CodeStreamEnded && code != CodeReadError) {
			t.Fatalf("readFLV ended with code %d, err %v", code, err)
		}
	})
}
