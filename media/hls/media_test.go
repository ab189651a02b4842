package hls

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// requireTool skips the test when an outside tool is missing, except in
// CI, where a missing tool is a broken setup.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (install Debian's ffmpeg package): %v", name, err)
		}
		t.Skipf("%s not found; install Debian's ffmpeg package to run this test", name)
	}
	return p
}

var (
	flvMu    sync.Mutex
	flvCache = map[string][]flv.Tag{}
)

// Inputs for ffmpeg: a 25 fps test pattern (1 s GOP, with B-frames so
// that PTS and DTS differ) and a 440 Hz tone.
var (
	avArgs = []string{
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "6",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "2",
		"-c:a", "aac", "-b:a", "64k",
	}
	audioOnlyArgs = []string{
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "6", "-c:a", "aac", "-b:a", "64k",
	}
)

// ffmpegFLV encodes a real stream with ffmpeg and returns its FLV tags.
// Results are cached by arguments: several tests share one encode.
func ffmpegFLV(t testing.TB, args []string) []flv.Tag {
	t.Helper()
	bin := requireTool(t, "ffmpeg")
	key := fmt.Sprint(args)
	flvMu.Lock()
	defer flvMu.Unlock()
	if tags, ok := flvCache[key]; ok {
		return tags
	}
	full := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)
	full = append(full, "-f", "flv", "pipe:1")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", full, err, stderr.String())
	}
	tags, err := readFLV(stdout.Bytes())
	if err != nil {
		t.Fatalf("parse ffmpeg's FLV: %v", err)
	}
	flvCache[key] = tags
	return tags
}

// readFLV is a minimal FLV file parser for tests: the 9-byte header and
// PreviousTagSize0, then 11-byte tag headers, bodies and PreviousTagSize
// trailers.
func readFLV(b []byte) ([]flv.Tag, error) {
	if len(b) < 13 || string(b[:3]) != "FLV" {
		return nil, fmt.Errorf("not an FLV file")
	}
	pos := int(binary.BigEndian.Uint32(b[5:9])) + 4
	var tags []flv.Tag
	for pos < len(b) {
		if pos+11 > len(b) {
			return nil, fmt.Errorf("tag header at %d truncated", pos)
		}
		h := b[pos : pos+11]
		size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		ts := uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6]) | uint32(h[7])<<24
		pos += 11
		if pos+size+4 > len(b) {
			return nil, fmt.Errorf("tag body at %d truncated", pos)
		}
		if prev := binary.BigEndian.Uint32(b[pos+size:]); int(prev) != size+11 {
			return nil, fmt.Errorf("PreviousTagSize %d at %d, want %d", prev, pos+size, size+11)
		}
		tags = append(tags, flv.Tag{Type: h[0] & 0x1f, Time: ts, Data: bytes.Clone(b[pos : pos+size])})
		pos += size + 4
	}
	return tags, nil
}
