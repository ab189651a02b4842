package rtmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lastmile-qoe/lastmile/media/amf0"
	"github.com/lastmile-qoe/lastmile/media/flv"
)

const (
	// setupTimeout bounds DialPublish when ctx has no deadline.
	setupTimeout = 10 * time.Second
	// clientWriteTimeout bounds one WriteTag against a stuck server.
	clientWriteTimeout = 10 * time.Second
	// closeWait is how long Close waits for the server to hang up after
	// our unpublish, so it has read every byte before the socket closes.
	closeWait = 3 * time.Second
)

// ErrPublisherClosed is returned by WriteTag after Close.
var ErrPublisherClosed = errors.New("rtmp: publisher closed")

// Publisher publishes one stream to an RTMP server.
type Publisher struct {
	c        *conn
	name     string // publish name, with its query
	streamID uint32
	tx       float64
	scratch  []byte // script tag with @setDataFrame, under c.wmu

	mu      sync.Mutex
	err     error // why the connection failed or the server ended the publish
	closed  bool
	done    chan struct{} // the read loop returned
	closeMu sync.Mutex
}

// ParseURL splits an rtmp://host[:port]/app/stream[?query] URL into the
// TCP address (port 1935 by default), the app (everything up to the last
// slash of the path), the publish name (the last path element with the
// query) and the tcUrl a client sends in connect.
func ParseURL(rawURL string) (addr, app, name, tcURL string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", "", "", fmt.Errorf("rtmp: parse URL: %w", err)
	}
	if u.Scheme != "rtmp" {
		return "", "", "", "", fmt.Errorf("rtmp: URL %q: scheme %q is not rtmp", rawURL, u.Scheme)
	}
	if u.Host == "" {
		return "", "", "", "", fmt.Errorf("rtmp: URL %q has no host", rawURL)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "1935")
	}
	path := strings.Trim(u.Path, "/")
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || i == len(path)-1 {
		return "", "", "", "", fmt.Errorf("rtmp: URL %q: path must be /app/stream", rawURL)
	}
	app, name = path[:i], path[i+1:]
	if u.RawQuery != "" {
		name += "?" + u.RawQuery
	}
	return addr, app, name, "rtmp://" + u.Host + "/" + app, nil
}

// DialPublish connects to rawURL (rtmp://host[:port]/app/stream?query) and
// starts publishing: handshake, connect, releaseStream, FCPublish,
// createStream, publish. It returns once the server answered
// NetStream.Publish.Start, or with the server's refusal as the error. ctx
// bounds the whole setup (10s when it has no deadline).
func DialPublish(ctx context.Context, rawURL string) (*Publisher, error) {
	return DialPublishWith(ctx, rawURL, DialOptions{})
}

// DialOptions change how DialPublishWith connects.
type DialOptions struct {
	// WrapConn, when set, wraps the TCP connection before the handshake:
	// every byte of the publish then goes through it (e.g. a rate limiter
	// standing for a slow uplink).
	WrapConn func(net.Conn) net.Conn
}

// DialPublishWith is DialPublish with options.
func DialPublishWith(ctx context.Context, rawURL string, opt DialOptions) (*Publisher, error) {
	addr, app, name, tcURL, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp: dial %s: %w", addr, err)
	}
	if opt.WrapConn != nil {
		nc = opt.WrapConn(nc)
	}
	deadline, ctxDeadline := ctx.Deadline()
	if !ctxDeadline {
		deadline = time.Now().Add(setupTimeout)
	}
	nc.SetDeadline(deadline)
	// Cancelling ctx interrupts the setup's reads and writes.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		nc.SetDeadline(time.Unix(1, 0))
		close(interrupted)
	})

	p := &Publisher{c: newConn(nc, clientWriteTimeout), name: name, done: make(chan struct{})}
	err = p.setup(app, tcURL)
	if !stop() {
		<-interrupted // the deadline is in the past: the connection is unusable
		if err == nil {
			err = fmt.Errorf("rtmp: publish to %s", addr)
		}
	}
	if err != nil {
		nc.Close()
		cerr := ctx.Err()
		if cerr == nil && ctxDeadline && !time.Now().Before(deadline) {
			cerr = context.DeadlineExceeded // the socket saw the deadline before ctx's timer fired
		}
		if cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	go p.readLoop()
	return p, nil
}

func (p *Publisher) nextTx() float64 {
	p.tx++
	return p.tx
}

func (p *Publisher) setup(app, tcURL string) error {
	c := p.c
	if err := clientHandshake(c.br, c.raw, 0); err != nil {
		return err
	}
	if err := c.setChunkSize(outChunkSize); err != nil {
		return err
	}
	tx := p.nextTx()
	if err := c.writeCommand(typeCommandAMF0, csidCommand, 0, "connect", tx, amf0.Object{
		{Key: "app", Value: app},
		{Key: "type", Value: "nonprivate"},
		{Key: "flashVer", Value: "FMLE/3.0 (compatible; lastmile)"},
		{Key: "tcUrl", Value: tcURL},
	}); err != nil {
		return err
	}
	if _, err := p.waitResult("connect", tx); err != nil {
		return err
	}

	if err := c.writeCommand(typeCommandAMF0, csidCommand, 0, "releaseStream", p.nextTx(), nil, p.name); err != nil {
		return err
	}
	if err := c.writeCommand(typeCommandAMF0, csidCommand, 0, "FCPublish", p.nextTx(), nil, p.name); err != nil {
		return err
	}
	tx = p.nextTx()
	if err := c.writeCommand(typeCommandAMF0, csidCommand, 0, "createStream", tx, nil); err != nil {
		return err
	}
	res, err := p.waitResult("createStream", tx)
	if err != nil {
		return err
	}
	id, ok := firstArg(res).(float64)
	if !ok || id < 0 || id > 1<<32-1 {
		return fmt.Errorf("rtmp: createStream returned %v, not a stream id", firstArg(res))
	}
	p.streamID = uint32(id)

	tx = p.nextTx()
	if err := c.writeCommand(typeCommandAMF0, csidStream, p.streamID, "publish", tx, nil, p.name, "live"); err != nil {
		return err
	}
	for {
		cmd, err := p.readCommand()
		if err != nil {
			return fmt.Errorf("rtmp: waiting for NetStream.Publish.Start: %w", err)
		}
		if cmd.Name == "_error" && cmd.TxID == tx {
			return statusError("publish", cmd)
		}
		if cmd.Name != "onStatus" {
			continue
		}
		info, _ := firstArg(cmd).(amf0.Object)
		switch {
		case info.String("code") == "NetStream.Publish.Start":
			return nil
		case info.String("level") == "error":
			return statusError("publish", cmd)
		}
	}
}

// firstArg is the first value after the command object: the stream id of a
// createStream result, the info object of onStatus and _error.
func firstArg(cmd command) any {
	if len(cmd.Args) == 0 {
		return nil
	}
	return cmd.Args[0]
}

// statusError turns an _error or error onStatus into an error that says
// what the server said.
func statusError(what string, cmd command) error {
	info, _ := firstArg(cmd).(amf0.Object)
	code, desc := info.String("code"), info.String("description")
	if code == "" && desc == "" {
		return fmt.Errorf("rtmp: %s refused by the server (%s)", what, cmd.Name)
	}
	return fmt.Errorf("rtmp: %s refused by the server: %s: %s", what, code, desc)
}

// readCommand returns the next command message, skipping media and data.
func (p *Publisher) readCommand() (command, error) {
	for {
		m, err := p.c.readMessage()
		if err != nil {
			return command{}, err
		}
		if m.Type != typeCommandAMF0 && m.Type != typeCommandAMF3 {
			continue
		}
		cmd, err := parseCommand(m)
		if err != nil {
			continue // a command we cannot read is not the one we wait for
		}
		return cmd, nil
	}
}

// waitResult waits for the _result or _error of transaction tx.
func (p *Publisher) waitResult(what string, tx float64) (command, error) {
	for {
		cmd, err := p.readCommand()
		if err != nil {
			return cmd, fmt.Errorf("rtmp: waiting for the %s result: %w", what, err)
		}
		if cmd.TxID != tx {
			continue
		}
		switch cmd.Name {
		case "_result":
			return cmd, nil
		case "_error":
			return cmd, statusError(what, cmd)
		}
	}
}

// readLoop keeps reading after setup: acknowledgements, pings and chunk
// size changes are handled by the conn, and an error onStatus (the server
// ending the publish) or a read error makes the next WriteTag fail.
func (p *Publisher) readLoop() {
	defer close(p.done)
	for {
		cmd, err := p.readCommand()
		if err != nil {
			p.fail(fmt.Errorf("rtmp: connection to server: %w", err))
			return
		}
		if cmd.Name == "onStatus" {
			if info, _ := firstArg(cmd).(amf0.Object); info.String("level") == "error" {
				p.fail(fmt.Errorf("rtmp: server ended the publish: %s: %s", info.String("code"), info.String("description")))
			}
		}
	}
}

func (p *Publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil && !p.closed {
		p.err = err
	}
}

func (p *Publisher) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPublisherClosed
	}
	return p.err
}

// WriteTag sends an audio, video or script tag with its absolute timestamp
// in milliseconds. A script tag "onMetaData" + object is sent as
// "@setDataFrame" + "onMetaData" + object, so servers keep it. t.Data is
// not retained. Safe for use by one goroutine at a time.
func (p *Publisher) WriteTag(t *flv.Tag) error {
	if err := p.failure(); err != nil {
		return err
	}
	var csid uint32
	switch t.Type {
	case flv.TagAudio:
		csid = csidAudio
	case flv.TagVideo:
		csid = csidVideo
	case flv.TagScript:
		csid = csidStream
	default:
		return fmt.Errorf("rtmp: write tag: type %d is not audio, video or script", t.Type)
	}
	c := p.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	data := t.Data
	if t.Type == flv.TagScript {
		p.scratch = amf0.AddSetDataFrame(p.scratch[:0], t.Data)
		data = p.scratch
	}
	if err := c.writeLocked(message{Type: t.Type, CSID: csid, StreamID: p.streamID, Time: t.Time, Payload: data}); err != nil {
		p.fail(err)
		return err
	}
	return nil
}

// BytesWritten is the number of bytes sent to the server so far, handshake
// and headers included.
func (p *Publisher) BytesWritten() int64 { return p.c.stats.bytesOut.Load() }

// Stats returns the connection's counters.
func (p *Publisher) Stats() Stats { return p.c.stats.snapshot() }

// Close ends the publish (FCUnpublish, deleteStream), waits briefly for the
// server to hang up so it has read everything, and closes the connection.
func (p *Publisher) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	c := p.c
	err := c.writeCommand(typeCommandAMF0, csidCommand, 0, "FCUnpublish", p.nextTx(), nil, p.name)
	if err == nil {
		err = c.writeCommand(typeCommandAMF0, csidCommand, 0, "deleteStream", p.nextTx(), nil, float64(p.streamID))
	}
	if err == nil {
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		select {
		case <-p.done:
		case <-time.After(closeWait):
		}
	}
	if cerr := c.nc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("rtmp: close: %w", cerr)
	}
	<-p.done
	return err
}
