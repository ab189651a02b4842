package clock

import (
	"bytes"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// A Unix-ms capture time has zero high bytes: 00 00 01 would be a start
// code without emulation prevention.
const capture = int64(1_764_950_400_123)

func TestSEIRoundTrip(t *testing.T) {
	for _, ms := range []int64{capture, 0, 1, 0x0000000300000000, 1 << 62} {
		nal := SEI(ms)
		if bytes.Contains(nal, []byte{0, 0, 1}) || bytes.Contains(nal, []byte{0, 0, 0}) {
			t.Errorf("SEI(%d) = % x holds a start code pattern", ms, nal)
		}
		got, ok := ParseSEI(nal)
		if !ok || got != ms {
			t.Errorf("ParseSEI(SEI(%d)) = %d, %v", ms, got, ok)
		}
	}
}

func TestParseSEIOthers(t *testing.T) {
	other := append([]byte{flv.NALSEI, 5, 24}, bytes.Repeat([]byte{0x11}, 24)...)
	other = append(other, 0x80)
	// An x264-style message first, then ours: the stamp is still found.
	two := append(append([]byte{}, other[:len(other)-1]...), SEI(capture)[1:]...)
	for name, c := range map[string]struct {
		nal  []byte
		want bool
	}{
		"other uuid":   {other, false},
		"two messages": {two, true},
		"slice":        {[]byte{0x65, 0x88, 0x84}, false},
		"empty":        {nil, false},
		"truncated":    {SEI(capture)[:10], false},
		"size too big": {[]byte{flv.NALSEI, 5, 200, 1, 2}, false},
		"ff run":       {append([]byte{flv.NALSEI}, bytes.Repeat([]byte{0xff}, 100)...), false},
	} {
		ms, ok := ParseSEI(c.nal)
		if ok != c.want || (ok && ms != capture) {
			t.Errorf("%s: ParseSEI = %d, %v; want ok=%v", name, ms, ok, c.want)
		}
	}
}

// avcTag is an AVC NALU tag body with 4-byte length prefixes.
func avcTag(key bool, nals ...[]byte) []byte {
	b := []byte{0x27, flv.AVCNALU, 0, 0, 0}
	if key {
		b[0] = 0x17
	}
	for _, n := range nals {
		b = append(b, byte(len(n)>>24), byte(len(n)>>16), byte(len(n)>>8), byte(len(n)))
		b = append(b, n...)
	}
	return b
}

func TestStampAVCC(t *testing.T) {
	aud, idr := []byte{0x09, 0xf0}, []byte{0x65, 0x88, 0x84, 0x00, 0x10}
	data := avcTag(true, aud, idr)
	out, ok := Stamp(nil, data, 4, capture)
	if !ok {
		t.Fatal("Stamp refused a keyframe")
	}
	var types []uint8
	for nal, err := range flv.NALUs(out, 4) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, flv.NALType(nal))
	}
	if want := []uint8{flv.NALAUD, flv.NALSEI, flv.NALIDR}; !bytes.Equal(types, want) {
		t.Errorf("NAL types after Stamp: %v, want %v (SEI before the picture)", types, want)
	}
	if ms, ok := FromAVCC(out, 4); !ok || ms != capture {
		t.Errorf("FromAVCC = %d, %v", ms, ok)
	}
	if _, ok := FromAVCC(data, 4); ok {
		t.Error("FromAVCC found a stamp in an unstamped frame")
	}
	if _, ok := Stamp(nil, avcTag(false, aud), 4, capture); ok {
		t.Error("Stamp stamped a tag without a picture")
	}
}

func TestFromAnnexB(t *testing.T) {
	au := []byte{0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1}
	au = append(au, SEI(capture)...)
	au = append(au, 0, 0, 1, 0x65, 0x88, 0x84)
	if ms, ok := FromAnnexB(au); !ok || ms != capture {
		t.Errorf("FromAnnexB = %d, %v", ms, ok)
	}
	if _, ok := FromAnnexB([]byte{0, 0, 1, 0x65, 0x88}); ok {
		t.Error("FromAnnexB found a stamp in a bare slice")
	}
}

func TestTracker(t *testing.T) {
	seq := []byte{0x17, flv.AVCSequenceHeader, 0, 0, 0, 1, 0x4d, 0x40, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x4d, 1, 0, 2, 0x68, 0xee}
	frame, _ := Stamp(nil, avcTag(true, []byte{0x65, 0x88}), 4, capture)
	var tr Tracker
	if _, ok := tr.Capture(&flv.Tag{Type: flv.TagVideo, Data: frame}); ok {
		t.Error("a stamp read before the sequence header gave the length size")
	}
	tr.Capture(&flv.Tag{Type: flv.TagVideo, Data: seq})
	if ms, ok := tr.Capture(&flv.Tag{Type: flv.TagVideo, Data: frame}); !ok || ms != capture {
		t.Errorf("Capture = %d, %v", ms, ok)
	}
	if d := Since(capture, time.UnixMilli(capture+1500)); d != 1500*time.Millisecond {
		t.Errorf("Since = %v", d)
	}
}

func FuzzParseSEI(f *testing.F) {
	f.Add(SEI(capture))
	f.Add([]byte{flv.NALSEI, 5, 200, 1, 2})
	f.Add(append([]byte{flv.NALSEI}, bytes.Repeat([]byte{0xff}, 40)...))
	f.Add([]byte{flv.NALSEI, 0, 0, 3, 0, 0, 3})
	f.Fuzz(func(t *testing.T, nal []byte) {
		ms, ok := ParseSEI(nal)
		if ok {
			// A stamp found must be one SEI would write the same way.
			if again, ok2 := ParseSEI(SEI(ms)); !ok2 || again != ms {
				t.Fatalf("stamp %d does not round-trip", ms)
			}
		}
	})
}

func FuzzFromAVCC(f *testing.F) {
	stamped, _ := Stamp(nil, avcTag(true, []byte{0x09, 0xf0}, []byte{0x65, 0x88}), 4, capture)
	f.Add(stamped, 4)
	f.Add(avcTag(false, []byte{0x41, 0x9a}), 4)
	f.Add([]byte{0x17, 1, 0, 0, 0, 0, 0, 0, 200, 6}, 2)
	f.Fuzz(func(t *testing.T, data []byte, lenSize int) {
		_, had := FromAVCC(data, lenSize)
		if out, ok := Stamp(nil, data, lenSize, capture); ok && !had {
			if ms, ok := FromAVCC(out, lenSize); !ok || ms != capture {
				t.Fatalf("stamped body reads %d, %v", ms, ok)
			}
		}
	})
}

func FuzzFromAnnexB(f *testing.F) {
	f.Add(append(append([]byte{0, 0, 0, 1}, SEI(capture)...), 0, 0, 1, 0x65))
	f.Add([]byte{0, 0, 1, 6, 5, 0xff, 0xff})
	f.Add([]byte{0, 0, 1})
	f.Fuzz(func(t *testing.T, au []byte) { FromAnnexB(au) })
}
