package transcode

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// FFmpeg is a real transcoder: one ffmpeg process per rendition reading the
// source as FLV on stdin and writing the rendition as FLV on stdout (x264
// ultrafast/zerolatency, scaled, at the rendition's bitrate, 1 s GOP; audio
// copied; the capture stamp carried over). It costs a core or more per rendition, so it is for machines
// that have them; Synthetic is the default.
type FFmpeg struct {
	BitrateKbps   int
	Width, Height int
	AudioOnly     bool
	// Path is the ffmpeg binary; default "ffmpeg" from PATH.
	Path string
}

// Run transcodes src (an FLV stream) and calls out with every output tag
// until src ends, ffmpeg fails or ctx is done. out's tag is valid only
// during the call.
func (f *FFmpeg) Run(ctx context.Context, src io.Reader, out func(*flv.Tag) error) error {
	path := f.Path
	if path == "" {
		path = "ffmpeg"
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-f", "flv", "-i", "pipe:0"}
	if f.AudioOnly {
		args = append(args, "-vn", "-c:a", "copy")
	} else {
		kbps := strconv.Itoa(f.BitrateKbps) + "k"
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0",
			"-g", "25", "-b:v", kbps, "-maxrate", kbps, "-bufsize", kbps, "-pix_fmt", "yuv420p", "-c:a", "copy",
			// Re-emit user_data_unregistered SEI on the output frame of the
			// input frame that had it: the capture stamp (media/clock).
			"-udu_sei", "1")
		if f.Width > 0 && f.Height > 0 {
			args = append(args, "-vf", fmt.Sprintf("scale=%d:%d", f.Width, f.Height))
		}
	}
	args = append(args, "-f", "flv", "pipe:1")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = src
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("transcode: ffmpeg: %w", err)
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("transcode: start ffmpeg: %w", err)
	}
	rd := flv.NewReader(stdout)
	_, err = rd.ReadHeader()
	for err == nil {
		var t flv.Tag
		if t, err = rd.ReadTag(); err == nil {
			err = out(&t)
		}
	}
	cmd.Process.Kill()
	werr := cmd.Wait()
	if err == io.EOF && (werr == nil || ctx.Err() != nil) {
		return io.EOF
	}
	return fmt.Errorf("transcode: ffmpeg: %v (%v): %s", err, werr, stderr.String())
}

// limitedBuffer keeps the first 4 KiB of ffmpeg's error output.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
