package rtmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

// recordSink keeps copies of the tags it gets.
type recordSink struct {
	info   PublishInfo
	mu     sync.Mutex
	tags   []flv.Tag
	closed chan error // receives Close's error once
}

func (s *recordSink) WriteTag(t *flv.Tag) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags = append(s.tags, flv.Tag{Type: t.Type, Time: t.Time, Data: bytes.Clone(t.Data)})
	return nil
}

func (s *recordSink) Close(err error) { s.closed <- err }

func (s *recordSink) Tags() []flv.Tag {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]flv.Tag(nil), s.tags...)
}

func (s *recordSink) waitClose(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.closed:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("sink was not closed")
		return nil
	}
}

// recordHandler accepts every publish (or refuses with refuse) and hands
// the sinks out on a channel.
type recordHandler struct {
	refuse error
	sinks  chan *recordSink
}

func newRecordHandler() *recordHandler { return &recordHandler{sinks: make(chan *recordSink, 16)} }

func (h *recordHandler) Publish(ctx context.Context, info PublishInfo) (Sink, error) {
	if h.refuse != nil {
		return nil, h.refuse
	}
	s := &recordSink{info: info, closed: make(chan error, 1)}
	h.sinks <- s
	return s, nil
}

func (h *recordHandler) next(t *testing.T) *recordSink {
	t.Helper()
	select {
	case s := <-h.sinks:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no publish reached the handler")
		return nil
	}
}

func testLogger(t *testing.T) log.Logger {
	if testing.Verbose() {
		return log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))
	}
	return log.NewNopLogger()
}

// startServer serves on a loopback port until the test ends.
func startServer(t *testing.T, h Handler, timeout time.Duration) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: h, Logger: testLogger(t), ReadTimeout: timeout}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, l.Addr().String()
}

func dial(t *testing.T, url string) *Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := DialPublish(ctx, url)
	if err != nil {
		t.Fatalf("DialPublish: %v", err)
	}
	return p
}

// testTags is a publish as an encoder sends it: metadata, sequence headers,
// then frames, one larger than any chunk, and timestamps past 24 bits.
func testTags() []flv.Tag {
	meta, _ := amf0.Encode(nil, amf0.OnMetaData, amf0.ECMAArray{{Key: "width", Value: 320.0}, {Key: "height", Value: 180.0}})
	tags := []flv.Tag{
		{Type: flv.TagScript, Time: 0, Data: meta},
		{Type: flv.TagVideo, Time: 0, Data: []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f}},
		{Type: flv.TagAudio, Time: 0, Data: []byte{0xaf, 0, 0x12, 0x10}},
	}
	for i := 0; i < 100; i++ {
		ts := uint32(i * 40)
		if i >= 90 {
			ts = 0x1000000 + uint32(i*40) // extended timestamps
		}
		n := 200 + i*37
		if i == 10 {
			n = 300000 // many chunks at 4096
		}
		frame := payload(n, byte(i))
		frame[0] = 0x27
		if i%25 == 0 {
			frame[0] = 0x17
		}
		frame[1] = 1
		tags = append(tags, flv.Tag{Type: flv.TagVideo, Time: ts, Data: frame})
		tags = append(tags, flv.Tag{Type: flv.TagAudio, Time: ts + 3, Data: append([]byte{0xaf, 1}, payload(20+i, byte(i))...)})
	}
	return tags
}

func TestPublishFlow(t *testing.T) {
	h := newRecordHandler()
	_, addr := startServer(t, h, 0)
	p := dial(t, "rtmp://"+addr+"/live/room1?sign=abc&uid=42")
	sink := h.next(t)

	info := sink.info
	if info.App != "live" || info.Stream != "room1" || info.Query.Get("sign") != "abc" || info.Query.Get("uid") != "42" {
		t.Errorf("PublishInfo app %q stream %q query %v", info.App, info.Stream, info.Query)
	}
	if info.TCURL != "rtmp://"+addr+"/live" || info.RemoteAddr == nil {
		t.Errorf("PublishInfo tcUrl %q remote %v", info.TCURL, info.RemoteAddr)
	}

	tags := testTags()
	total := 0
	for i := range tags {
		if err := p.WriteTag(&tags[i]); err != nil {
			t.Fatalf("WriteTag %d: %v", i, err)
		}
		total += len(tags[i].Data)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := sink.waitClose(t); err != nil {
		t.Fatalf("Sink.Close(%v), want nil after a clean unpublish", err)
	}
	if p.BytesWritten() < int64(total) {
		t.Errorf("BytesWritten %d < %d bytes of tag data", p.BytesWritten(), total)
	}

	got := sink.Tags()
	if len(got) != len(tags) {
		t.Fatalf("sink got %d tags, want %d", len(got), len(tags))
	}
	for i := range tags {
		if got[i].Type != tags[i].Type || got[i].Time != tags[i].Time || !bytes.Equal(got[i].Data, tags[i].Data) {
			t.Fatalf("tag %d: got type %d time %d len %d, want type %d time %d len %d",
				i, got[i].Type, got[i].Time, len(got[i].Data), tags[i].Type, tags[i].Time, len(tags[i].Data))
		}
	}
	// What a store keeps is onMetaData without @setDataFrame, even though
	// the publisher sent it with one.
	if !amf0.HasPrefixString(got[0].Data, amf0.OnMetaData) {
		t.Error("script tag does not start with onMetaData")
	}
	st := info.Stats()
	if st.Video != 101 || st.Audio != 101 || st.Data != 1 || st.BytesIn < int64(total) {
		t.Errorf("server stats %+v", st)
	}
}

func TestPublishRefused(t *testing.T) {
	h := newRecordHandler()
	h.refuse = errors.New("stream room1 is banned")
	_, addr := startServer(t, h, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := DialPublish(ctx, "rtmp://"+addr+"/live/room1")
	if err == nil {
		p.Close()
		t.Fatal("publish accepted")
	}
	for _, want := range []string{"NetStream.Publish.BadName", "stream room1 is banned"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDialErrors(t *testing.T) {
	for _, url := range []string{"http://h/live/x", "rtmp:///live/x", "rtmp://h/onlyapp", "rtmp://h/app/"} {
		if _, err := DialPublish(context.Background(), url); err == nil {
			t.Errorf("DialPublish(%q) succeeded", url)
		}
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if _, err := DialPublish(context.Background(), "rtmp://"+addr+"/live/x"); err == nil || !strings.Contains(err.Error(), "dial") {
		t.Errorf("dial to a closed port: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct{ url, addr, app, name, tcURL string }{
		{"rtmp://example.com/live/room1", "example.com:1935", "live", "room1", "rtmp://example.com/live"},
		{"rtmp://127.0.0.1:19350/live/room1?sign=x", "127.0.0.1:19350", "live", "room1?sign=x", "rtmp://127.0.0.1:19350/live"},
		{"rtmp://h/app/inst/s", "h:1935", "app/inst", "s", "rtmp://h/app/inst"},
	}
	for _, tc := range tests {
		addr, app, name, tcURL, err := ParseURL(tc.url)
		if err != nil || addr != tc.addr || app != tc.app || name != tc.name || tcURL != tc.tcURL {
			t.Errorf("ParseURL(%q) = %q %q %q %q %v", tc.url, addr, app, name, tcURL, err)
		}
	}
}

// A client sending garbage and one that disconnects mid-chunk do not take
// the server down; a publish that starts after them works.
func TestBadClientsDoNotHurtOthers(t *testing.T) {
	h := newRecordHandler()
	_, addr := startServer(t, h, 2*time.Second)

	// Garbage: random bytes, starting with a valid version byte so they
	// get past C0, then more random bytes where chunks should be.
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 8000)
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		if i%2 == 0 {
			junk[0] = 3
		}
		c.Write(junk)
		c.Close()
	}

	// A real publisher that dies mid-chunk: its sink learns of the failure.
	p1 := dial(t, "rtmp://"+addr+"/live/dying")
	s1 := h.next(t)
	tag := flv.Tag{Type: flv.TagVideo, Time: 0, Data: []byte{0x17, 0, 0, 0, 0}}
	if err := p1.WriteTag(&tag); err != nil {
		t.Fatal(err)
	}
	// Half a chunk: a header promising 1000 bytes, then 10 of them.
	half := slicesConcat(rawChunk(0, csidVideo, hdr0(40, 1000, typeVideo, p1.streamID), nil, payload(10, 1)))
	p1.c.nc.Write(half)
	p1.c.nc.Close()
	if err := s1.waitClose(t); err == nil {
		t.Fatal("sink of a publisher that vanished mid-chunk closed with nil")
	}
	if got := s1.Tags(); len(got) != 1 {
		t.Fatalf("dying publisher delivered %d tags, want 1", len(got))
	}

	// The server still works.
	p2 := dial(t, "rtmp://"+addr+"/live/healthy")
	s2 := h.next(t)
	if err := p2.WriteTag(&tag); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.waitClose(t); err != nil {
		t.Fatalf("healthy publish closed with %v", err)
	}
	if len(s2.Tags()) != 1 {
		t.Fatalf("healthy publish delivered %d tags", len(s2.Tags()))
	}
}

func TestIdlePublisherIsCut(t *testing.T) {
	h := newRecordHandler()
	_, addr := startServer(t, h, 300*time.Millisecond)
	p := dial(t, "rtmp://"+addr+"/live/idle")
	defer p.Close()
	s := h.next(t)
	err := s.waitClose(t)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("idle publisher closed with %v, want a timeout", err)
	}
	// The publisher learns too.
	deadline := time.Now().Add(5 * time.Second)
	tag := flv.Tag{Type: flv.TagAudio, Data: []byte{0xaf, 1}}
	for p.WriteTag(&tag) == nil {
		if time.Now().After(deadline) {
			t.Fatal("WriteTag keeps succeeding on a connection the server cut")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShutdownEndsPublishes(t *testing.T) {
	h := newRecordHandler()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	p := dial(t, "rtmp://"+l.Addr().String()+"/live/x")
	defer p.Close()
	s := h.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.waitClose(t); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("sink closed with %v, want ErrServerClosed", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// rawPeer is the far end of a conn under test, speaking chunks by hand.
type rawPeer struct {
	nc net.Conn
	cr *chunkReader
	cw *chunkWriter
	bw *bufio.Writer
}

func connPair(t *testing.T) (*conn, *rawPeer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	bw := bufio.NewWriter(b)
	return newConn(a, time.Second), &rawPeer{nc: b, cr: newChunkReader(bufio.NewReader(b)), cw: newChunkWriter(bw), bw: bw}
}

func (p *rawPeer) send(t *testing.T, m message) {
	t.Helper()
	if err := p.cw.WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	if err := p.bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

func (p *rawPeer) expect(t *testing.T, typ uint8) message {
	t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := p.cr.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for message type %d: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
	}
}

func TestAcknowledgementsAndPing(t *testing.T) {
	c, peer := connPair(t)
	got := make(chan message, 16)
	go func() {
		for {
			m, err := c.readMessage()
			if err != nil {
				t.Logf("readMessage: %v", err)
				close(got)
				return
			}
			m.Payload = bytes.Clone(m.Payload)
			got <- m
		}
	}()

	// The peer asks for an ack every 1000 bytes, switches to 4096-byte
	// chunks, then sends 3 messages of 1500 bytes.
	peer.send(t, message{Type: typeWindowAckSize, CSID: 2, Payload: binary.BigEndian.AppendUint32(nil, 1000)})
	peer.send(t, message{Type: typeSetChunkSize, CSID: 2, Payload: binary.BigEndian.AppendUint32(nil, 4096)})
	peer.cw.chunkSize = 4096
	for i := 0; i < 3; i++ {
		peer.send(t, message{Type: typeVideo, CSID: 6, StreamID: 1, Time: uint32(i), Payload: payload(1500, byte(i))})
	}
	var last uint32
	for i := 0; i < 3; i++ {
		ack := peer.expect(t, typeAck)
		seq := binary.BigEndian.Uint32(ack.Payload)
		if seq <= last || seq < 1000*uint32(i+1) {
			t.Fatalf("ack %d: sequence %d after %d", i, seq, last)
		}
		last = seq
	}
	for i := 0; i < 3; i++ {
		m := <-got
		if m.Type != typeVideo || len(m.Payload) != 1500 || m.Payload[0] != payload(1500, byte(i))[0] {
			t.Fatalf("message %d: type %d len %d", i, m.Type, len(m.Payload))
		}
	}

	// Ping.
	peer.send(t, message{Type: typeUserControl, CSID: 2, Payload: []byte{0, eventPingRequest, 0, 0, 0x30, 0x39}})
	pong := peer.expect(t, typeUserControl)
	if !bytes.Equal(pong.Payload, []byte{0, eventPingResponse, 0, 0, 0x30, 0x39}) {
		t.Fatalf("ping response %x", pong.Payload)
	}

	// Set Peer Bandwidth gets our window in return.
	peer.send(t, message{Type: typeSetPeerBandwidth, CSID: 2, Payload: []byte{0, 0, 0x10, 0, 2}})
	win := peer.expect(t, typeWindowAckSize)
	if binary.BigEndian.Uint32(win.Payload) != 0x1000 {
		t.Fatalf("window ack size %x", win.Payload)
	}

	// Abort drops a half-sent message; the next one arrives whole.
	peer.nc.Write(rawChunk(0, 7, hdr0(0, 10000, typeAudio, 1), nil, payload(4096, 0)))
	peer.send(t, message{Type: typeAbort, CSID: 2, Payload: binary.BigEndian.AppendUint32(nil, 7)})
	peer.cw.low[7] = outStream{} // the peer starts over with a full header
	peer.send(t, message{Type: typeAudio, CSID: 7, StreamID: 1, Time: 9, Payload: payload(10, 5)})
	m := <-got
	if m.Type != typeAudio || m.Time != 9 || len(m.Payload) != 10 {
		t.Fatalf("after abort: type %d time %d len %d", m.Type, m.Time, len(m.Payload))
	}
	if st := c.stats.snapshot(); st.Control < 5 || st.Video != 3 || st.Audio != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The server answers the commands of an FMLE-style publish the way clients
// expect, including the ones it does not act on.
func TestServerCommandReplies(t *testing.T) {
	h := newRecordHandler()
	_, addr := startServer(t, h, 0)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if err := clientHandshake(br, nc, 0); err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(nc)
	peer := &rawPeer{nc: nc, cr: newChunkReader(br), cw: newChunkWriter(bw), bw: bw}
	cmd := func(csid, sid uint32, vals ...any) {
		b, err := amf0.Encode(nil, vals...)
		if err != nil {
			t.Fatal(err)
		}
		peer.send(t, message{Type: typeCommandAMF0, CSID: csid, StreamID: sid, Payload: b})
	}
	reply := func() []any {
		m := peer.expect(t, typeCommandAMF0)
		vals, err := amf0.Decode(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		return vals
	}

	// OBS puts the stream key's query on the app.
	cmd(3, 0, "connect", 1.0, amf0.Object{{Key: "app", Value: "live?token=t1"}, {Key: "tcUrl", Value: "rtmp://x/live?token=t1"}})
	chunkSize := peer.expect(t, typeSetChunkSize)
	peer.cr.setChunkSize(binary.BigEndian.Uint32(chunkSize.Payload))
	r := reply()
	if r[0] != "_result" || r[1] != 1.0 || r[3].(amf0.Object).String("code") != "NetConnection.Connect.Success" {
		t.Fatalf("connect reply %v", r)
	}
	cmd(3, 0, "someVendorCommand", 2.0, nil) // ignored, connection stays
	cmd(3, 0, "releaseStream", 3.0, nil, "cam")
	if r := reply(); r[0] != "_result" || r[1] != 3.0 {
		t.Fatalf("releaseStream reply %v", r)
	}
	cmd(3, 0, "FCPublish", 4.0, nil, "cam")
	if r := reply(); r[0] != "onFCPublish" {
		t.Fatalf("FCPublish reply %v", r)
	}
	if r := reply(); r[0] != "_result" || r[1] != 4.0 {
		t.Fatalf("FCPublish result %v", r)
	}
	cmd(3, 0, "createStream", 5.0, nil)
	r = reply()
	if r[0] != "_result" || r[1] != 5.0 || r[3] != 1.0 {
		t.Fatalf("createStream reply %v", r)
	}
	cmd(5, 1, "publish", 6.0, nil, "cam?sig=s2", "live")
	begin := peer.expect(t, typeUserControl)
	if !bytes.Equal(begin.Payload, []byte{0, eventStreamBegin, 0, 0, 0, 1}) {
		t.Fatalf("stream begin %x", begin.Payload)
	}
	r = reply()
	if r[0] != "onStatus" || r[3].(amf0.Object).String("code") != "NetStream.Publish.Start" {
		t.Fatalf("publish reply %v", r)
	}
	s := h.next(t)
	if s.info.App != "live" || s.info.Stream != "cam" || s.info.Query.Get("token") != "t1" || s.info.Query.Get("sig") != "s2" {
		t.Fatalf("info %+v", s.info)
	}

	// Metadata as ffmpeg sends it; then an AMF3 data message with the
	// AMF0 format byte.
	meta, _ := amf0.Encode(nil, amf0.SetDataFrame, amf0.OnMetaData, amf0.ECMAArray{{Key: "fps", Value: 25.0}})
	peer.send(t, message{Type: typeDataAMF0, CSID: 5, StreamID: 1, Payload: meta})
	peer.send(t, message{Type: typeDataAMF3, CSID: 5, StreamID: 1, Time: 5, Payload: append([]byte{0}, meta...)})
	// An aggregate of two audio tags.
	var agg []byte
	for i, ts := range []uint32{1000, 1023} {
		body := []byte{0xaf, 1, byte(i)}
		agg = append(agg, flv.TagAudio, 0, 0, byte(len(body)), byte(ts>>16), byte(ts>>8), byte(ts), 0, 0, 0, 0)
		agg = append(agg, body...)
		agg = binary.BigEndian.AppendUint32(agg, uint32(11+len(body)))
	}
	peer.send(t, message{Type: typeAggregate, CSID: 4, StreamID: 1, Time: 100, Payload: agg})
	cmd(3, 0, "FCUnpublish", 7.0, nil, "cam")
	if err := s.waitClose(t); err != nil {
		t.Fatalf("sink closed with %v", err)
	}
	tags := s.Tags()
	want := []struct {
		typ  uint8
		time uint32
	}{{flv.TagScript, 0}, {flv.TagScript, 5}, {flv.TagAudio, 100}, {flv.TagAudio, 123}}
	if len(tags) != len(want) {
		t.Fatalf("got %d tags, want %d", len(tags), len(want))
	}
	for i, w := range want {
		if tags[i].Type != w.typ || tags[i].Time != w.time {
			t.Errorf("tag %d: type %d time %d, want %d %d", i, tags[i].Type, tags[i].Time, w.typ, w.time)
		}
	}
	if md, err := amf0.ParseMetaData(tags[0].Data); err != nil || !amf0.HasPrefixString(tags[0].Data, amf0.OnMetaData) {
		t.Errorf("stored metadata %x: %v", tags[0].Data, err)
	} else if fps, _ := md.Number("fps"); fps != 25 {
		t.Errorf("fps %v", fps)
	}
}

// fakeConn feeds fixed input and swallows output: the server side of a
// connection driven by a fuzzer.
type fakeConn struct {
	r *bytes.Reader
}

func (f *fakeConn) Read(p []byte) (int, error)         { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (f *fakeConn) Close() error                       { return nil }
func (f *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzServerConn feeds arbitrary bytes after a valid handshake to the
// server side: it must neither panic nor hold more than the limits allow.
func FuzzServerConn(f *testing.F) {
	// Seeds: a real publish as our client writes it.
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	cw := newChunkWriter(bw)
	enc := func(vals ...any) []byte { b, _ := amf0.Encode(nil, vals...); return b }
	cw.WriteMessage(message{Type: typeSetChunkSize, CSID: 2, Payload: binary.BigEndian.AppendUint32(nil, 4096)})
	cw.chunkSize = 4096
	cw.WriteMessage(message{Type: typeCommandAMF0, CSID: 3, Payload: enc("connect", 1.0, amf0.Object{{Key: "app", Value: "live"}})})
	cw.WriteMessage(message{Type: typeCommandAMF0, CSID: 3, Payload: enc("createStream", 2.0, nil)})
	cw.WriteMessage(message{Type: typeCommandAMF0, CSID: 5, StreamID: 1, Payload: enc("publish", 3.0, nil, "s?a=b", "live")})
	cw.WriteMessage(message{Type: typeDataAMF0, CSID: 5, StreamID: 1, Payload: enc("@setDataFrame", "onMetaData", amf0.Object{})})
	cw.chunkSize = 64 // small seeds: the fuzzer minimizes what it finds, slowly for large inputs
	cw.WriteMessage(message{Type: typeSetChunkSize, CSID: 2, Payload: binary.BigEndian.AppendUint32(nil, 64)})
	cw.WriteMessage(message{Type: typeVideo, CSID: 6, StreamID: 1, Time: 0xffffff, Payload: payload(150, 1)})
	cw.WriteMessage(message{Type: typeAggregate, CSID: 4, StreamID: 1, Time: 1, Payload: []byte{8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xaf, 0, 0, 0, 12}})
	cw.WriteMessage(message{Type: typeCommandAMF0, CSID: 3, Payload: enc("deleteStream", 4.0, nil, 1.0)})
	bw.Flush()
	f.Add(buf.Bytes())
	f.Add([]byte{0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(rawChunk(0, 70, hdr0(0xffffff, 5, typeAudio, 1), []byte{0, 0, 0, 1}, []byte{1, 2, 3, 4, 5}))

	hs := make([]byte, 1+2*handshakeSize)
	hs[0] = 3
	f.Fuzz(func(t *testing.T, in []byte) {
		h := &countingHandler{}
		srv := &Server{Handler: h}
		srv.init()
		nc := &fakeConn{r: bytes.NewReader(append(hs[:len(hs):len(hs)], in...))}
		sc := &serverConn{srv: srv, conn: newConn(nc, time.Second), log: log.NewNopLogger()}
		sc.run(context.Background())
		if sc.conn.cr.buffered > maxBuffered || sc.conn.cr.nstreams > maxChunkStreams {
			t.Fatalf("buffered %d bytes on %d chunk streams", sc.conn.cr.buffered, sc.conn.cr.nstreams)
		}
	})
}

type countingHandler struct{ n int }

func (h *countingHandler) Publish(ctx context.Context, info PublishInfo) (Sink, error) {
	h.n++
	if h.n > 1 {
		return nil, fmt.Errorf("once is enough")
	}
	return discardSink{}, nil
}

type discardSink struct{}

func (discardSink) WriteTag(t *flv.Tag) error { return nil }
func (discardSink) Close(err error)           {}

// A server that accepts and says nothing: DialPublish gives up when ctx
// ends, and says why.
func TestDialPublishHonoursContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = DialPublish(ctx, "rtmp://"+l.Addr().String()+"/live/x")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("err = %v, want a handshake error with context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("DialPublish took %v", d)
	}
}
