package flv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

func stream(h Header, tags ...Tag) []byte {
	b := AppendHeader(nil, h)
	for i := range tags {
		b = AppendTag(b, &tags[i])
	}
	return b
}

func TestAppendHeader(t *testing.T) {
	for _, c := range []struct {
		h    Header
		want []byte
	}{
		{Header{Audio: true, Video: true}, []byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0}},
		{Header{Video: true}, []byte{'F', 'L', 'V', 1, 1, 0, 0, 0, 9, 0, 0, 0, 0}},
		{Header{Audio: true}, []byte{'F', 'L', 'V', 1, 4, 0, 0, 0, 9, 0, 0, 0, 0}},
	} {
		if got := AppendHeader(nil, c.h); !bytes.Equal(got, c.want) {
			t.Errorf("AppendHeader(%+v) = % x, want % x", c.h, got, c.want)
		}
	}
}

func TestAppendTagLayout(t *testing.T) {
	// 0x12345678 ms needs the extended timestamp byte: 0x345678 in the
	// 24-bit field and 0x12 after it.
	tag := Tag{Type: TagVideo, Time: 0x12345678, Data: []byte{0x17, 1, 0, 0, 0, 0xaa}}
	got := AppendTag(nil, &tag)
	want := []byte{
		9, 0, 0, 6, 0x34, 0x56, 0x78, 0x12, 0, 0, 0,
		0x17, 1, 0, 0, 0, 0xaa,
		0, 0, 0, 17,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendTag = % x\nwant      % x", got, want)
	}
	if TagSize(&tag) != len(want) {
		t.Errorf("TagSize = %d, want %d", TagSize(&tag), len(want))
	}
}

func TestAppendTagDoesNotAllocate(t *testing.T) {
	tag := Tag{Type: TagVideo, Time: 40, Data: make([]byte, 10000)}
	buf := make([]byte, 0, TagSize(&tag)+HeaderSize+4)
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendHeader(buf[:0], Header{Audio: true, Video: true})
		_ = AppendTag(b[:0], &tag)
	})
	if allocs != 0 {
		t.Errorf("AppendHeader+AppendTag allocated %v times per call, want 0", allocs)
	}
}

func TestAppendTagTooLarge(t *testing.T) {
	tag := Tag{Type: TagVideo, Data: make([]byte, MaxDataSize+1)}
	if got := AppendTag([]byte("x"), &tag); string(got) != "x" {
		t.Errorf("oversize tag appended %d bytes, want none", len(got)-1)
	}
}

func TestRoundTrip(t *testing.T) {
	in := []Tag{
		{Type: TagScript, Time: 0, Data: []byte{2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}},
		{Type: TagVideo, Time: 0, Data: []byte{0x17, 0, 0, 0, 0, 1, 2, 3}},
		{Type: TagAudio, Time: 23, Data: []byte{0xaf, 1, 9, 9}},
		{Type: TagVideo, Time: 40, Data: []byte{0x27, 1, 0, 0, 0}},
		{Type: TagVideo, Time: 1<<24 + 5, Data: nil}, // extended timestamp, empty body
	}
	r := NewReader(bytes.NewReader(stream(Header{Audio: true, Video: true}, in...)))
	h, err := r.ReadHeader()
	if err != nil || h != (Header{Audio: true, Video: true}) {
		t.Fatalf("ReadHeader = %+v, %v", h, err)
	}
	for i, want := range in {
		got, err := r.ReadTagCopy()
		if err != nil {
			t.Fatalf("tag %d: %v", i, err)
		}
		if got.Type != want.Type || got.Time != want.Time || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("tag %d = %+v, want %+v", i, got, want)
		}
	}
	if _, err := r.ReadTag(); err != io.EOF {
		t.Fatalf("after last tag: %v, want io.EOF", err)
	}
	if _, err := r.ReadTag(); err != io.EOF {
		t.Fatalf("EOF is not sticky: %v", err)
	}
}

func TestReadTagWithoutReadHeader(t *testing.T) {
	r := NewReader(bytes.NewReader(stream(Header{Video: true}, Tag{Type: TagVideo, Time: 7, Data: []byte{0x27, 1}})))
	tag, err := r.ReadTag()
	if err != nil || tag.Time != 7 {
		t.Fatalf("ReadTag = %+v, %v", tag, err)
	}
}

func TestReaderErrors(t *testing.T) {
	good := stream(Header{Audio: true, Video: true}, Tag{Type: TagVideo, Time: 1, Data: []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}})
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
		wantMsg string
	}{
		{"empty", nil, 0, io.ErrUnexpectedEOF, "empty stream"},
		{"signature", mod(func(b []byte) []byte { b[0] = 'G'; return b }), 0, ErrSignature, ""},
		{"html instead of flv", []byte("<html><body>404</body></html>"), 0, ErrSignature, ""},
		{"version", mod(func(b []byte) []byte { b[3] = 2; return b }), 0, ErrHeader, "version 2"},
		{"data offset too small", mod(func(b []byte) []byte { b[8] = 3; return b }), 0, ErrHeader, "DataOffset 3"},
		{"huge data offset", mod(func(b []byte) []byte { b[5] = 0x7f; return b }), 0, ErrHeader, "DataOffset"},
		{"PreviousTagSize0", mod(func(b []byte) []byte { b[12] = 1; return b }), 0, ErrPrevTagSize, "PreviousTagSize0"},
		{"truncated header", good[:5], 0, io.ErrUnexpectedEOF, ""},
		{"truncated tag header", good[:13+4], 0, io.ErrUnexpectedEOF, "tag header at offset 13"},
		{"truncated body", good[:13+11+3], 0, io.ErrUnexpectedEOF, "body truncated (3 of 10 bytes)"},
		{"truncated trailer", good[:len(good)-1], 0, io.ErrUnexpectedEOF, "PreviousTagSize truncated"},
		{"bad trailer", mod(func(b []byte) []byte { b[len(b)-1]++; return b }), 0, ErrPrevTagSize, ""},
		{"unknown tag type", mod(func(b []byte) []byte { b[13] = 7; return b }), 0, ErrTagType, "0x07"},
		{"encrypted", mod(func(b []byte) []byte { b[13] |= 0x20; return b }), 0, ErrTagType, "encrypted"},
		{"over limit", good, 4, ErrTagTooLarge, "10 bytes, limit 4"},
		{"claims 16 MiB, has 6 bytes", mod(func(b []byte) []byte { b[14], b[15], b[16] = 0xff, 0xff, 0xff; return b[:30] }), 0, io.ErrUnexpectedEOF, "of 16777215 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.in))
			r.MaxDataSize = c.max
			var err error
			for range 3 {
				if _, err = r.ReadTag(); err != nil {
					break
				}
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q does not say %q", err, c.wantMsg)
			}
			if _, again := r.ReadTag(); again == nil || again.Error() != err.Error() {
				t.Errorf("error not sticky: then %v", again)
			}
		})
	}
}

func TestHeaderExtensionSkipped(t *testing.T) {
	b := []byte{'F', 'L', 'V', 1, 1, 0, 0, 0, 12, 0xee, 0xee, 0xee, 0, 0, 0, 0}
	tag := Tag{Type: TagVideo, Time: 3, Data: []byte{0x27, 1}}
	b = AppendTag(b, &tag)
	r := NewReader(bytes.NewReader(b))
	got, err := r.ReadTag()
	if err != nil || got.Time != 3 {
		t.Fatalf("ReadTag = %+v, %v", got, err)
	}
	if r.Offset() != int64(len(b)) {
		t.Errorf("Offset = %d, want %d", r.Offset(), len(b))
	}
}

func TestReadTagReusesBuffer(t *testing.T) {
	tags := make([]Tag, 50)
	for i := range tags {
		tags[i] = Tag{Type: TagAudio, Time: uint32(i), Data: bytes.Repeat([]byte{byte(i)}, 300)}
	}
	data := stream(Header{Audio: true}, tags...)
	allocs := testing.AllocsPerRun(20, func() {
		r := NewReader(bytes.NewReader(data))
		for {
			if _, err := r.ReadTag(); err != nil {
				break
			}
		}
	})
	// The Reader, its bufio buffer and one body buffer; nothing per tag.
	if allocs > 5 {
		t.Errorf("reading 50 tags allocated %v times, want a constant few", allocs)
	}
}

func sampleFLV(t testing.TB) []byte {
	b, err := os.ReadFile("../sample/testdata/sample.flv")
	if err != nil {
		t.Skipf("sample not found: %v", err)
	}
	return b
}

// TestSampleFile reads the ffmpeg-made sample and checks what ffprobe says
// about it: 100 video frames (4 keyframes), AAC-LC 44.1 kHz mono, H.264 Main.
func TestSampleFile(t *testing.T) {
	r := NewReader(bytes.NewReader(sampleFLV(t)))
	h, err := r.ReadHeader()
	if err != nil || !h.Audio || !h.Video {
		t.Fatalf("header %+v, %v", h, err)
	}
	var frames, keys, audio int
	var avc AVCConfig
	var asc AudioSpecificConfig
	var meta bool
	var last uint32
	for {
		tag, err := r.ReadTag()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if typ, _ := AVCPacketType(&tag); typ == AVCEndOfSequence {
			continue // ffmpeg stamps it with the last frame's time, after later audio
		}
		if tag.Time < last {
			t.Fatalf("time went back: %d after %d", tag.Time, last)
		}
		last = tag.Time
		switch {
		case tag.IsMetadata():
			meta = true
		case tag.IsVideo() && tag.IsSequenceHeader():
			if avc, err = ParseAVCConfig(tag.Clone().Data); err != nil { // SPS/PPS alias Data
				t.Fatal(err)
			}
		case tag.IsAudio() && tag.IsSequenceHeader():
			if asc, err = ParseAACConfig(tag.Data); err != nil {
				t.Fatal(err)
			}
		case tag.IsFrame():
			frames++
			if CompositionTime(&tag) != 0 {
				t.Errorf("frame at %d: composition time %d with no B-frames", tag.Time, CompositionTime(&tag))
			}
			var types []uint8
			for nalu, err := range NALUs(tag.Data, avc.LengthSize) {
				if err != nil {
					t.Fatalf("frame at %d: %v", tag.Time, err)
				}
				types = append(types, NALType(nalu))
			}
			hasIDR := bytes.IndexByte(types, NALIDR) >= 0
			if tag.IsKeyframe() != hasIDR {
				t.Errorf("frame at %d: keyframe %v but NAL types %v", tag.Time, tag.IsKeyframe(), types)
			}
			if hasIDR {
				keys++
			}
		case tag.IsAudio():
			audio++
		}
	}
	if !meta || frames != 100 || keys != 4 || audio < 170 {
		t.Errorf("metadata %v, %d frames, %d keyframes, %d audio frames; want true, 100, 4, >=170", meta, frames, keys, audio)
	}
	if avc.Profile != 77 || avc.LengthSize != 4 || len(avc.SPS) != 1 || len(avc.PPS) != 1 || NALType(avc.SPS[0]) != NALSPS || NALType(avc.PPS[0]) != NALPPS {
		t.Errorf("AVC config %+v", avc)
	}
	if asc != (AudioSpecificConfig{ObjectType: 2, SampleRateIndex: 4, SampleRate: 44100, ChannelConfig: 1, Channels: 1}) {
		t.Errorf("AAC config %+v", asc)
	}
}

func TestCompositionTime(t *testing.T) {
	for _, c := range []struct {
		data []byte
		want int32
	}{
		{[]byte{0x27, 1, 0, 0, 80}, 80},
		{[]byte{0x27, 1, 0xff, 0xff, 0xd8}, -40},
		{[]byte{0x17, 0, 0, 0, 80}, 0}, // sequence header
		{[]byte{0x27, 1, 0}, 0},        // short
		{[]byte{0x22, 1, 0, 0, 80}, 0}, // H.263
	} {
		tag := Tag{Type: TagVideo, Data: c.data}
		if got := CompositionTime(&tag); got != c.want {
			t.Errorf("CompositionTime(% x) = %d, want %d", c.data, got, c.want)
		}
	}
}

func TestNALUs(t *testing.T) {
	body := []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0xaa, 0, 0, 0, 1, 0x0c}
	var got [][]byte
	for n, err := range NALUs(body, 4) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if want := [][]byte{{0x41, 0xaa}, {0x0c}}; !reflect.DeepEqual(got, want) {
		t.Errorf("NALUs = %x, want %x", got, want)
	}
	two := []byte{0x27, 1, 0, 0, 0, 0, 1, 0x65, 0, 2, 0x41, 0x9a}
	got = nil
	for n, err := range NALUs(two, 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if want := [][]byte{{0x65}, {0x41, 0x9a}}; !reflect.DeepEqual(got, want) {
		t.Errorf("NALUs(lenSize 2) = %x, want %x", got, want)
	}

	for _, c := range []struct {
		name string
		body []byte
		size int
		msg  string
	}{
		{"overrun", []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 9, 0x41}, 4, "9 bytes, only 1 left"},
		{"short prefix", []byte{0x27, 1, 0, 0, 0, 0, 0}, 4, "length truncated"},
		{"sequence header", []byte{0x17, 0, 0, 0, 0, 1}, 4, "NALU tag"},
		{"bad length size", body, 3 + 2, "length size 5"},
	} {
		var err error
		for _, e := range NALUs(c.body, c.size) {
			err = e
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestParseAVCConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"not a sequence header", []byte{0x17, 1, 0, 0, 0, 1, 77, 0, 30, 0xff, 0xe1}, "AVC sequence header"},
		{"short", []byte{0x17, 0, 0, 0, 0, 1, 77}, "need at least 6"},
		{"version", []byte{0x17, 0, 0, 0, 0, 2, 77, 0, 30, 0xff, 0xe1}, "configurationVersion 2"},
		{"sps overrun", []byte{0x17, 0, 0, 0, 0, 1, 77, 0, 30, 0xff, 0xe1, 0, 9, 0x67}, "SPS 1 of 1"},
		{"no pps count", []byte{0x17, 0, 0, 0, 0, 1, 77, 0, 30, 0xff, 0xe1, 0, 1, 0x67}, "missing PPS count"},
		{"pps overrun", []byte{0x17, 0, 0, 0, 0, 1, 77, 0, 30, 0xff, 0xe1, 0, 1, 0x67, 1, 0, 4, 0x68}, "PPS 1 of 1"},
	} {
		if _, err := ParseAVCConfig(c.data); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.msg)
		}
	}
}

func TestParseAudioSpecificConfig(t *testing.T) {
	for _, c := range []struct {
		asc  []byte
		want AudioSpecificConfig
		msg  string
	}{
		{asc: []byte{0x12, 0x10}, want: AudioSpecificConfig{ObjectType: 2, SampleRateIndex: 4, SampleRate: 44100, ChannelConfig: 2, Channels: 2}},
		{asc: []byte{0x11, 0x88}, want: AudioSpecificConfig{ObjectType: 2, SampleRateIndex: 3, SampleRate: 48000, ChannelConfig: 1, Channels: 1}},
		// HE-AAC, explicit: SBR at 44.1 kHz over a 22.05 kHz AAC-LC core.
		{asc: []byte{0x2b, 0x92, 0x08, 0x00}, want: AudioSpecificConfig{ObjectType: 2, SampleRateIndex: 7, SampleRate: 22050, ChannelConfig: 2, Channels: 2, SBR: true}},
		// Explicit 24-bit rate (index 15): 0x00ac44 = 44100.
		{asc: []byte{0x17, 0x80, 0x56, 0x22, 0x08}, want: AudioSpecificConfig{ObjectType: 2, SampleRateIndex: 15, SampleRate: 44100, ChannelConfig: 1, Channels: 1}},
		{asc: []byte{0x12}, msg: "truncated"},
		{asc: nil, msg: "truncated"},
		{asc: []byte{0x16, 0x90}, msg: "reserved sampling frequency index 13"},
		{asc: []byte{0x12, 0x40}, msg: "reserved channel configuration 8"},
	} {
		got, err := ParseAudioSpecificConfig(c.asc)
		if c.msg != "" {
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("% x: error %v, want %q", c.asc, err, c.msg)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("% x = %+v, %v; want %+v", c.asc, got, err, c.want)
		}
	}
	if _, err := ParseAACConfig([]byte{0xaf, 1, 0x12, 0x10}); !errors.Is(err, ErrNotAAC) {
		t.Errorf("raw AAC frame parsed as config: %v", err)
	}
}

func TestScriptName(t *testing.T) {
	meta := []byte{2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 8, 0, 0, 0, 0}
	set := append([]byte{2, 0, 13, '@', 's', 'e', 't', 'D', 'a', 't', 'a', 'F', 'r', 'a', 'm', 'e'}, meta...)
	for _, d := range [][]byte{meta, set} {
		tag := Tag{Type: TagScript, Data: d}
		if !tag.IsMetadata() {
			t.Errorf("% x: not metadata", d)
		}
	}
	if got := StripSetDataFrame(set); !bytes.Equal(got, meta) {
		t.Errorf("StripSetDataFrame = % x", got)
	}
	if got := StripSetDataFrame(meta); !bytes.Equal(got, meta) {
		t.Errorf("StripSetDataFrame changed plain metadata")
	}
	for _, d := range [][]byte{nil, {2, 0}, {2, 0, 50, 'o'}, {0, 0, 0}} {
		if ScriptName(d) != "" {
			t.Errorf("ScriptName(% x) = %q", d, ScriptName(d))
		}
	}
}

func TestClone(t *testing.T) {
	a := Tag{Type: TagAudio, Time: 5, Data: []byte{1, 2}}
	b := a.Clone()
	b.Data[0] = 9
	if a.Data[0] != 1 || b.Time != 5 {
		t.Error("Clone shares Data or lost fields")
	}
}

// FuzzReader feeds arbitrary bytes to the Reader: it must never panic, and
// whatever tags it accepts must survive a write/read round trip unchanged.
func FuzzReader(f *testing.F) {
	f.Add(stream(Header{Audio: true, Video: true},
		Tag{Type: TagScript, Data: []byte{2, 0, 1, 'x'}},
		Tag{Type: TagVideo, Time: 1 << 25, Data: []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}}))
	f.Add([]byte("FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\xff\xff\xff"))
	f.Add([]byte("FLV"))
	if b, err := os.ReadFile("../sample/testdata/sample.flv"); err == nil {
		f.Add(b[:min(len(b), 4096)])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		r.MaxDataSize = 1 << 20
		h, err := r.ReadHeader()
		if err != nil {
			return
		}
		var tags []Tag
		for {
			tag, err := r.ReadTagCopy()
			if err != nil {
				break
			}
			tags = append(tags, tag)
			if len(tag.Data) > r.MaxDataSize {
				t.Fatalf("tag of %d bytes over the limit", len(tag.Data))
			}
		}
		r2 := NewReader(bytes.NewReader(stream(h, tags...)))
		for i, want := range tags {
			got, err := r2.ReadTag()
			if err != nil {
				t.Fatalf("re-read tag %d: %v", i, err)
			}
			if got.Type != want.Type || got.Time != want.Time || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("re-read tag %d = %+v, want %+v", i, got, want)
			}
		}
		if _, err := r2.ReadTag(); err != io.EOF {
			t.Fatalf("re-read end: %v", err)
		}
	})
}

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, Header{Video: true})
	tags := []Tag{{Type: TagVideo, Time: 0, Data: []byte{0x17, 1}}, {Type: TagVideo, Time: 40, Data: []byte{0x27, 1}}}
	for i := range tags {
		if err := w.WriteTag(&tags[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(b.Bytes(), stream(Header{Video: true}, tags...)) {
		t.Errorf("Writer output differs from AppendHeader+AppendTag")
	}
	if err := w.WriteTag(&Tag{Type: TagVideo, Data: make([]byte, MaxDataSize+1)}); !errors.Is(err, ErrTagTooLarge) {
		t.Errorf("oversize tag: %v", err)
	}
}

func BenchmarkAppendTag(b *testing.B) {
	tag := Tag{Type: TagVideo, Time: 40, Data: make([]byte, 10000)}
	buf := make([]byte, 0, TagSize(&tag))
	b.SetBytes(int64(TagSize(&tag)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTag(buf[:0], &tag)
	}
}

func BenchmarkReadTag(b *testing.B) {
	tags := make([]Tag, 100)
	for i := range tags {
		tags[i] = Tag{Type: TagVideo, Time: uint32(i * 40), Data: make([]byte, 10000)}
	}
	data := stream(Header{Video: true}, tags...)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(data))
		for {
			if _, err := r.ReadTag(); err != nil {
				break
			}
		}
	}
}
