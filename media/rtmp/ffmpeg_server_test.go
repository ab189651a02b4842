package rtmp

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

// readFLV parses an FLV file into tags (test helper; media/flv has the
// real reader).
func readFLV(t *testing.T, b []byte) []flv.Tag {
	t.Helper()
	if len(b) < 13 || string(b[:3]) != "FLV" {
		t.Fatal("not an FLV file")
	}
	b = b[binary.BigEndian.Uint32(b[5:9])+4:]
	var tags []flv.Tag
	for len(b) >= 11 {
		size := int(be24(b[1:]))
		if len(b) < 11+size+4 {
			break
		}
		tags = append(tags, flv.Tag{Type: b[0], Time: be24(b[4:]) | uint32(b[7])<<24, Data: b[11 : 11+size]})
		b = b[11+size+4:]
	}
	return tags
}

func ffprobeFrames(t *testing.T, file, stream string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", stream,
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", file, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe output %q", out)
	}
	return n
}

// Our Publisher pushes to ffmpeg acting as the RTMP server: an independent
// implementation reads our handshake, commands and chunks, and the file it
// records has every frame we sent.
func TestPublisherToFFmpegServer(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns ffmpeg")
	}
	ffmpeg := needFFmpeg(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.flv"), filepath.Join(dir, "dst.flv")
	gen := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-f", "flv", src)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg (source file): %v\n%s", err, out)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tags := readFLV(t, raw)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // ffmpeg listens here next

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := "rtmp://" + addr + "/live/x"
	srv := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-listen", "1", "-i", url, "-c", "copy", "-f", "flv", dst)
	var stderr syncBuffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()

	var p *Publisher
	for p == nil {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		p, err = DialPublish(dctx, url)
		dcancel()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("ffmpeg exited before we published (%v): %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if ctx.Err() != nil {
			t.Fatalf("could not publish to ffmpeg: %v", err)
		}
	}
	for i := range tags {
		if tags[i].Type == flv.TagScript {
			// FLV files carry onMetaData; WriteTag adds @setDataFrame,
			// which is what ffmpeg's server expects from a publisher.
			if !amf0.HasPrefixString(tags[i].Data, amf0.OnMetaData) {
				continue
			}
		}
		if err := p.WriteTag(&tags[i]); err != nil {
			t.Fatalf("WriteTag %d: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Logf("Close: %v", err) // ffmpeg may hang up first
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("ffmpeg server: %v\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("ffmpeg server did not finish")
	}
	for _, s := range []string{"v", "a"} {
		want, got := ffprobeFrames(t, src, s), ffprobeFrames(t, dst, s)
		if got != want {
			t.Errorf("stream %s: %d frames recorded by ffmpeg, want %d", s, got, want)
		}
	}
}
