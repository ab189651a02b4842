package hls

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

// probe is the part of ffprobe's JSON output the tests look at.
type probe struct {
	Streams []struct {
		CodecType    string `json:"codec_type"`
		CodecName    string `json:"codec_name"`
		Width        int    `json:"width"`
		SampleRate   string `json:"sample_rate"`
		NbReadFrames string `json:"nb_read_frames"`
	} `json:"streams"`
	Packets []struct {
		CodecType string `json:"codec_type"`
		PTSTime   string `json:"pts_time"`
		Flags     string `json:"flags"`
	} `json:"packets"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

// ffprobe runs ffprobe on url with -v error and fails the test if it
// exits non-zero or prints anything on stderr: a user would see that as a
// broken stream.
func ffprobe(t *testing.T, url string, args ...string) probe {
	t.Helper()
	bin := requireTool(t, "ffprobe")
	full := append([]string{"-v", "error", "-of", "json"}, args...)
	full = append(full, url)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffprobe %v: %v\n%s", full, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("ffprobe %s printed errors:\n%s", url, stderr.String())
	}
	var p probe
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, stdout.String())
	}
	return p
}

// serve mounts the packager the way the edge does, at /live/<stream>/.
func serve(t *testing.T, p *Packager) (base string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/live/test/", p.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/live/test/"
}

func feed(t testing.TB, p *Packager, tags []flv.Tag) {
	t.Helper()
	for i := range tags {
		if err := p.WriteTag(&tags[i]); err != nil {
			t.Fatalf("tag %d: %v", i, err)
		}
	}
}

func get(t *testing.T, url string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func getPlaylist(t *testing.T, url string) Playlist {
	t.Helper()
	code, ctype, body := get(t, url)
	if code != http.StatusOK || ctype != "application/vnd.apple.mpegurl" {
		t.Fatalf("GET %s: %d %q", url, code, ctype)
	}
	pl, err := ParsePlaylist(body)
	if err != nil {
		t.Fatalf("playlist from %s: %v\n%s", url, err, body)
	}
	return pl
}

func frames(t *testing.T, p probe, codecType string) (codec string, n int) {
	t.Helper()
	for _, s := range p.Streams {
		if s.CodecType == codecType {
			n, err := strconv.Atoi(s.NbReadFrames)
			if err != nil {
				t.Fatalf("%s nb_read_frames %q", codecType, s.NbReadFrames)
			}
			return s.CodecName, n
		}
	}
	return "", 0
}

func TestFFprobePlaysAudioVideo(t *testing.T) {
	tags := ffmpegFLV(t, avArgs)
	p := NewPackager("test", Options{TargetDuration: 2 * time.Second})
	feed(t, p, tags)
	p.Close()
	base := serve(t, p)

	pl := getPlaylist(t, base+"index.m3u8")
	if !pl.Ended || pl.MediaSequence != 0 || pl.TargetDuration != 2*time.Second || len(pl.Segments) != 3 {
		t.Fatalf("playlist: ended %v, sequence %d, target %v, %d segments; want ended, 0, 2s, 3",
			pl.Ended, pl.MediaSequence, pl.TargetDuration, len(pl.Segments))
	}

	// The whole stream, as an HLS player would read it.
	all := ffprobe(t, base+"index.m3u8", "-show_streams", "-show_format", "-count_frames")
	if all.Format.FormatName != "hls" {
		t.Errorf("format %q, want hls", all.Format.FormatName)
	}
	vcodec, vframes := frames(t, all, "video")
	acodec, aframes := frames(t, all, "audio")
	if vcodec != "h264" || acodec != "aac" {
		t.Fatalf("codecs %q and %q, want h264 and aac", vcodec, acodec)
	}
	// 6 s at 25 fps; 6 s of 44.1 kHz AAC in 1024-sample frames.
	if vframes < 145 || vframes > 150 {
		t.Errorf("%d video frames decoded, want ~150", vframes)
	}
	if aframes < 250 || aframes > 265 {
		t.Errorf("%d audio frames decoded, want ~259", aframes)
	}
	if d, _ := strconv.ParseFloat(all.Format.Duration, 64); math.Abs(d-6) > 0.2 {
		t.Errorf("duration %s s, want ~6", all.Format.Duration)
	}

	// Each segment on its own: starts with a keyframe, and lasts what the
	// playlist says.
	var total time.Duration
	for i, s := range pl.Segments {
		url := base + s.URI
		code, ctype, body := get(t, url)
		if code != http.StatusOK || ctype != "video/mp2t" {
			t.Fatalf("GET %s: %d %q", url, code, ctype)
		}
		if len(body)%188 != 0 || body[0] != 0x47 {
			t.Errorf("%s: %d bytes starting %#x, want whole 188-byte TS packets", s.URI, len(body), body[0])
		}
		seg := ffprobe(t, url, "-show_streams", "-show_packets")
		if len(seg.Streams) != 2 {
			t.Errorf("%s: %d streams, want 2", s.URI, len(seg.Streams))
		}
		var video []int
		for j, pk := range seg.Packets {
			if pk.CodecType == "video" {
				video = append(video, j)
			}
		}
		if len(video) == 0 || !strings.Contains(seg.Packets[video[0]].Flags, "K") {
			t.Errorf("%s does not start with a keyframe", s.URI)
		}
		if got := time.Duration(len(video)) * 40 * time.Millisecond; absDur(got-s.Duration) > 40*time.Millisecond {
			t.Errorf("%s: %d video frames (%v), playlist says %v", s.URI, len(video), got, s.Duration)
		}
		// The GOP is 1 s, so all but the last segment are cut exactly at
		// the 2 s target.
		if i < len(pl.Segments)-1 && absDur(s.Duration-2*time.Second) > 40*time.Millisecond {
			t.Errorf("%s lasts %v, want ~2s", s.URI, s.Duration)
		}
		total += s.Duration
	}
	if absDur(total-6*time.Second) > 100*time.Millisecond {
		t.Errorf("segments add up to %v, want ~6s", total)
	}

	st := p.Stats()
	if st.Segments != 3 || !st.HasVideo || !st.HasAudio || st.Bytes == 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("A/V: %d segments, %d TS bytes for %d FLV bytes", st.Segments, st.Bytes, flvBytes(tags))
}

func TestFFprobePlaysAudioOnly(t *testing.T) {
	tags := ffmpegFLV(t, audioOnlyArgs)
	p := NewPackager("test", Options{})
	feed(t, p, tags)
	p.Close()
	base := serve(t, p)

	all := ffprobe(t, base+"index.m3u8", "-show_streams", "-show_format", "-count_frames")
	if len(all.Streams) != 1 || all.Streams[0].CodecName != "aac" || all.Streams[0].SampleRate != "44100" {
		t.Fatalf("streams %+v, want one 44.1 kHz aac stream", all.Streams)
	}
	if _, n := frames(t, all, "audio"); n < 250 || n > 265 {
		t.Errorf("%d audio frames decoded, want ~259", n)
	}
	pl := getPlaylist(t, base+"index.m3u8")
	if len(pl.Segments) != 3 {
		t.Fatalf("%d segments, want 3", len(pl.Segments))
	}
	for i, s := range pl.Segments[:len(pl.Segments)-1] {
		// Cut at the first AAC frame (23 ms) at or after the target.
		if s.Duration < 2*time.Second || s.Duration > 2*time.Second+24*time.Millisecond {
			t.Errorf("segment %d lasts %v, want 2s..2.024s", i, s.Duration)
		}
		ffprobe(t, base+s.URI, "-show_streams")
	}
	st := p.Stats()
	if st.HasVideo || !st.HasAudio {
		t.Errorf("stats %+v, want audio only", st)
	}
	t.Logf("audio-only: %d segments, %d TS bytes for %d FLV bytes", st.Segments, st.Bytes, flvBytes(tags))
}

// TestLivePlaylistSlides watches the playlist while the stream is live,
// the way a player polls it.
func TestLivePlaylistSlides(t *testing.T) {
	tags := ffmpegFLV(t, avArgs)
	p := NewPackager("test", Options{TargetDuration: time.Second, Window: 2, Keep: 3})
	base := serve(t, p)

	var seen []uint64 // media sequence at each new segment
	made := uint64(0)
	for i := range tags {
		if err := p.WriteTag(&tags[i]); err != nil {
			t.Fatal(err)
		}
		if p.Stats().Segments == made {
			continue
		}
		made = p.Stats().Segments
		pl := getPlaylist(t, base+"index.m3u8")
		if pl.Ended {
			t.Fatal("live playlist has #EXT-X-ENDLIST")
		}
		wantLen := min(int(made), 2)
		if len(pl.Segments) != wantLen || pl.MediaSequence != made-uint64(wantLen) {
			t.Fatalf("after %d segments: sequence %d with %d segments, want %d with %d",
				made, pl.MediaSequence, len(pl.Segments), made-uint64(wantLen), wantLen)
		}
		if last := pl.Segments[len(pl.Segments)-1]; last.URI != "seg-"+strconv.FormatUint(made-1, 10)+".ts" || last.Sequence != made-1 {
			t.Fatalf("newest segment %+v, want seg-%d.ts", last, made-1)
		}
		seen = append(seen, pl.MediaSequence)
	}
	if made != 5 { // 6 s cut at 1 s keyframes; the sixth is still open
		t.Errorf("%d segments completed, want 5", made)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Errorf("media sequence went back: %v", seen)
		}
	}
	if seen[len(seen)-1] == 0 {
		t.Errorf("media sequence never moved: %v", seen)
	}

	// Keep=3: seg-2 is out of the window but still served; seg-1 is gone.
	if code, _, _ := get(t, base+"seg-2.ts"); code != http.StatusOK {
		t.Errorf("seg-2.ts (kept, not listed): %d, want 200", code)
	}
	for _, name := range []string{"seg-1.ts", "seg-0.ts", "seg-99.ts", "seg-01.ts", "seg-x.ts", "other.txt"} {
		if code, _, _ := get(t, base+name); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", name, code)
		}
	}
	if _, ok := p.Segment(1); ok {
		t.Error("Segment(1) still there after eviction")
	}
}

func TestHandlerWaitsForSegmentInProgress(t *testing.T) {
	tags := ffmpegFLV(t, avArgs)
	// A long target: the request must be answered by the segment, not by
	// its timeout.
	p := NewPackager("test", Options{TargetDuration: 10 * time.Second})
	base := serve(t, p)

	half := len(tags) / 2
	feed(t, p, tags[:half])
	if p.Stats().Segments != 0 {
		t.Fatal("segment completed before the test could wait for it")
	}
	type result struct {
		code  int
		body  []byte
		ctype string
	}
	done := make(chan result, 2)
	for _, name := range []string{"index.m3u8", "seg-0.ts"} {
		go func() {
			resp, err := http.Get(base + name)
			if err != nil {
				done <- result{}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			done <- result{resp.StatusCode, b, resp.Header.Get("Content-Type")}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); p.Stats().Waiting < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("requests never started waiting: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	feed(t, p, tags[half:])
	p.Close() // completes seg-0 and wakes both requests
	for range 2 {
		r := <-done
		if r.code != http.StatusOK {
			t.Errorf("waiting request: %d %s", r.code, r.body)
		}
	}
	if p.Stats().Waiting != 0 {
		t.Errorf("%d requests still waiting", p.Stats().Waiting)
	}
	// A segment far ahead is not waited for.
	if code, _, _ := get(t, base+"seg-7.ts"); code != http.StatusNotFound {
		t.Errorf("seg-7.ts: %d, want 404", code)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func flvBytes(tags []flv.Tag) int {
	n := 0
	for _, t := range tags {
		n += len(t.Data) + 15
	}
	return n
}

func httpDo(method, url string) (int, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
