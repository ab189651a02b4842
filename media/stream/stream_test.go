package stream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/media/flv"
)

var (
	metaBody = []byte("\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09")
	vseqBody = []byte{0x17, 0, 0, 0, 0, 1, 77, 0, 30, 0xff, 0xe1, 0, 2, 0x67, 0x4d, 1, 0, 2, 0x68, 0xee}
	aseqBody = []byte{0xaf, 0, 0x12, 0x08}
)

// gen makes a 25 fps A/V stream with a keyframe every second: video frame i
// at 40i ms carries i in its payload, AAC frames every 23 ms between.
type gen struct {
	vsize, asize int
	frame, audio int
}

func (g *gen) headers() []flv.Tag {
	return []flv.Tag{
		{Type: flv.TagScript, Data: metaBody},
		{Type: flv.TagVideo, Data: vseqBody},
		{Type: flv.TagAudio, Data: aseqBody},
	}
}

// next returns the audio due before the next video frame, then the frame.
func (g *gen) next() []flv.Tag {
	vt := uint32(g.frame * 40)
	var out []flv.Tag
	for uint32(g.audio*23) < vt {
		d := make([]byte, max(g.asize, 6))
		d[0], d[1] = 0xaf, 1
		binary.BigEndian.PutUint32(d[2:], uint32(g.audio))
		out = append(out, flv.Tag{Type: flv.TagAudio, Time: uint32(g.audio * 23), Data: d})
		g.audio++
	}
	d := make([]byte, max(g.vsize, 9))
	d[0], d[1] = 0x27, 1
	if g.frame%25 == 0 {
		d[0] = 0x17
	}
	binary.BigEndian.PutUint32(d[5:], uint32(g.frame))
	out = append(out, flv.Tag{Type: flv.TagVideo, Time: vt, Data: d})
	g.frame++
	return out
}

// seconds returns n seconds of tags.
func (g *gen) seconds(n int) []flv.Tag {
	var out []flv.Tag
	for range n * 25 {
		out = append(out, g.next()...)
	}
	return out
}

func writeAll(s *Stream, tags []flv.Tag) {
	for i := range tags {
		s.Write(&tags[i])
	}
}

// available reads what a viewer can get without waiting.
func available(t testing.TB, v *Viewer) []byte {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []byte
	for {
		b, err := v.Next(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) && err != io.EOF {
				t.Fatalf("Next: %v", err)
			}
			return out
		}
		out = append(out, b...)
	}
}

func parse(t testing.TB, b []byte) []flv.Tag {
	t.Helper()
	r := flv.NewReader(bytes.NewReader(b))
	var tags []flv.Tag
	for {
		tag, err := r.ReadTagCopy()
		if err == io.EOF {
			return tags
		}
		if err != nil {
			t.Fatalf("viewer output is not valid FLV: %v", err)
		}
		tags = append(tags, tag)
	}
}

// parseMore parses a continuation of a viewer's stream (no FLV header).
func parseMore(t testing.TB, b []byte) []flv.Tag {
	t.Helper()
	return parse(t, append(flv.AppendHeader(nil, flv.Header{}), b...))
}

func frameNo(t flv.Tag) int { return int(binary.BigEndian.Uint32(t.Data[5:])) }

func same(a, b flv.Tag) bool {
	return a.Type == b.Type && a.Time == b.Time && bytes.Equal(a.Data, b.Data)
}

// checkStart asserts the opening a player needs: onMetaData at 0 (ffmpeg
// reads metadata at any other time as a data track), AVC and AAC headers
// stamped at the keyframe's time, then that keyframe.
func checkStart(t *testing.T, got []flv.Tag, keyTime uint32) {
	t.Helper()
	if len(got) < 4 {
		t.Fatalf("only %d tags", len(got))
	}
	want := []flv.Tag{
		{Type: flv.TagScript, Time: 0, Data: metaBody},
		{Type: flv.TagVideo, Time: keyTime, Data: vseqBody},
		{Type: flv.TagAudio, Time: keyTime, Data: aseqBody},
	}
	for i, w := range want {
		if !same(got[i], w) {
			t.Fatalf("tag %d = type %d at %d ms (%d bytes), want header type %d at %d", i, got[i].Type, got[i].Time, len(got[i].Data), w.Type, w.Time)
		}
	}
	if !got[3].IsKeyframe() || got[3].Time != keyTime {
		t.Fatalf("first media tag: type %d key %v at %d ms, want the keyframe at %d", got[3].Type, got[3].IsKeyframe(), got[3].Time, keyTime)
	}
}

// indexOf finds the input tag with this video frame number.
func indexOf(tags []flv.Tag, frame int) int {
	for i, tag := range tags {
		if tag.IsVideo() && !tag.IsSequenceHeader() && frameNo(tag) == frame {
			return i
		}
	}
	return -1
}

func TestQuickStart(t *testing.T) {
	g := &gen{vsize: 2000, asize: 100}
	in := append(g.headers(), g.seconds(5)...) // keyframes at 0, 1000, ..., 4000; newest 4960
	s := New("live", Options{CacheGOPs: 3})
	writeAll(s, in)
	for _, c := range []struct {
		lowerBound time.Duration
		key        uint32
	}{
		{0, 4000},
		{500 * time.Millisecond, 4000},
		{960 * time.Millisecond, 4000}, // exactly at a keyframe
		{961 * time.Millisecond, 3000},
		{2 * time.Second, 2000},
		{10 * time.Second, 2000}, // more than cached: the oldest cached GOP
	} {
		t.Run(c.lowerBound.String(), func(t *testing.T) {
			v := s.Subscribe(c.lowerBound)
			defer v.Close()
			b := available(t, v)
			if h := flv.AppendHeader(nil, flv.Header{Audio: true, Video: true}); !bytes.HasPrefix(b, h) {
				t.Fatalf("output does not start with the FLV header: % x", b[:min(len(b), 13)])
			}
			got := parse(t, b)
			checkStart(t, got, c.key)
			// After the keyframe, everything written after it, in order.
			rest := in[indexOf(in, int(c.key/40)):]
			if len(got)-3 != len(rest) {
				t.Fatalf("%d tags after the headers, want %d", len(got)-3, len(rest))
			}
			for i := range rest {
				if !same(got[3+i], rest[i]) {
					t.Fatalf("tag %d after the keyframe differs", i)
				}
			}
			st := v.Stats()
			if !st.FromCache || st.StartBuffer != time.Duration(4960-c.key)*time.Millisecond {
				t.Errorf("FromCache %v, StartBuffer %v; want true, %v", st.FromCache, st.StartBuffer, time.Duration(4960-c.key)*time.Millisecond)
			}
			if st.FirstKeyframeAt.IsZero() || st.FirstKeyframeTime != time.Duration(c.key)*time.Millisecond {
				t.Errorf("first keyframe %v at %v", st.FirstKeyframeTime, st.FirstKeyframeAt)
			}
			if st.BytesSent != int64(len(b)) || st.Lag != 0 {
				t.Errorf("BytesSent %d (read %d), Lag %v", st.BytesSent, len(b), st.Lag)
			}
		})
	}
}

// TestLiveViewerGetsEverything: a viewer that joins before the publisher and
// keeps up receives the publisher's stream byte for byte.
func TestLiveViewerGetsEverything(t *testing.T) {
	g := &gen{vsize: 10_000, asize: 200}
	in := append(g.headers(), g.seconds(10)...)
	s := New("live", Options{})
	v := s.Subscribe(0)
	if st := v.Stats(); st.FromCache {
		t.Error("FromCache for a viewer that joined an empty stream")
	}
	var got bytes.Buffer
	done := make(chan error)
	go func() {
		for {
			b, err := v.Next(context.Background())
			if err != nil {
				done <- err
				return
			}
			got.Write(b)
		}
	}()
	for i := range in {
		s.Write(&in[i])
		if i%7 == 0 {
			time.Sleep(50 * time.Microsecond) // let the reader interleave
		}
	}
	s.Close(nil)
	if err := <-done; err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
	want := flv.AppendHeader(nil, flv.Header{Audio: true, Video: true})
	for i := range in {
		want = flv.AppendTag(want, &in[i])
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("viewer got %d bytes, publisher wrote %d: not identical", got.Len(), len(want))
	}
	if tags, bytes := v.Dropped(); tags != 0 || bytes != 0 {
		t.Errorf("a keeping-up viewer dropped %d tags", tags)
	}
	if st := v.Stats(); st.TagsSent != int64(len(in)) || st.BytesSent != int64(len(want)) {
		t.Errorf("TagsSent %d BytesSent %d, want %d %d", st.TagsSent, st.BytesSent, len(in), len(want))
	}
}

func TestSlowViewerDropsToKeyframe(t *testing.T) {
	g := &gen{vsize: 10_000, asize: 200}
	in := append(g.headers(), g.seconds(4)...) // ~1 MB, GOPs of ~260 KB
	s := New("live", Options{QueueBytes: 300_000})
	fast, slow := s.Subscribe(0), s.Subscribe(0)
	var fastOut []byte
	for i := range in {
		s.Write(&in[i])
		fastOut = append(fastOut, available(t, fast)...)
	}
	// The slow viewer is ~1 MB behind: it must resume at the 3 s keyframe,
	// the earliest within 300 KB of the newest tag.
	got := parse(t, available(t, slow))
	checkStart(t, got, 3000)
	k := indexOf(in, 75)
	for i, w := range in[k:] {
		if !same(got[3+i], w) {
			t.Fatalf("after the drop, tag %d differs", i)
		}
	}
	tags, byts := slow.Dropped()
	var wantBytes int64
	for i := range in[:k] {
		wantBytes += int64(flv.TagSize(&in[i]))
	}
	if tags != int64(k) || byts != wantBytes {
		t.Errorf("Dropped = %d tags %d bytes, want %d %d", tags, byts, k, wantBytes)
	}
	if st := slow.Stats(); st.Drops != 1 {
		t.Errorf("Drops = %d, want 1", st.Drops)
	}
	if tags, _ := fast.Dropped(); tags != 0 || len(parse(t, fastOut)) != len(in) {
		t.Errorf("fast viewer dropped %d tags / got %d of %d", tags, len(parse(t, fastOut)), len(in))
	}
	if st := s.Stats(); st.DroppedTags != int64(k) {
		t.Errorf("stream DroppedTags %d, want %d", st.DroppedTags, k)
	}

	// Caught up, the slow viewer now gets every new tag.
	more := g.seconds(1)
	writeAll(s, more)
	got = parseMore(t, available(t, slow))
	if len(got) != len(more) || !same(got[0], more[0]) || !same(got[len(got)-1], more[len(more)-1]) {
		t.Errorf("after catching up: %d tags, want %d", len(got), len(more))
	}
}

// TestDropWaitsForNextKeyframe: when even the newest GOP is over the bound,
// the viewer skips everything and resumes at the next keyframe written.
func TestDropWaitsForNextKeyframe(t *testing.T) {
	g := &gen{vsize: 10_000, asize: 200}
	in := append(g.headers(), g.seconds(4)...)
	s := New("live", Options{QueueBytes: 100_000})
	v := s.Subscribe(0)
	writeAll(s, in)
	if b := available(t, v); len(b) != 0 {
		t.Fatalf("got %d bytes, want nothing before the next keyframe", len(b))
	}
	// Frame 100, at 4000 ms, is a keyframe; the audio before it is skipped.
	more := g.next()
	writeAll(s, more)
	got := parse(t, available(t, v))
	checkStart(t, got, 4000)
	all := append(in, more...)
	k := indexOf(all, 100)
	if tags, _ := v.Dropped(); tags != int64(k) {
		t.Errorf("Dropped %d tags, want %d (everything before the 4 s keyframe)", tags, k)
	}
	if len(got) != 4 {
		t.Errorf("%d tags, want the 3 headers and the keyframe", len(got))
	}
	// From there on, nothing is lost.
	for range 30 {
		f := g.next()
		writeAll(s, f)
		if got := parseMore(t, available(t, v)); len(got) != len(f) {
			t.Fatalf("got %d tags, want %d", len(got), len(f))
		}
	}
	if tags, _ := v.Dropped(); tags != int64(k) {
		t.Errorf("Dropped grew to %d while keeping up", tags)
	}
}

func TestHeaderChange(t *testing.T) {
	g := &gen{vsize: 1000, asize: 100}
	s := New("live", Options{QueueBytes: 40_000})
	writeAll(s, g.headers())
	writeAll(s, g.seconds(2))
	live, lagging := s.Subscribe(0), s.Subscribe(0)
	available(t, live)
	// The encoder restarts with a new SPS before the 2 s keyframe; a
	// repeated identical AAC header changes nothing.
	newSeq := append(append([]byte(nil), vseqBody...), 0x99)
	changed := []flv.Tag{
		{Type: flv.TagVideo, Time: 2000, Data: newSeq},
		{Type: flv.TagAudio, Time: 2000, Data: aseqBody},
	}
	writeAll(s, changed)
	var liveOut []byte
	for range 50 {
		writeAll(s, g.next())
		liveOut = append(liveOut, available(t, live)...)
	}

	got := parseMore(t, liveOut)
	if !same(got[0], changed[0]) || !same(got[1], changed[1]) || !got[2].IsAudio() && !got[2].IsKeyframe() {
		t.Errorf("live viewer: the new headers do not come in order: %+v %+v", got[0], got[1])
	}
	if tags, _ := live.Dropped(); tags != 0 {
		t.Errorf("live viewer dropped %d tags", tags)
	}
	// The lagging viewer skipped past the change: it must get the new SPS
	// before its keyframe.
	got = parse(t, available(t, lagging))
	if v, _ := lagging.Dropped(); v == 0 {
		t.Fatal("lagging viewer did not drop; the test needs it to")
	}
	if len(got) < 4 || !bytes.Equal(got[1].Data, newSeq) || !got[3].IsKeyframe() {
		t.Fatalf("lagging viewer resumed without the new sequence header")
	}
	// A new viewer starts with the new headers, once.
	got = parse(t, available(t, s.Subscribe(0)))
	checkStartWith(t, got, newSeq)
}

func checkStartWith(t *testing.T, got []flv.Tag, vseq []byte) {
	t.Helper()
	if len(got) < 4 || !got[0].IsMetadata() || !bytes.Equal(got[1].Data, vseq) || !bytes.Equal(got[2].Data, aseqBody) || !got[3].IsKeyframe() {
		t.Fatalf("new viewer does not start with metadata, the new AVC header, AAC header, keyframe")
	}
	for _, tag := range got[4:] {
		if tag.IsSequenceHeader() || tag.IsMetadata() {
			t.Fatalf("header repeated at %d ms", tag.Time)
		}
	}
}

func TestCloseDrainsThenEOF(t *testing.T) {
	g := &gen{vsize: 500, asize: 50}
	in := append(g.headers(), g.seconds(2)...)
	for _, closeErr := range []error{nil, errors.New("publisher went away")} {
		s := New("live", Options{})
		v := s.Subscribe(0)
		writeAll(s, in)
		s.Close(closeErr)
		s.Close(errors.New("second close is ignored"))
		extra := g.next()
		writeAll(s, extra) // after Close: ignored
		var got []byte
		var err error
		for {
			var b []byte
			if b, err = v.Next(context.Background()); err != nil {
				break
			}
			got = append(got, b...)
		}
		want := closeErr
		if want == nil {
			want = io.EOF
		}
		if err != want {
			t.Errorf("end: %v, want %v", err, want)
		}
		if n := len(parse(t, got)); n != len(in) {
			t.Errorf("drained %d tags, want %d", n, len(in))
		}
		if _, again := v.Next(context.Background()); again != want {
			t.Errorf("second Next after the end: %v", again)
		}
		if b, err := s.Subscribe(0).Next(context.Background()); err != want || b != nil {
			t.Errorf("subscribing to a closed stream: %d bytes, %v", len(b), err)
		}
		if st := s.Stats(); !st.Closed || st.TagsIn != int64(len(in)) {
			t.Errorf("Stats after Close: %+v", st)
		}
	}
}

func TestNextUnblocks(t *testing.T) {
	s := New("live", Options{})
	next := func(v *Viewer, ctx context.Context) chan error {
		ch := make(chan error, 1)
		go func() { _, err := v.Next(ctx); ch <- err }()
		return ch
	}
	wait := func(ch chan error, want error) {
		t.Helper()
		select {
		case err := <-ch:
			if !errors.Is(err, want) {
				t.Errorf("Next returned %v, want %v", err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Next did not return (want %v)", want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := next(s.Subscribe(0), ctx)
	cancel()
	wait(ch, context.Canceled)

	v := s.Subscribe(0)
	ch = next(v, context.Background())
	v.Close()
	v.Close()
	wait(ch, ErrClosed)

	ch = next(s.Subscribe(0), context.Background())
	time.Sleep(10 * time.Millisecond)
	s.Close(nil)
	wait(ch, io.EOF)
	if n := s.Stats().Viewers; n != 2 {
		t.Errorf("Viewers = %d, want 2 (three subscribed, one closed)", n)
	}
}

// TestAudioWake: audio does not wake viewers when video follows soon; it
// goes out with the next video frame.
func TestAudioWake(t *testing.T) {
	for _, c := range []struct {
		opt       time.Duration
		audioWake bool
	}{{0, false}, {-1, true}} {
		s := New("live", Options{AudioWake: c.opt})
		g := &gen{}
		writeAll(s, g.headers())
		writeAll(s, g.next()) // video 0
		writeAll(s, g.next()) // audio 0, 23, video 40
		ch := s.wake.Load()
		s.Write(&flv.Tag{Type: flv.TagAudio, Time: 46, Data: []byte{0xaf, 1, 0}})
		if woke := s.wake.Load() != ch; woke != c.audioWake {
			t.Errorf("AudioWake %v: audio woke viewers: %v, want %v", c.opt, woke, c.audioWake)
		}
		// An audio-only stream wakes for every tag.
		a := New("radio", Options{})
		a.Write(&flv.Tag{Type: flv.TagAudio, Data: aseqBody})
		a.Write(&flv.Tag{Type: flv.TagAudio, Time: 0, Data: []byte{0xaf, 1, 0}})
		ch = a.wake.Load()
		a.Write(&flv.Tag{Type: flv.TagAudio, Time: 23, Data: []byte{0xaf, 1, 0}})
		if a.wake.Load() == ch {
			t.Error("audio-only stream: audio did not wake viewers")
		}
	}
}

func TestAudioOnly(t *testing.T) {
	s := New("radio", Options{CacheGOPs: 2})
	s.Write(&flv.Tag{Type: flv.TagAudio, Data: aseqBody})
	for i := range 200 { // 4.6 s
		s.Write(&flv.Tag{Type: flv.TagAudio, Time: uint32(i * 23), Data: []byte{0xaf, 1, byte(i)}})
	}
	got := parse(t, available(t, s.Subscribe(0)))
	// Start points are 1 s apart: 0, 1012, 2024, 3036, 4048 ms.
	if len(got) < 2 || !got[0].IsSequenceHeader() || got[1].Time != 4048 || got[0].Time != 4048 {
		t.Fatalf("audio-only viewer starts with %d tags, first at %d/%d ms", len(got), got[0].Time, got[1].Time)
	}
	got = parse(t, available(t, s.Subscribe(time.Hour)))
	if got[1].Time != 3036 {
		t.Errorf("lowerBound past the cache started at %d ms, want 3036 (oldest of 2 cached)", got[1].Time)
	}
}

// TestPFramesBeforeFirstKeyframe: a viewer waiting on an empty stream never
// gets audio or P-frames before the first keyframe.
func TestPFramesBeforeFirstKeyframe(t *testing.T) {
	s := New("live", Options{})
	v := s.Subscribe(0)
	s.Write(&flv.Tag{Type: flv.TagScript, Data: metaBody})
	s.Write(&flv.Tag{Type: flv.TagVideo, Data: vseqBody})
	s.Write(&flv.Tag{Type: flv.TagAudio, Data: aseqBody})
	s.Write(&flv.Tag{Type: flv.TagVideo, Time: 0, Data: []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 0}}) // joined mid-GOP
	s.Write(&flv.Tag{Type: flv.TagAudio, Time: 10, Data: []byte{0xaf, 1, 0}})
	s.Write(&flv.Tag{Type: flv.TagVideo, Time: 40, Data: []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1}})
	got := parse(t, available(t, v))
	if len(got) != 4 || !got[0].IsMetadata() || !got[1].IsSequenceHeader() || !got[2].IsSequenceHeader() || !got[3].IsKeyframe() {
		t.Fatalf("got %d tags, want metadata, two headers, the keyframe", len(got))
	}
	if tags, _ := v.Dropped(); tags != 0 {
		t.Errorf("waiting for the first keyframe counted %d drops", tags)
	}
}

func TestWriteCopiesAndRejects(t *testing.T) {
	s := New("live", Options{})
	g := &gen{vsize: 100}
	writeAll(s, g.headers())
	key := g.next()[0]
	s.Write(&key)
	key.Data[5] = 0xee // the caller reuses its buffer
	s.Write(&flv.Tag{Type: 7, Data: []byte{1}})
	s.Write(&flv.Tag{Type: flv.TagVideo, Data: make([]byte, flv.MaxDataSize+1)})
	s.Write(&flv.Tag{Type: flv.TagScript, Data: append([]byte("\x02\x00\x0d@setDataFrame"), metaBody...)})
	got := parse(t, available(t, s.Subscribe(0)))
	if got[3].Data[5] == 0xee {
		t.Error("Write kept the caller's buffer")
	}
	if last := got[len(got)-1]; !bytes.Equal(last.Data, metaBody) {
		t.Errorf("@setDataFrame not stripped: % x", last.Data[:16])
	}
	st := s.Stats()
	if st.Rejected != 2 || st.TagsIn != 5 {
		t.Errorf("Rejected %d TagsIn %d, want 2, 5", st.Rejected, st.TagsIn)
	}
}

func TestStats(t *testing.T) {
	g := &gen{vsize: 1000, asize: 100}
	in := append(g.headers(), g.seconds(5)...)
	s := New("cam1", Options{CacheGOPs: 2})
	before := time.Now()
	writeAll(s, in)
	v := s.Subscribe(0)
	st := s.Stats()
	var bytesIn int64
	for i := range in {
		bytesIn += int64(flv.TagSize(&in[i]))
	}
	k := indexOf(in, 75) // cache: GOPs at 3 s and 4 s
	var cacheBytes int64
	for i := range in[k:] {
		cacheBytes += int64(flv.TagSize(&in[k+i]))
	}
	if st.Name != "cam1" || st.Viewers != 1 || st.TagsIn != int64(len(in)) || st.BytesIn != bytesIn {
		t.Errorf("Stats %+v", st)
	}
	if !st.HasKeyframe || st.LastKeyframe != 4*time.Second || st.LastKeyAt.Before(before) {
		t.Errorf("last keyframe %v at %v", st.LastKeyframe, st.LastKeyAt)
	}
	if st.CachedGOPs != 2 || st.CacheTags != len(in)-k || st.CacheBytes != cacheBytes {
		t.Errorf("cache: %d GOPs %d tags %d bytes, want 2, %d, %d", st.CachedGOPs, st.CacheTags, st.CacheBytes, len(in)-k, cacheBytes)
	}
	if st.RingBytes < st.CacheBytes {
		t.Errorf("RingBytes %d < CacheBytes %d", st.RingBytes, st.CacheBytes)
	}
	v.Close()
	if s.Stats().Viewers != 0 {
		t.Error("Viewers not decremented by Close")
	}
}

// TestRingStaysBounded: with nobody reading, memory is the cache plus
// QueueBytes, however long the stream runs.
func TestRingStaysBounded(t *testing.T) {
	g := &gen{vsize: 10_000, asize: 200}
	s := New("live", Options{QueueBytes: 500_000})
	s.Subscribe(0) // a viewer that never reads
	writeAll(s, g.headers())
	for range 60 {
		writeAll(s, g.seconds(1))
		if st := s.Stats(); st.RingBytes > 500_000+st.CacheBytes+20_000 {
			t.Fatalf("ring holds %d bytes (cache %d, queue 500000)", st.RingBytes, st.CacheBytes)
		}
	}
	if n := len(s.ring.Load().slots); n > 512 {
		t.Errorf("ring grew to %d slots", n)
	}
}

// validate checks what any player needs from a viewer's bytes: a valid FLV
// stream, headers before media, a keyframe first, timestamps that never go
// back, and no video frame after a gap unless it is a keyframe.
func validate(t *testing.T, b []byte) (frames int) {
	t.Helper()
	if len(b) == 0 {
		return 0 // left before the first keyframe
	}
	tags := parse(t, b)
	prevFrame := -1
	var last [32]int64
	for i := range last {
		last[i] = -1
	}
	seenKey := false
	for i, tag := range tags {
		if int64(tag.Time) < last[tag.Type] {
			t.Fatalf("tag %d: type %d time %d after %d", i, tag.Type, tag.Time, last[tag.Type])
		}
		last[tag.Type] = int64(tag.Time)
		if tag.IsSequenceHeader() || tag.IsMetadata() {
			continue
		}
		if !seenKey && i < 3 {
			t.Fatalf("media tag %d before the headers", i)
		}
		if !tag.IsVideo() {
			if !seenKey {
				t.Fatalf("audio before the first keyframe")
			}
			continue
		}
		n := frameNo(tag)
		if n != prevFrame+1 && !tag.IsKeyframe() {
			t.Fatalf("frame %d follows frame %d and is not a keyframe", n, prevFrame)
		}
		seenKey = true
		prevFrame = n
		frames++
	}
	return frames
}

// TestConcurrent runs a writer, viewers that come and go, slow viewers and
// a reader of Stats at once; run it with -race.
func TestConcurrent(t *testing.T) {
	s := New("live", Options{QueueBytes: 200_000, CacheGOPs: 2})
	g := &gen{vsize: 3000, asize: 200}
	var wg sync.WaitGroup
	results := make(chan []byte, 64)
	stop := make(chan struct{})
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			v := s.Subscribe(time.Duration(rng.IntN(3000)) * time.Millisecond)
			defer v.Close()
			ctx := context.Background()
			if i%4 == 0 { // leaves early, from another goroutine
				c, cancel := context.WithTimeout(ctx, time.Duration(20+rng.IntN(40))*time.Millisecond)
				defer cancel()
				ctx = c
			}
			var out []byte
			for {
				b, err := v.Next(ctx)
				if err != nil {
					break
				}
				out = append(out, b...)
				if i%3 == 0 { // slow: drops
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
				}
			}
			results <- out
		}()
	}
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = s.Stats()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	writeAll(s, g.headers())
	for range 8 * 25 {
		writeAll(s, g.next())
		time.Sleep(200 * time.Microsecond)
	}
	s.Close(nil)
	wg.Wait()
	close(stop)
	close(results)
	var total int
	for out := range results {
		total += validate(t, out)
	}
	if total == 0 {
		t.Error("no viewer received a frame")
	}
	if n := s.Stats().Viewers; n != 0 {
		t.Errorf("%d viewers left open", n)
	}
}

// BenchmarkFanout: one writer of a 2 Mbit/s-like stream (25 fps video of
// ~10 KB, ~43 AAC frames/s of 200 B) and N viewers, each a goroutine
// reading with Next into io.Discard as an HTTP handler would. The writer
// waits until every viewer has the frame before writing the next, so each
// frame costs every viewer a wakeup, as it does live. ns/op is per video
// frame (with its audio); cpu-ns/frame is the process CPU time per frame,
// and cores@25fps the share of one core the fan-out takes in real time.
// (Socket writes are not included: they are the HTTP server's cost.)
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 2000} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	s := New("bench", Options{})
	g := &gen{vsize: 10_000, asize: 200}
	writeAll(s, g.headers())
	var (
		target    atomic.Uint64
		remaining sync.WaitGroup
		ready     sync.WaitGroup
		stepDone  = make([]uint64, n)
	)
	ready.Add(n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := s.Subscribe(0)
			defer v.Close()
			ready.Done()
			for {
				chunk, err := v.Next(context.Background())
				if err != nil {
					return
				}
				io.Discard.Write(chunk)
				if t := target.Load(); v.cursor >= t && stepDone[i] < t {
					stepDone[i] = t
					remaining.Done()
				}
			}
		}()
	}
	ready.Wait()
	frames := make([][]flv.Tag, 250)
	for i := range frames {
		frames[i] = g.next()
	}
	tags := 0
	step := func(i int) {
		f := frames[i%len(frames)]
		for j := range f {
			f[j].Time = uint32(i*40 + j) // keep time moving
		}
		remaining.Add(n)
		target.Store(s.head.Load() + uint64(len(f)))
		writeAll(s, f)
		remaining.Wait()
		tags += len(f)
	}
	// Warm up: viewers' buffers reach their working size.
	for i := range 50 {
		step(i)
	}
	tags = 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		step(50 + i)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	s.Close(nil)
	wg.Wait()
	perFrame := float64(cpu.Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(tags), "ns/tag")
	b.ReportMetric(perFrame, "cpu-ns/frame")
	b.ReportMetric(perFrame*25/1e9, "cores@25fps")
}

// TestStatsFramesAndCacheSpan: frames count video pictures only, and the
// cache span runs from the oldest cached keyframe to the newest tag.
func TestStatsFramesAndCacheSpan(t *testing.T) {
	s := New("t", Options{CacheGOPs: 2})
	for ms := uint32(0); ms <= 3960; ms += 40 {
		ft := byte(0x27) // inter frame, AVC
		if ms%1000 == 0 {
			ft = 0x17 // keyframe
		}
		s.Write(&flv.Tag{Type: flv.TagVideo, Time: ms, Data: []byte{ft, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}})
		s.Write(&flv.Tag{Type: flv.TagAudio, Time: ms, Data: []byte{0xaf, 1, 0x21}})
	}
	st := s.Stats()
	if st.FramesIn != 100 || st.TagsIn != 200 {
		t.Errorf("FramesIn %d of TagsIn %d, want 100 of 200", st.FramesIn, st.TagsIn)
	}
	// Keyframes at 0..3000 ms; two GOPs cached: from 2000 to the newest tag at 3960.
	if st.CacheSpan != 1960*time.Millisecond {
		t.Errorf("CacheSpan %s, want 1.96s", st.CacheSpan)
	}
}
