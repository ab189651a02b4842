package rtmp

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

// needFFmpeg returns ffmpeg's path, skipping the test when it is missing
// on a developer machine and failing it in CI, where it must be installed.
func needFFmpeg(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg not found: .ci/run installs it")
		}
		t.Skip("SKIPPED: ffmpeg not found on PATH (apt-get install ffmpeg); the interop test needs it")
	}
	return path
}

// ffmpeg 5.1 publishes 3 s of H.264 + AAC to our server, as a user's
// encoder would.
func TestFFmpegPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns ffmpeg for a few seconds")
	}
	ffmpeg := needFFmpeg(t)
	h := newRecordHandler()
	_, addr := startServer(t, h, 0)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
		"-c:a", "aac", "-f", "flv", "rtmp://"+addr+"/live/room1?sign=x")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg failed: %v\n%s", err, out)
	}

	sink := h.next(t)
	if err := sink.waitClose(t); err != nil {
		t.Errorf("ffmpeg's unpublish closed the sink with %v, want nil", err)
	}
	info := sink.info
	if info.App != "live" || info.Stream != "room1" || info.Query.Get("sign") != "x" {
		t.Errorf("publish info app %q stream %q query %v", info.App, info.Stream, info.Query)
	}
	if !strings.HasPrefix(info.FlashVer, "FMLE/3.0 (compatible; Lavf") {
		t.Errorf("flashVer %q", info.FlashVer)
	}

	var (
		meta                 amf0.Object
		avcHeader, aacHeader bool
		video, audio         int
		keyframes            []uint32
		lastVideo, lastAudio int64 = -1, -1
	)
	for i, tag := range sink.Tags() {
		switch tag.Type {
		case flv.TagScript:
			md, err := amf0.ParseMetaData(tag.Data)
			if err != nil {
				t.Errorf("script tag %d: %v", i, err)
			}
			meta = md
		case flv.TagVideo:
			if int64(tag.Time) < lastVideo {
				t.Errorf("video tag %d at %d ms after %d ms", i, tag.Time, lastVideo)
			}
			lastVideo = int64(tag.Time)
			if tag.IsSequenceHeader() {
				avcHeader = tag.Data[0]&0x0f == flv.CodecAVC
				continue
			}
			video++
			if tag.IsKeyframe() {
				keyframes = append(keyframes, tag.Time)
			}
		case flv.TagAudio:
			if int64(tag.Time) < lastAudio {
				t.Errorf("audio tag %d at %d ms after %d ms", i, tag.Time, lastAudio)
			}
			lastAudio = int64(tag.Time)
			if tag.IsSequenceHeader() {
				aacHeader = true
				continue
			}
			audio++
		}
	}
	if meta == nil {
		t.Error("no onMetaData")
	} else if w, _ := meta.Number("width"); w != 320 {
		t.Errorf("onMetaData width %v, want 320", w)
	}
	if !avcHeader || !aacHeader {
		t.Errorf("sequence headers: AVC %v, AAC %v", avcHeader, aacHeader)
	}
	if video < 70 || video > 80 {
		t.Errorf("%d video frames, want about 75 (3 s at 25 fps)", video)
	}
	if audio < 120 || audio > 140 { // 44100/1024 ≈ 43 per second
		t.Errorf("%d audio frames, want about 129", audio)
	}
	if len(keyframes) < 3 {
		t.Errorf("keyframes at %v, want one per second", keyframes)
	}
	for i := 1; i < len(keyframes); i++ {
		if d := keyframes[i] - keyframes[i-1]; d < 900 || d > 1100 {
			t.Errorf("keyframes %d ms apart (%v), want about 1000", d, keyframes)
		}
	}
	st := info.Stats()
	t.Logf("ffmpeg publish: %d video, %d audio, keyframes at %v ms, %d bytes in", video, audio, keyframes, st.BytesIn)
}

// syncBuffer collects log lines from the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ffmpeg checks the server's digest (S1) and signature (S2) only when it
// plays: it goes on to send "play" only if both verify. We do not serve
// playback, but getting that far proves our digest handshake.
func TestFFmpegAcceptsDigestHandshake(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv := &Server{Handler: newRecordHandler(), Logger: log.NewLogfmtLogger(&logs)}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-i", "rtmp://"+l.Addr().String()+"/live/x", "-f", "null", "-")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { cancel(); <-exited }()
	for !strings.Contains(logs.String(), "command=play") {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("ffmpeg exited (%v) before sending play:\n%s", err, stderr.String())
		case <-ctx.Done():
			t.Fatalf("ffmpeg never sent play: server log:\n%s\nffmpeg:\n%s", logs.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
