package hls

import (
	"bytes"
	"strings"
	"testing"
)

// A made-up but well-formed AVCDecoderConfigurationRecord: one SPS, one
// PPS, 4-byte NAL lengths.
var (
	testSPS    = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9}
	testPPS    = []byte{0x68, 0xce, 0x3c, 0x80}
	testConfig = []byte{
		1, 0x42, 0xc0, 0x1e, 0xff, 0xe1,
		0, 5, 0x67, 0x42, 0xc0, 0x1e, 0xd9,
		1, 0, 4, 0x68, 0xce, 0x3c, 0x80,
	}
)

func avcc(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, byte(len(n)>>24), byte(len(n)>>16), byte(len(n)>>8), byte(len(n)))
		b = append(b, n...)
	}
	return b
}

func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

func TestParseAVCConfig(t *testing.T) {
	c, err := parseAVCConfig(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.lengthSize != 4 || len(c.sps) != 1 || !bytes.Equal(c.sps[0], testSPS) || len(c.pps) != 1 || !bytes.Equal(c.pps[0], testPPS) {
		t.Fatalf("config %+v", c)
	}
	bad := map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{2}, testConfig[1:]...),
		"length 3":    append([]byte{1, 0x42, 0xc0, 0x1e, 0xfe}, testConfig[5:]...),
		"SPS cut":     testConfig[:10],
		"no PPS byte": testConfig[:13],
		"PPS cut":     testConfig[:len(testConfig)-1],
		"no SPS":      {1, 0x42, 0xc0, 0x1e, 0xff, 0xe0, 1, 0, 4, 0x68, 0xce, 0x3c, 0x80},
	}
	for name, b := range bad {
		if _, err := parseAVCConfig(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestAVCCToAnnexB(t *testing.T) {
	c, _ := parseAVCConfig(testConfig)
	idr := []byte{0x65, 0x88, 0x84}
	slice := []byte{0x41, 0x9a, 0x02}
	sei := []byte{0x06, 0x05, 0x01}
	aud := []byte{0x09, 0xf0}
	cases := []struct {
		name    string
		in      []byte
		want    []byte
		wantIDR bool
	}{
		{"IDR gets AUD, SPS, PPS", avcc(sei, idr), annexB(aud, testSPS, testPPS, sei, idr), true},
		{"non-IDR gets AUD only", avcc(slice), annexB(aud, slice), false},
		{"in-band SPS is not doubled", avcc(testSPS, testPPS, idr), annexB(aud, testSPS, testPPS, idr), true},
		{"existing AUD kept first", avcc(aud, idr), annexB(aud, testSPS, testPPS, idr), true},
	}
	for _, tc := range cases {
		got, gotIDR, err := avccToAnnexB(nil, tc.in, c)
		if err != nil || gotIDR != tc.wantIDR || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got % x idr=%v err=%v\nwant % x", tc.name, got, gotIDR, err, tc.want)
		}
	}
	for name, in := range map[string][]byte{
		"empty":          nil,
		"length too big": {0, 0, 0, 9, 0x65, 0x88},
		"partial length": append(avcc(idr), 0, 0),
	} {
		if _, _, err := avccToAnnexB(nil, in, c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseASCAndADTS(t *testing.T) {
	cases := []struct {
		name string
		asc  []byte
		want aacConfig
	}{
		{"LC 44.1k stereo", []byte{0x12, 0x10}, aacConfig{profile: 1, freqIndex: 4, channels: 2, sampleRate: 44100}},
		{"LC 48k mono", []byte{0x11, 0x88}, aacConfig{profile: 1, freqIndex: 3, channels: 1, sampleRate: 48000}},
		// HE-AAC: SBR object type 5 at 24 kHz core, 48 kHz extension, LC core.
		{"HE-AAC explicit", []byte{0x2b, 0x11, 0x88, 0x00}, aacConfig{profile: 1, freqIndex: 6, channels: 2, sampleRate: 24000}},
	}
	for _, tc := range cases {
		c, err := parseASC(tc.asc)
		if err != nil || *c != tc.want {
			t.Errorf("%s: %+v %v, want %+v", tc.name, c, err, tc.want)
		}
	}
	for name, asc := range map[string][]byte{
		"empty":             nil,
		"one byte":          {0x12},
		"explicit rate":     {0x17, 0x80, 0, 0, 0},
		"object type 0":     {0x02, 0x10},
		"channel config 0":  {0x12, 0x00},
		"reserved rate":     {0x16, 0x90},
		"object type ER 23": {0xba, 0x10},
	} {
		if _, err := parseASC(asc); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	// An ADTS header as ffmpeg writes it for AAC-LC 44.1 kHz stereo and a
	// 10-byte frame (frame_length 17).
	c, _ := parseASC([]byte{0x12, 0x10})
	got, err := appendADTS(nil, c, make([]byte, 10))
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xff, 0xf1, 0x50, 0x80, 0x02, 0x3f, 0xfc}; !bytes.Equal(got[:7], want) || len(got) != 17 {
		t.Errorf("ADTS % x, want % x + 10 bytes", got, want)
	}
	if _, err := appendADTS(nil, c, make([]byte, 9000)); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("oversized frame: %v", err)
	}
}
