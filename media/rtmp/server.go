package rtmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

// ErrServerClosed is returned by Serve after Shutdown, and is the error
// a Sink sees when its publish was cut by Shutdown.
var ErrServerClosed = errors.New("rtmp: server closed")

// PublishInfo describes a publish request.
type PublishInfo struct {
	App        string     // from connect's app, without any query
	Stream     string     // the publish name without its query
	Query      url.Values // the publish name's query, then the app's (tcUrl) query for keys it lacks
	RemoteAddr net.Addr
	TCURL      string       // connect's tcUrl, as sent
	FlashVer   string       // connect's flashVer, e.g. "FMLE/3.0 (compatible; Lavf59.27.100)"
	Stats      func() Stats // live counters of the publishing connection
}

// Sink receives one publish.
type Sink interface {
	// WriteTag receives each audio, video and script tag in order. t and
	// t.Data are valid only during the call: the buffer is reused for the
	// next message, so copy what you keep. An error ends the publish.
	WriteTag(t *flv.Tag) error
	// Close is called once when the publish ends: err is nil on a clean
	// unpublish (FCUnpublish, deleteStream, closeStream), otherwise why it
	// ended (the publisher left, timed out, sent garbage, or Shutdown).
	Close(err error)
}

// Handler decides on publish requests.
type Handler interface {
	// Publish accepts a publish by returning its Sink. An error refuses it:
	// the publisher gets onStatus NetStream.Publish.BadName with the
	// error's text and the connection is closed. ctx ends with the
	// connection.
	Publish(ctx context.Context, info PublishInfo) (Sink, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, info PublishInfo) (Sink, error)

// Publish calls f.
func (f HandlerFunc) Publish(ctx context.Context, info PublishInfo) (Sink, error) {
	return f(ctx, info)
}

// Server accepts RTMP publishers.
type Server struct {
	Handler Handler
	Logger  log.Logger // go-kit logger; nil logs nothing
	// ReadTimeout cuts a connection that sent nothing for this long, and
	// bounds each write. Default 10s.
	ReadTimeout time.Duration

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func (s *Server) init() {
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*serverConn]struct{})
	}
}

func (s *Server) logger() log.Logger {
	if s.Logger == nil {
		return log.NewNopLogger()
	}
	return s.Logger
}

func (s *Server) timeout() time.Duration {
	if s.ReadTimeout > 0 {
		return s.ReadTimeout
	}
	return 10 * time.Second
}

// Serve accepts connections on l, each served on its own goroutine, until
// Shutdown or an accept error. It always returns an error; ErrServerClosed
// after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.init()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var tempDelay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off, as net/http does.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				level.Warn(s.logger()).Log("msg", "rtmp accept failed, retrying", "err", err, "delay", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("rtmp: accept: %w", err)
		}
		tempDelay = 0
		sc := &serverConn{srv: s, conn: newConn(nc, s.timeout()), start: time.Now()}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			sc.serve()
			s.mu.Lock()
			delete(s.conns, sc)
			s.mu.Unlock()
		}()
	}
}

// Shutdown stops accepting, ends every publish (their sinks get
// ErrServerClosed) and waits for the connection goroutines until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.closed = true
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	for sc := range s.conns {
		sc.conn.nc.Close()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rtmp: shutdown: %w", ctx.Err())
	}
}

// serverConn is one client connection.
type serverConn struct {
	srv    *Server
	conn   *conn
	start  time.Time
	log    log.Logger
	digest bool // the client used the digest handshake

	// connect
	app      string
	appQuery url.Values
	tcURL    string
	flashVer string

	nextStreamID uint32
	sink         Sink
	publishStart time.Time
	info         PublishInfo
	tag          flv.Tag
}

// errPublishRefused ends a connection whose publish the handler refused.
var errPublishRefused = errors.New("publish refused")

func (sc *serverConn) serve() {
	c := sc.conn
	sc.log = log.With(sc.srv.logger(), "remote", c.nc.RemoteAddr().String())
	ctx, cancel := context.WithCancel(sc.srv.ctx)
	defer cancel()
	defer c.nc.Close()

	err := sc.run(ctx)

	if sc.sink != nil {
		// A clean unpublish already closed the sink and set it to nil.
		if sc.srv.ctx.Err() != nil {
			err = ErrServerClosed
		} else if errors.Is(err, io.EOF) {
			err = fmt.Errorf("rtmp: publisher disconnected without unpublishing: %w", err)
		}
		sc.endPublish(err)
	}
	st := c.stats.snapshot()
	lg := level.Debug(sc.log)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errPublishRefused) && sc.srv.ctx.Err() == nil {
		lg = level.Warn(sc.log)
	}
	lg.Log("msg", "rtmp connection closed", "digest_handshake", sc.digest,
		"duration", time.Since(sc.start).Round(time.Millisecond), "bytes_in", st.BytesIn, "bytes_out", st.BytesOut,
		"video", st.Video, "audio", st.Audio, "data", st.Data, "commands", st.Commands, "err", errString(err))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (sc *serverConn) run(ctx context.Context) error {
	c := sc.conn
	timeout := sc.srv.timeout()
	c.nc.SetDeadline(time.Now().Add(timeout))
	digest, err := serverHandshake(c.br, c.raw)
	if err != nil {
		return err
	}
	sc.digest = digest
	for {
		c.nc.SetReadDeadline(time.Now().Add(timeout))
		m, err := c.readMessage()
		if err != nil {
			return err
		}
		switch m.Type {
		case typeCommandAMF0, typeCommandAMF3:
			if err := sc.command(ctx, m); err != nil {
				return err
			}
		case typeAudio, typeVideo:
			if err := sc.media(m.Type, m.Time, m.Payload); err != nil {
				return err
			}
		case typeDataAMF0, typeDataAMF3:
			p := m.Payload
			if m.Type == typeDataAMF3 && len(p) > 0 && p[0] == 0 {
				p = p[1:] // AMF0 values behind an AMF3 format byte
			}
			if _, _, err := amf0.DecodeOne(p); err != nil {
				level.Debug(sc.log).Log("msg", "rtmp data message dropped", "type", m.Type, "err", err)
				continue
			}
			if err := sc.media(flv.TagScript, m.Time, amf0.StripSetDataFrame(p)); err != nil {
				return err
			}
		case typeAggregate:
			if err := sc.aggregate(m); err != nil {
				return err
			}
		default:
			level.Debug(sc.log).Log("msg", "rtmp message ignored", "type", m.Type, "len", len(m.Payload))
		}
	}
}

// media hands a tag to the sink; media outside a publish is dropped.
func (sc *serverConn) media(typ uint8, ts uint32, data []byte) error {
	if sc.sink == nil {
		return nil
	}
	sc.tag = flv.Tag{Type: typ, Time: ts, Data: data}
	if err := sc.sink.WriteTag(&sc.tag); err != nil {
		return fmt.Errorf("rtmp: sink: %w", err)
	}
	return nil
}

// aggregate splits an aggregate message (FLV tags back to back, each with
// its PreviousTagSize) into tags. Sub-tag times are relative to the first
// one and shifted onto the message's timestamp.
func (sc *serverConn) aggregate(m message) error {
	p := m.Payload
	var first uint32
	for i := 0; len(p) >= 11; i++ {
		typ := p[0]
		size := be24(p[1:])
		ts := be24(p[4:]) | uint32(p[7])<<24
		if uint64(len(p)) < 11+uint64(size) {
			level.Debug(sc.log).Log("msg", "rtmp aggregate message truncated", "len", len(m.Payload))
			return nil
		}
		if i == 0 {
			first = ts
		}
		body := p[11 : 11+size]
		switch typ {
		case flv.TagAudio, flv.TagVideo, flv.TagScript:
			if typ == flv.TagScript {
				body = amf0.StripSetDataFrame(body)
			}
			if err := sc.media(typ, m.Time+(ts-first), body); err != nil {
				return err
			}
		}
		p = p[min(uint64(len(p)), 11+uint64(size)+4):]
	}
	return nil
}

func (sc *serverConn) command(ctx context.Context, m message) error {
	c := sc.conn
	cmd, err := parseCommand(m)
	if err != nil {
		level.Debug(sc.log).Log("msg", "rtmp command dropped", "err", err)
		return nil
	}
	switch cmd.Name {
	case "connect":
		return sc.connect(cmd)
	case "releaseStream", "FCPublish":
		// Flash Media Live Encoder habits that real servers answer; the
		// publish itself comes later.
		if cmd.Name == "FCPublish" {
			if err := c.writeCommand(typeCommandAMF0, csidCommand, 0, "onFCPublish", 0.0, nil,
				statusObject("status", "NetStream.Publish.Start", cmd.stringArg(0))); err != nil {
				return err
			}
		}
		return sc.result(cmd, m.StreamID, nil, amf0.Undefined{})
	case "createStream":
		sc.nextStreamID++
		return sc.result(cmd, m.StreamID, nil, float64(sc.nextStreamID))
	case "publish":
		return sc.publish(ctx, cmd, m.StreamID)
	case "FCUnpublish", "deleteStream", "closeStream":
		if sc.sink != nil {
			level.Debug(sc.log).Log("msg", "rtmp unpublish", "command", cmd.Name)
			sc.endPublish(nil)
		}
		if cmd.Name == "FCUnpublish" {
			return sc.result(cmd, m.StreamID, nil, amf0.Undefined{})
		}
		return nil
	default:
		level.Debug(sc.log).Log("msg", "rtmp command ignored", "command", cmd.Name)
		return nil
	}
}

// result answers a command that expects one (transaction id not 0).
func (sc *serverConn) result(cmd command, streamID uint32, vals ...any) error {
	if cmd.TxID == 0 {
		return nil
	}
	return sc.conn.writeCommand(typeCommandAMF0, csidCommand, streamID, append([]any{"_result", cmd.TxID}, vals...)...)
}

func (sc *serverConn) connect(cmd command) error {
	c := sc.conn
	if cmd.Obj == nil {
		return fmt.Errorf("rtmp: connect without a command object")
	}
	sc.tcURL = cmd.Obj.String("tcUrl")
	sc.flashVer = cmd.Obj.String("flashVer")
	app := cmd.Obj.String("app")
	if app == "" && sc.tcURL != "" {
		if u, err := url.Parse(sc.tcURL); err == nil {
			app = strings.Trim(u.Path, "/")
			if u.RawQuery != "" {
				app += "?" + u.RawQuery
			}
		}
	}
	// OBS and others put a query (a key) on the server URL, which lands in
	// the app name.
	if i := strings.IndexByte(app, '?'); i >= 0 {
		sc.appQuery, _ = url.ParseQuery(app[i+1:])
		app = app[:i]
	}
	sc.app = app
	sc.log = log.With(sc.log, "app", app)

	// What FMS, nginx-rtmp and SRS send before the result.
	if err := c.sendWindowAckSize(defaultWindow); err != nil {
		return err
	}
	if err := c.setPeerBandwidth(defaultWindow); err != nil {
		return err
	}
	if err := c.setChunkSize(outChunkSize); err != nil {
		return err
	}
	encoding := 0.0
	if v, ok := cmd.Obj.Number("objectEncoding"); ok {
		encoding = v
	}
	props := amf0.Object{{Key: "fmsVer", Value: "FMS/3,5,7,7009"}, {Key: "capabilities", Value: 31.0}, {Key: "mode", Value: 1.0}}
	info := statusObject("status", "NetConnection.Connect.Success", "Connection succeeded.")
	info = append(info, amf0.Property{Key: "objectEncoding", Value: encoding})
	txid := cmd.TxID
	if txid == 0 {
		txid = 1
	}
	return c.writeCommand(typeCommandAMF0, csidCommand, 0, "_result", txid, props, info)
}

func (sc *serverConn) publish(ctx context.Context, cmd command, streamID uint32) error {
	c := sc.conn
	name := cmd.stringArg(0)
	stream, rawQuery, _ := strings.Cut(name, "?")
	query, _ := url.ParseQuery(rawQuery) // keep what parses
	for k, v := range sc.appQuery {
		if _, ok := query[k]; !ok {
			query[k] = v
		}
	}
	info := PublishInfo{App: sc.app, Stream: stream, Query: query, RemoteAddr: c.nc.RemoteAddr(),
		TCURL: sc.tcURL, FlashVer: sc.flashVer, Stats: c.stats.snapshot}

	var sink Sink
	var err error
	switch {
	case sc.sink != nil:
		err = errors.New("this connection already publishes")
	case stream == "":
		err = errors.New("empty stream name")
	case sc.srv.Handler == nil:
		err = errors.New("no handler")
	default:
		sink, err = sc.srv.Handler.Publish(ctx, info)
		if err == nil && sink == nil {
			err = errors.New("handler returned no sink")
		}
	}
	if err != nil {
		level.Info(sc.log).Log("msg", "rtmp publish refused", "stream", stream, "err", err)
		werr := c.writeCommand(typeCommandAMF0, csidStream, streamID, "onStatus", 0.0, nil,
			statusObject("error", "NetStream.Publish.BadName", err.Error()))
		sc.lingerClose()
		return errors.Join(errPublishRefused, werr)
	}

	sc.sink, sc.info, sc.publishStart = sink, info, time.Now()
	sc.log = log.With(sc.log, "stream", stream)
	level.Info(sc.log).Log("msg", "rtmp publish started", "flash_ver", sc.flashVer)
	if err := c.streamBegin(streamID); err != nil {
		return err
	}
	status := statusObject("status", "NetStream.Publish.Start", stream+" is now published.")
	status = append(status, amf0.Property{Key: "details", Value: stream})
	// No _result: publish is answered by onStatus alone, as FMS does.
	return c.writeCommand(typeCommandAMF0, csidStream, streamID, "onStatus", 0.0, nil, status)
}

// endPublish closes the sink once.
func (sc *serverConn) endPublish(err error) {
	if sc.sink == nil {
		return
	}
	st := sc.conn.stats.snapshot()
	level.Info(sc.log).Log("msg", "rtmp publish ended", "duration", time.Since(sc.publishStart).Round(time.Millisecond),
		"bytes_in", st.BytesIn, "video", st.Video, "audio", st.Audio, "err", errString(err))
	sc.sink.Close(err)
	sc.sink = nil
}

// lingerClose lets a refused client read our answer: closing a socket with
// unread input sends a reset, which can destroy the onStatus in flight. So
// half-close, drain briefly, then close.
func (sc *serverConn) lingerClose() {
	nc := sc.conn.nc
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, nc)
}
