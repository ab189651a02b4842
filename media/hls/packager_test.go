package hls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

var testASC = []byte{0x12, 0x10} // AAC-LC, 44.1 kHz, stereo

// synthStream makes FLV tags without an encoder: sequence headers, then
// video at 25 fps with an IDR every gop frames and/or AAC frames every
// 23 ms. The payloads are not decodable; these tests are about
// segmentation and playlists, which need no decoder.
func synthStream(seconds float64, gop int, video, audio bool) []flv.Tag {
	var tags []flv.Tag
	if video {
		tags = append(tags, flv.Tag{Type: flv.TagVideo, Data: append([]byte{0x17, 0, 0, 0, 0}, testConfig...)})
	}
	if audio {
		tags = append(tags, flv.Tag{Type: flv.TagAudio, Data: append([]byte{0xaf, 0}, testASC...)})
	}
	end := uint32(seconds * 1000)
	frame, aframe := 0, 0
	for {
		vt := uint32(frame * 40)
		at := uint32(aframe * 1024 * 1000 / 44100)
		if (!video || vt >= end) && (!audio || at >= end) {
			return tags
		}
		if video && (vt <= at || !audio || at >= end) {
			head := []byte{0x27, 1, 0, 0, 0}
			nal := []byte{0x41, 0x9a, byte(frame)}
			if frame%gop == 0 {
				head[0] = 0x17
				nal = []byte{0x65, 0x88, byte(frame)}
			}
			tags = append(tags, flv.Tag{Type: flv.TagVideo, Time: vt, Data: append(head, avcc(nal)...)})
			frame++
			continue
		}
		tags = append(tags, flv.Tag{Type: flv.TagAudio, Time: at, Data: append([]byte{0xaf, 1}, bytes.Repeat([]byte{0x21}, 180)...)})
		aframe++
	}
}

func durations(t *testing.T, p *Packager) (Playlist, []time.Duration) {
	t.Helper()
	pl, err := ParsePlaylist(p.Playlist())
	if err != nil {
		t.Fatalf("own playlist does not parse: %v\n%s", err, p.Playlist())
	}
	var d []time.Duration
	for _, s := range pl.Segments {
		d = append(d, s.Duration)
	}
	return pl, d
}

func TestSegmentsCutAtKeyframeAfterTarget(t *testing.T) {
	cases := []struct {
		name          string
		gop           int
		target        time.Duration
		video, audio  bool
		want          []time.Duration
		wantTargetDur time.Duration
	}{
		{"1s GOP, 2s target", 25, 2 * time.Second, true, true, []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}, 2 * time.Second},
		{"3s GOP is longer than the target", 75, 2 * time.Second, true, true, []time.Duration{3 * time.Second, 3 * time.Second}, 3 * time.Second},
		{"video only", 25, time.Second, true, false, []time.Duration{time.Second, time.Second, time.Second, time.Second, time.Second, time.Second}, time.Second},
		{"1.5s target waits for the 2s keyframe", 25, 1500 * time.Millisecond, true, true, []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPackager("synth", Options{TargetDuration: tc.target})
			feed(t, p, synthStream(6, tc.gop, tc.video, tc.audio))
			p.Close()
			pl, got := durations(t, p)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || pl.TargetDuration != tc.wantTargetDur || !pl.Ended {
				t.Errorf("segments %v target %v ended %v, want %v target %v ended", got, pl.TargetDuration, pl.Ended, tc.want, tc.wantTargetDur)
			}
			if st := p.Stats(); st.HasVideo != tc.video || st.HasAudio != tc.audio || st.LastSegmentDuration != tc.want[len(tc.want)-1] {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestStreamJoinedMidGOP(t *testing.T) {
	tags := synthStream(4, 25, true, true)
	// Keep the sequence headers, lose the first half second of media: the
	// way a relay joins a running stream.
	var joined []flv.Tag
	for _, tg := range tags {
		if tg.IsSequenceHeader() || tg.Time >= 500 {
			joined = append(joined, tg)
		}
	}
	// Frames before any sequence header are dropped too.
	early := flv.Tag{Type: flv.TagVideo, Time: 0, Data: append([]byte{0x17, 1, 0, 0, 0}, avcc([]byte{0x65, 1})...)}
	p := NewPackager("synth", Options{TargetDuration: time.Second})
	feed(t, p, append([]flv.Tag{early}, joined...))
	p.Close()
	_, got := durations(t, p)
	// Starts at the 1 s keyframe: 1 s, 1 s, and 1 s.
	if fmt.Sprint(got) != "[1s 1s 1s]" {
		t.Errorf("segments %v, want [1s 1s 1s]", got)
	}
	if st := p.Stats(); st.Dropped == 0 {
		t.Errorf("stats %+v: nothing counted as dropped", st)
	}
}

// TestBadTagsLoseNothingElse interleaves broken tags with a real stream:
// each is rejected with an error and the segments come out byte for byte
// as without them.
func TestBadTagsLoseNothingElse(t *testing.T) {
	tags := synthStream(6, 25, true, true)
	bad := []struct {
		tag  flv.Tag
		want string // in the error; "" for tags ignored without error
	}{
		{flv.Tag{Type: flv.TagVideo, Data: nil}, "truncated"},
		{flv.Tag{Type: flv.TagVideo, Data: []byte{0x1c, 1, 0, 0, 0, 1}}, "video codec 12"},
		{flv.Tag{Type: flv.TagVideo, Data: []byte{0x17, 0, 0, 0, 0, 1, 2}}, "avc config"},
		{flv.Tag{Type: flv.TagVideo, Data: []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65}}, "NAL at byte 0"},
		{flv.Tag{Type: flv.TagVideo, Data: []byte{0x17, 1, 0, 0}}, "truncated"},
		{flv.Tag{Type: flv.TagVideo, Data: []byte{0x17, 7, 0, 0, 0}}, "AVC packet type 7"},
		{flv.Tag{Type: flv.TagAudio, Data: []byte{0x2f, 1, 0xff}}, "sound format 2"},
		{flv.Tag{Type: flv.TagAudio, Data: []byte{0xaf, 0, 0x17, 0x80}}, "explicit sample rate"},
		{flv.Tag{Type: flv.TagAudio, Data: []byte{0xaf, 9}}, "AAC packet type 9"},
		{flv.Tag{Type: flv.TagAudio, Data: append([]byte{0xaf, 1}, make([]byte, 9000)...)}, "too large"},
		{flv.Tag{Type: flv.TagScript, Data: []byte{2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}}, ""},
		{flv.Tag{Type: flv.TagVideo, Data: []byte{0x17, 2, 0, 0, 0}}, ""},
		{flv.Tag{Type: 3, Data: []byte{1}}, ""},
	}
	clean := NewPackager("clean", Options{})
	feed(t, clean, tags)
	clean.Close()

	p := NewPackager("dirty", Options{})
	for i := range tags {
		if i%40 == 39 {
			b := bad[(i/40)%len(bad)]
			err := p.WriteTag(&b.tag)
			switch {
			case b.want == "" && err != nil:
				t.Errorf("tag % x: %v, want no error", b.tag.Data, err)
			case b.want != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(b.want))):
				t.Errorf("tag % x: error %v, want one about %q", b.tag.Data, err, b.want)
			}
		}
		if err := p.WriteTag(&tags[i]); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if !bytes.Equal(p.Playlist(), clean.Playlist()) {
		t.Errorf("playlist differs:\n%s\nwant\n%s", p.Playlist(), clean.Playlist())
	}
	for n := uint64(0); n < clean.Stats().Segments; n++ {
		a, _ := p.Segment(n)
		b, _ := clean.Segment(n)
		if !bytes.Equal(a, b) {
			t.Errorf("segment %d differs", n)
		}
	}
	if err := p.WriteTag(&tags[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteTag after Close: %v, want ErrClosed", err)
	}
}

func TestPlaylistBeforeFirstSegment(t *testing.T) {
	p := NewPackager("empty", Options{TargetDuration: 50 * time.Millisecond})
	base := serve(t, p)
	// Nothing comes within the target duration: 404 after the wait.
	if code, _, _ := get(t, base+"index.m3u8"); code != 404 {
		t.Errorf("playlist of a stream without segments: %d, want 404", code)
	}
	p.Close()
	pl := getPlaylist(t, base+"index.m3u8")
	if !pl.Ended || len(pl.Segments) != 0 {
		t.Errorf("closed empty stream: %+v", pl)
	}
	if code, _, _ := get(t, base+"seg-0.ts"); code != 404 {
		t.Errorf("seg-0.ts of an empty stream: %d", code)
	}
	resp, err := httpDo("POST", base+"index.m3u8")
	if err != nil || resp != 405 {
		t.Errorf("POST: %d %v, want 405", resp, err)
	}
}

// TestFirstPlaylistWaitsForFirstSegment: an edge that has just started
// packaging a live stream cuts its first segment a target duration and a
// GOP after the first keyframe. A player asking for the playlist meanwhile
// gets it once that segment is cut, not a 404 after one target duration.
func TestFirstPlaylistWaitsForFirstSegment(t *testing.T) {
	const target = 100 * time.Millisecond
	p := NewPackager("test", Options{TargetDuration: target})
	base := serve(t, p)
	tags := synthStream(1, 5, true, true)
	go func() {
		time.Sleep(2 * target) // the first segment comes after one target duration
		for i := range tags {
			if err := p.WriteTag(&tags[i]); err != nil {
				return
			}
		}
	}()
	pl := getPlaylist(t, base+"index.m3u8")
	if len(pl.Segments) == 0 || pl.Ended {
		t.Errorf("first playlist %+v, want the live stream's first segment", pl)
	}
	if o := (Options{TargetDuration: target}).withDefaults(); o.FirstWait != 3*target {
		t.Errorf("FirstWait default %v, want 3 target durations", o.FirstWait)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.TargetDuration != 2*time.Second || o.Window != 6 || o.Keep != 8 {
		t.Errorf("defaults %+v", o)
	}
	if o := (Options{Window: 4, Keep: 2}).withDefaults(); o.Keep != 4 {
		t.Errorf("Keep below Window: %+v", o)
	}
}

// TestTimelineJumpIsDiscontinuity: a publisher that restarts its clock (or
// a stream that stalls for a minute) gives a new timeline, which players
// learn from #EXT-X-DISCONTINUITY, not a segment of absurd length.
func TestTimelineJumpIsDiscontinuity(t *testing.T) {
	shift := func(tags []flv.Tag, ms uint32) []flv.Tag {
		out := make([]flv.Tag, len(tags))
		for i, tg := range tags {
			tg.Time += ms
			out[i] = tg
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		second []flv.Tag
	}{
		{"clock restarts", synthStream(4, 25, true, true)},
		{"one minute gap", shift(synthStream(4, 25, true, true), 64000)},
		{"audio only restarts", synthStream(4, 25, false, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audioOnly := tc.second[0].Type == flv.TagAudio
			p := NewPackager("jump", Options{TargetDuration: time.Second, Window: 6})
			feed(t, p, synthStream(4, 25, !audioOnly, true))
			feed(t, p, tc.second)
			p.Close()
			pl, got := durations(t, p)
			for i, d := range got {
				if d < 900*time.Millisecond || d > 1100*time.Millisecond {
					t.Errorf("segment %d lasts %v, want ~1s (all: %v)", i, d, got)
				}
			}
			var disc []uint64
			for _, s := range pl.Segments {
				if s.Discontinuity {
					disc = append(disc, s.Sequence)
				}
			}
			if len(disc) != 1 || disc[0] != 4 {
				t.Errorf("discontinuities at %v, want at segment 4\n%s", disc, p.Playlist())
			}
			if pl.TargetDuration != time.Second || pl.DiscontinuitySequence != 0 {
				t.Errorf("target %v, discontinuity sequence %d", pl.TargetDuration, pl.DiscontinuitySequence)
			}
		})
	}

	// Once the discontinuity leaves the window it is counted instead.
	p := NewPackager("jump", Options{TargetDuration: time.Second, Window: 3})
	feed(t, p, synthStream(4, 25, true, true))
	feed(t, p, synthStream(4, 25, true, true))
	p.Close()
	pl, _ := durations(t, p)
	if pl.MediaSequence != 5 || pl.DiscontinuitySequence != 1 {
		t.Errorf("media sequence %d, discontinuity sequence %d; want 5 and 1\n%s", pl.MediaSequence, pl.DiscontinuitySequence, p.Playlist())
	}
}
