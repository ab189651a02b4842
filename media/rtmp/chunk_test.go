package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// writeAll writes msgs with chunk size cs and returns the bytes and the
// chunk format of each message's first chunk.
func writeAll(t *testing.T, cs uint32, msgs []message) ([]byte, []uint8) {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	cw := newChunkWriter(bw)
	cw.chunkSize = cs
	var formats []uint8
	for _, m := range msgs {
		bw.Flush()
		at := buf.Len()
		if err := cw.WriteMessage(m); err != nil {
			t.Fatalf("WriteMessage: %v", err)
		}
		bw.Flush()
		formats = append(formats, buf.Bytes()[at]>>6)
	}
	return buf.Bytes(), formats
}

func readAll(t *testing.T, cs uint32, b []byte, n int) []message {
	t.Helper()
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(b)))
	cr.chunkSize = cs
	var out []message
	for i := 0; i < n; i++ {
		m, err := cr.ReadMessage()
		if err != nil {
			t.Fatalf("ReadMessage %d: %v", i, err)
		}
		m.Payload = bytes.Clone(m.Payload)
		out = append(out, m)
	}
	if _, err := cr.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Fatalf("after %d messages: err = %v, want EOF", n, err)
	}
	return out
}

func TestChunkRoundTrip(t *testing.T) {
	video := func(ts uint32, n int) message {
		return message{Type: typeVideo, CSID: csidVideo, StreamID: 1, Time: ts, Payload: payload(n, byte(ts))}
	}
	tests := []struct {
		name      string
		chunkSize uint32
		msgs      []message
		formats   []uint8 // first-chunk format of each message, when checked
	}{
		{
			name: "one small message", chunkSize: 128,
			msgs:    []message{{Type: typeCommandAMF0, CSID: 3, Time: 0, Payload: []byte("hello")}},
			formats: []uint8{0},
		},
		{
			name: "header compression: 0, then 1, 2, 3 as fields repeat", chunkSize: 128,
			msgs:    []message{video(0, 10), video(40, 20), video(70, 20), video(100, 20), video(130, 20), video(180, 20)},
			formats: []uint8{0, 1, 2, 3, 3, 2},
		},
		{
			name: "timestamp going back and stream id change use fmt 0", chunkSize: 128,
			msgs: []message{video(1000, 5), video(500, 5),
				{Type: typeVideo, CSID: csidVideo, StreamID: 2, Time: 600, Payload: payload(5, 1)}},
			formats: []uint8{0, 0, 0},
		},
		{
			name: "message larger than the chunk size", chunkSize: 128,
			msgs: []message{video(0, 10000), video(33, 129), video(66, 128), video(99, 127)},
		},
		{
			name: "large chunk size", chunkSize: 65536,
			msgs: []message{video(0, 200000), video(40, 10)},
		},
		{
			name: "extended timestamps, absolute and delta, across chunks", chunkSize: 128,
			msgs: []message{
				video(0xffffff, 300),       // exactly the marker: extended absolute
				video(0x1000000, 300),      // delta 1
				video(0x3000000, 300),      // delta over 24 bits: extended fmt 2
				video(0x5000000-1, 300),    // another extended delta
				video(0x7000000-2, 300),    // the same one: fmt 3 carrying the extended delta
				video(0xfffffff0, 10),      // near the 32-bit end, new length: fmt 1
				video(5, 300),              // wrapped: backwards, fmt 0
				video(0xff000000, 300),     // extended delta
				video(0xff000000+40, 300),  // small delta after extended
				video(0xff000000+80, 300),  // the same delta: fmt 3 without extended
				video(0xff000000+120, 300), // and again
			},
			formats: []uint8{0, 2, 2, 2, 3, 1, 0, 2, 2, 3, 3},
		},
		{
			name: "two and three byte chunk stream ids", chunkSize: 128,
			msgs: []message{
				{Type: typeAudio, CSID: 64, Time: 1, Payload: payload(300, 1)},
				{Type: typeAudio, CSID: 319, Time: 2, Payload: payload(300, 2)},
				{Type: typeAudio, CSID: 320, Time: 3, Payload: payload(300, 3)},
				{Type: typeAudio, CSID: 65599, Time: 4, Payload: payload(300, 4)},
				{Type: typeAudio, CSID: 65599, Time: 8, Payload: payload(300, 5)},
			},
		},
		{
			name: "empty message", chunkSize: 128,
			msgs: []message{{Type: typeDataAMF0, CSID: 5, Time: 7}, {Type: typeDataAMF0, CSID: 5, Time: 9, Payload: []byte{1}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, formats := writeAll(t, tc.chunkSize, tc.msgs)
			if tc.formats != nil && !reflect.DeepEqual(formats, tc.formats) {
				t.Errorf("header formats %v, want %v", formats, tc.formats)
			}
			got := readAll(t, tc.chunkSize, b, len(tc.msgs))
			for i := range tc.msgs {
				want := tc.msgs[i]
				if !sameMessage(got[i], want) {
					t.Errorf("message %d: got type %d csid %d stream %d time %#x len %d, want type %d csid %d stream %d time %#x len %d",
						i, got[i].Type, got[i].CSID, got[i].StreamID, got[i].Time, len(got[i].Payload),
						want.Type, want.CSID, want.StreamID, want.Time, len(want.Payload))
				}
			}
		})
	}
}

// rawChunk builds one chunk by hand, the way a peer might.
func rawChunk(format uint8, csid uint32, fields []byte, ext []byte, data []byte) []byte {
	b := basicHeader(nil, format, csid)
	b = append(b, fields...)
	b = append(b, ext...)
	return append(b, data...)
}

func hdr0(ts, length uint32, typ uint8, sid uint32) []byte {
	b := []byte{byte(ts >> 16), byte(ts >> 8), byte(ts), byte(length >> 16), byte(length >> 8), byte(length), typ}
	return binary.LittleEndian.AppendUint32(b, sid)
}

func TestReadHandMadeChunks(t *testing.T) {
	ext := binary.BigEndian.AppendUint32(nil, 0x01234567)
	p := payload(200, 9)
	tests := []struct {
		name  string
		in    []byte
		times []uint32
	}{
		{
			// FMLE sends fmt 3 for the next audio message after a fmt 0:
			// the fmt 0 timestamp counts as the delta.
			name: "fmt 3 new message after fmt 0 adds the first timestamp",
			in: slicesConcat(
				rawChunk(0, 4, hdr0(26, 3, typeAudio, 1), nil, []byte{1, 2, 3}),
				rawChunk(3, 4, nil, nil, []byte{4, 5, 6})),
			times: []uint32{26, 52},
		},
		{
			name: "extended timestamp repeated in the continuation chunk (spec, ffmpeg)",
			in: slicesConcat(
				rawChunk(0, 6, hdr0(0xffffff, 200, typeVideo, 1), ext, p[:128]),
				rawChunk(3, 6, nil, ext, p[128:])),
			times: []uint32{0x01234567},
		},
		{
			name: "extended timestamp not repeated (old peers)",
			in: slicesConcat(
				rawChunk(0, 6, hdr0(0xffffff, 200, typeVideo, 1), ext, p[:128]),
				rawChunk(3, 6, nil, nil, p[128:])),
			times: []uint32{0x01234567},
		},
		{
			name: "fmt 3 new message after an extended header reads the extended delta",
			in: slicesConcat(
				rawChunk(0, 6, hdr0(10, 200, typeVideo, 1), nil, p[:128]),
				rawChunk(3, 6, nil, nil, p[128:]),
				rawChunk(1, 6, []byte{0xff, 0xff, 0xff, 0, 0, 200, typeVideo}, ext, p[:128]),
				rawChunk(3, 6, nil, ext, p[128:]),
				rawChunk(3, 6, nil, ext, p[:128]),
				rawChunk(3, 6, nil, ext, p[128:])),
			times: []uint32{10, 10 + 0x01234567, 10 + 2*0x01234567},
		},
		{
			name:  "fresh chunk stream with fmt 1 (librtmp pings)",
			in:    rawChunk(1, 2, []byte{0, 0, 0, 0, 0, 6, typeUserControl}, nil, []byte{0, 6, 0, 0, 0, 9}),
			times: []uint32{0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr := newChunkReader(bufio.NewReader(bytes.NewReader(tc.in)))
			for i, want := range tc.times {
				m, err := cr.ReadMessage()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if m.Time != want {
					t.Errorf("message %d time %#x, want %#x", i, m.Time, want)
				}
				if m.Type == typeVideo && !bytes.Equal(m.Payload, p) {
					t.Errorf("message %d payload differs", i)
				}
			}
			if _, err := cr.ReadMessage(); !errors.Is(err, io.EOF) {
				t.Fatalf("trailing: %v", err)
			}
		})
	}
}

func sameMessage(a, b message) bool {
	return a.Type == b.Type && a.CSID == b.CSID && a.StreamID == b.StreamID && a.Time == b.Time && bytes.Equal(a.Payload, b.Payload)
}

func slicesConcat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestInterleavedChunkStreams(t *testing.T) {
	a, v := payload(300, 1), payload(300, 2)
	in := slicesConcat(
		rawChunk(0, 4, hdr0(0, 300, typeAudio, 1), nil, a[:128]),
		rawChunk(0, 6, hdr0(0, 300, typeVideo, 1), nil, v[:128]),
		rawChunk(3, 4, nil, nil, a[128:256]),
		rawChunk(3, 6, nil, nil, v[128:256]),
		rawChunk(3, 6, nil, nil, v[256:]), // video completes first
		rawChunk(3, 4, nil, nil, a[256:]),
	)
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(in)))
	m1, err := cr.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if m1.Type != typeVideo || !bytes.Equal(m1.Payload, v) {
		t.Fatalf("first message: type %d, payload ok %v", m1.Type, bytes.Equal(m1.Payload, v))
	}
	m2, err := cr.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if m2.Type != typeAudio || !bytes.Equal(m2.Payload, a) {
		t.Fatalf("second message: type %d, payload ok %v", m2.Type, bytes.Equal(m2.Payload, a))
	}
}

func TestChunkReaderErrors(t *testing.T) {
	many := []byte{}
	for i := uint32(0); i <= maxChunkStreams; i++ {
		many = append(many, rawChunk(0, 3+i, hdr0(0, 1, typeVideo, 1), nil, []byte{1})...)
	}
	tests := []struct {
		name string
		in   []byte
		max  uint32
		want string
	}{
		{"fmt 3 on a fresh stream", rawChunk(3, 5, nil, nil, []byte{1}), 0, "starts with fmt 3"},
		{"fmt 2 on a fresh stream", rawChunk(2, 5, []byte{0, 0, 1}, nil, []byte{1}), 0, "starts with fmt 2"},
		{"too many chunk streams", many, 0, "too many chunk streams"},
		{"message over the limit", rawChunk(0, 5, hdr0(0, 2000, typeVideo, 1), nil, nil), 1000, "exceeds"},
		{"truncated header", []byte{0x05, 0, 0}, 0, "read chunk header"},
		{"truncated data", rawChunk(0, 5, hdr0(0, 100, typeVideo, 1), nil, []byte{1, 2}), 0, "read chunk data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr := newChunkReader(bufio.NewReader(bytes.NewReader(tc.in)))
			if tc.max > 0 {
				cr.maxMessage = tc.max
			}
			var err error
			for err == nil {
				_, err = cr.ReadMessage()
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestAbortDropsPartialMessage(t *testing.T) {
	v := payload(300, 3)
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(slicesConcat(
		rawChunk(0, 6, hdr0(0, 300, typeVideo, 1), nil, v[:128]),
		rawChunk(0, 6, hdr0(40, 300, typeVideo, 1), nil, v[:128]), // fmt 0 mid-message restarts
		rawChunk(3, 6, nil, nil, v[128:256]),
		rawChunk(3, 6, nil, nil, v[256:]),
	))))
	m, err := cr.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if m.Time != 40 || !bytes.Equal(m.Payload, v) {
		t.Fatalf("got time %d, payload ok %v", m.Time, bytes.Equal(m.Payload, v))
	}
	if cr.buffered != 0 {
		t.Fatalf("buffered = %d after a complete message", cr.buffered)
	}

	cr = newChunkReader(bufio.NewReader(bytes.NewReader(rawChunk(0, 6, hdr0(0, 300, typeVideo, 1), nil, v[:128]))))
	if _, err := cr.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if cr.buffered != 128 {
		t.Fatalf("buffered = %d, want 128", cr.buffered)
	}
	cr.abort(6)
	if cr.buffered != 0 || cr.low[6].partial {
		t.Fatal("abort kept the partial message")
	}
}

// A random mix of messages on several chunk streams and chunk sizes
// survives the trip.
func TestChunkRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, cs := range []uint32{1, 7, 128, 4096} {
		t.Run(fmt.Sprint("chunk size ", cs), func(t *testing.T) {
			var msgs []message
			times := map[uint32]uint32{}
			for i := 0; i < 300; i++ {
				csid := []uint32{3, 4, 6, 70}[r.IntN(4)]
				times[csid] += uint32(r.IntN(3)) * 20
				if r.IntN(50) == 0 {
					times[csid] += 0x1000000
				}
				msgs = append(msgs, message{Type: uint8(8 + r.IntN(2)), CSID: csid, StreamID: uint32(r.IntN(2)),
					Time: times[csid], Payload: payload([]int{0, 1, 20, 20, 300, 5000}[r.IntN(6)], byte(i))})
			}
			b, _ := writeAll(t, cs, msgs)
			got := readAll(t, cs, b, len(msgs))
			for i := range msgs {
				if !sameMessage(got[i], msgs[i]) {
					t.Fatalf("message %d differs: got time %d len %d, want time %d len %d", i, got[i].Time, len(got[i].Payload), msgs[i].Time, len(msgs[i].Payload))
				}
			}
		})
	}
}

func TestReaderReusesBuffers(t *testing.T) {
	var msgs []message
	for i := 0; i < 60; i++ {
		msgs = append(msgs, message{Type: typeVideo, CSID: 6, StreamID: 1, Time: uint32(i * 40), Payload: payload(3000, byte(i))})
	}
	b, _ := writeAll(t, 128, msgs)
	cr := newChunkReader(bufio.NewReaderSize(bytes.NewReader(b), 64<<10))
	cr.ReadMessage() // the first message sizes the buffer
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := cr.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per message, want 0", allocs)
	}
}

// A peer announcing a 16 MB message in one chunk and sending 10 bytes of
// it costs us about what it sent, not what it announced.
func TestMemoryFollowsArrivingBytes(t *testing.T) {
	in := rawChunk(0, 6, hdr0(0, 0xffffff, typeVideo, 1), nil, payload(10, 1))
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(in)))
	cr.chunkSize = maxChunkSize
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := cr.ReadMessage(); err == nil {
		t.Fatal("no error on a truncated message")
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("allocated %d bytes for 10 received", d)
	}
}

// Big payloads are not pinned once the caller is done with them.
func TestBigBufferReleased(t *testing.T) {
	b, _ := writeAll(t, 4096, []message{
		{Type: typeVideo, CSID: 6, StreamID: 1, Payload: payload(keepBuffer+1, 1)},
		{Type: typeAudio, CSID: 4, StreamID: 1, Payload: payload(10, 1)},
	})
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(b)))
	cr.chunkSize = 4096
	if _, err := cr.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if _, err := cr.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if cap(cr.low[6].buf) != 0 {
		t.Fatalf("%d byte buffer kept", cap(cr.low[6].buf))
	}
}

func TestWriterDoesNotAllocate(t *testing.T) {
	cw := newChunkWriter(bufio.NewWriter(io.Discard))
	cw.chunkSize = 4096
	m := message{Type: typeVideo, CSID: csidVideo, StreamID: 1, Time: 0x1000000, Payload: payload(20000, 1)}
	allocs := testing.AllocsPerRun(50, func() {
		m.Time += 40
		if err := cw.WriteMessage(m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per message, want 0", allocs)
	}
}
