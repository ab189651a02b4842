package rtmp

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lastmile-qoe/lastmile/media/amf0"
)

// Chunk stream ids we send on. The ids are only labels for header
// compression; these are the ones nginx-rtmp and ffmpeg use.
const (
	csidControl = 2 // protocol control and user control: required by the spec
	csidCommand = 3 // NetConnection commands
	csidAudio   = 4
	csidStream  = 5 // NetStream commands and data messages
	csidVideo   = 6
)

// User control event types (spec 7.1.7).
const (
	eventStreamBegin  = 0
	eventPingRequest  = 6
	eventPingResponse = 7
)

const (
	// defaultWindow is the acknowledgement window we ask the peer to use,
	// and the peer bandwidth we announce: what nginx-rtmp and SRS send.
	defaultWindow = 2500000
	// outChunkSize is the chunk size we switch to: fewer headers per
	// video frame than 128, the size ffmpeg and OBS also use.
	outChunkSize = 4096
)

// Stats counts what crossed one connection. All fields are totals since the
// connection opened.
type Stats struct {
	BytesIn  int64 // bytes received, handshake included
	BytesOut int64 // bytes sent, handshake included

	Audio    uint64 // audio messages received
	Video    uint64 // video messages received
	Data     uint64 // data (metadata) messages received
	Commands uint64 // command messages received
	Control  uint64 // protocol and user control messages received
	Other    uint64 // aggregate, shared object and unknown messages received
}

// counters are updated by the connection's goroutines and read by anyone.
type counters struct {
	bytesIn, bytesOut                             atomic.Int64
	audio, video, data, commands, control, others atomic.Uint64
}

func (c *counters) count(typ uint8) {
	switch typ {
	case typeAudio:
		c.audio.Add(1)
	case typeVideo:
		c.video.Add(1)
	case typeDataAMF0, typeDataAMF3:
		c.data.Add(1)
	case typeCommandAMF0, typeCommandAMF3:
		c.commands.Add(1)
	case typeSetChunkSize, typeAbort, typeAck, typeUserControl, typeWindowAckSize, typeSetPeerBandwidth:
		c.control.Add(1)
	default:
		c.others.Add(1)
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		Audio: c.audio.Load(), Video: c.video.Load(), Data: c.data.Load(),
		Commands: c.commands.Load(), Control: c.control.Load(), Other: c.others.Load(),
	}
}

type countingConn struct {
	net.Conn
	c *counters
}

func (cc countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.bytesIn.Add(int64(n))
	return n, err
}

func (cc countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.bytesOut.Add(int64(n))
	return n, err
}

// conn is the RTMP plumbing both sides share: chunking, protocol control
// messages, acknowledgements and counters. One goroutine reads; writes may
// come from any goroutine.
type conn struct {
	nc    net.Conn
	stats counters
	raw   countingConn
	br    *bufio.Reader
	cr    *chunkReader

	// Read side state, owned by the reading goroutine.
	ackWindow uint32 // the peer's Window Acknowledgement Size: ack every so many bytes
	lastAck   int64  // BytesIn when we last acknowledged

	wmu          sync.Mutex
	bw           *bufio.Writer
	cw           *chunkWriter
	writeTimeout time.Duration
	scratch      []byte // command encoding buffer, under wmu
	sentWindow   uint32 // the window we last told the peer, under wmu
}

func newConn(nc net.Conn, writeTimeout time.Duration) *conn {
	c := &conn{nc: nc, writeTimeout: writeTimeout}
	c.raw = countingConn{Conn: nc, c: &c.stats}
	c.br = bufio.NewReaderSize(c.raw, 64<<10)
	c.bw = bufio.NewWriterSize(c.raw, 64<<10)
	c.cr = newChunkReader(c.br)
	c.cw = newChunkWriter(c.bw)
	return c
}

// readMessage returns the next message that is not protocol control: it
// applies Set Chunk Size, Abort, Window Acknowledgement Size and Set Peer
// Bandwidth, answers pings, and acknowledges when the peer's window is
// reached. The payload is valid until the next call.
func (c *conn) readMessage() (message, error) {
	for {
		m, err := c.cr.ReadMessage()
		if err != nil {
			return m, err
		}
		c.stats.count(m.Type)
		if err := c.maybeAck(); err != nil {
			return m, err
		}
		handled, err := c.control(m)
		if err != nil {
			return m, err
		}
		if !handled {
			return m, nil
		}
	}
}

func (c *conn) maybeAck() error {
	if c.ackWindow == 0 {
		return nil
	}
	// Count what the chunk reader consumed, not what the read-ahead buffer
	// holds, so acknowledgements follow the stream as the peer sent it.
	in := c.stats.bytesIn.Load() - int64(c.br.Buffered())
	if in-c.lastAck < int64(c.ackWindow) {
		return nil
	}
	c.lastAck = in
	// The sequence number is the byte count, wrapping at 32 bits.
	return c.writeControl(typeAck, binary.BigEndian.AppendUint32(nil, uint32(in)))
}

func (c *conn) control(m message) (handled bool, err error) {
	p := m.Payload
	switch m.Type {
	case typeSetChunkSize:
		if len(p) < 4 {
			return true, fmt.Errorf("rtmp: Set Chunk Size of %d bytes", len(p))
		}
		return true, c.cr.setChunkSize(binary.BigEndian.Uint32(p) & 0x7fffffff)
	case typeAbort:
		if len(p) >= 4 {
			c.cr.abort(binary.BigEndian.Uint32(p))
		}
		return true, nil
	case typeAck:
		return true, nil // we do not throttle on the peer's acknowledgements
	case typeWindowAckSize:
		if len(p) >= 4 {
			c.ackWindow = binary.BigEndian.Uint32(p)
		}
		return true, nil
	case typeSetPeerBandwidth:
		// Spec 5.4.5: answer with our window when it differs from the one
		// we last announced.
		if len(p) >= 4 {
			if w := binary.BigEndian.Uint32(p); w != 0 {
				c.wmu.Lock()
				differs := c.sentWindow != w
				c.wmu.Unlock()
				if differs {
					return true, c.sendWindowAckSize(w)
				}
			}
		}
		return true, nil
	case typeUserControl:
		if len(p) >= 6 && binary.BigEndian.Uint16(p) == eventPingRequest {
			resp := make([]byte, 6)
			binary.BigEndian.PutUint16(resp, eventPingResponse)
			copy(resp[2:], p[2:6])
			return true, c.writeControl(typeUserControl, resp)
		}
		return true, nil // Stream Begin, Stream EOF, buffer length...: nothing to do when publishing
	}
	return false, nil
}

// write sends one message and flushes.
func (c *conn) write(m message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(m)
}

func (c *conn) writeLocked(m message) error {
	if c.writeTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	if err := c.cw.WriteMessage(m); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("rtmp: write: %w", err)
	}
	return nil
}

func (c *conn) writeControl(typ uint8, payload []byte) error {
	return c.write(message{Type: typ, CSID: csidControl, Payload: payload})
}

func (c *conn) sendWindowAckSize(w uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sentWindow = w
	return c.writeLocked(message{Type: typeWindowAckSize, CSID: csidControl, Payload: binary.BigEndian.AppendUint32(nil, w)})
}

// setChunkSize tells the peer our new chunk size and uses it from the next
// message on.
func (c *conn) setChunkSize(n uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeLocked(message{Type: typeSetChunkSize, CSID: csidControl, Payload: binary.BigEndian.AppendUint32(nil, n)}); err != nil {
		return err
	}
	c.cw.chunkSize = n
	return nil
}

func (c *conn) setPeerBandwidth(w uint32) error {
	p := binary.BigEndian.AppendUint32(nil, w)
	return c.writeControl(typeSetPeerBandwidth, append(p, 2)) // 2: dynamic limit
}

func (c *conn) streamBegin(streamID uint32) error {
	p := binary.BigEndian.AppendUint16(nil, eventStreamBegin)
	return c.writeControl(typeUserControl, binary.BigEndian.AppendUint32(p, streamID))
}

// writeCommand sends an AMF0 command or data message.
func (c *conn) writeCommand(typ uint8, csid, streamID uint32, vals ...any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := amf0.Encode(c.scratch[:0], vals...)
	if err != nil {
		return fmt.Errorf("rtmp: encode command: %w", err)
	}
	c.scratch = b
	return c.writeLocked(message{Type: typ, CSID: csid, StreamID: streamID, Payload: b})
}

// command is a decoded AMF0 command message.
type command struct {
	Name string
	TxID float64
	Obj  amf0.Object // the command object, nil when it was null
	Args []any       // what follows the command object
}

// parseCommand decodes a command message. AMF3 commands (type 17) start
// with a format byte and carry AMF0 values when that byte is 0.
func parseCommand(m message) (command, error) {
	p := m.Payload
	if m.Type == typeCommandAMF3 && len(p) > 0 && p[0] == 0 {
		p = p[1:]
	}
	vals, err := amf0.Decode(p)
	if err != nil {
		return command{}, fmt.Errorf("rtmp: decode command: %w", err)
	}
	var cmd command
	if len(vals) == 0 {
		return cmd, fmt.Errorf("rtmp: empty command message")
	}
	name, ok := vals[0].(string)
	if !ok {
		return cmd, fmt.Errorf("rtmp: command name is %T, not a string", vals[0])
	}
	cmd.Name = name
	if len(vals) > 1 {
		cmd.TxID, _ = vals[1].(float64)
	}
	if len(vals) > 2 {
		cmd.Obj, _ = vals[2].(amf0.Object)
	}
	if len(vals) > 3 {
		cmd.Args = vals[3:]
	}
	return cmd, nil
}

// arg returns the i-th argument after the command object as a string.
func (cmd command) stringArg(i int) string {
	if i < len(cmd.Args) {
		s, _ := cmd.Args[i].(string)
		return s
	}
	return ""
}

// statusObject is the info object of onStatus and _result replies.
func statusObject(level, code, description string) amf0.Object {
	return amf0.Object{
		{Key: "level", Value: level},
		{Key: "code", Value: code},
		{Key: "description", Value: description},
	}
}
