package rtmp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Message type ids (RTMP spec 5.4, 7.1).
const (
	typeSetChunkSize     uint8 = 1
	typeAbort            uint8 = 2
	typeAck              uint8 = 3
	typeUserControl      uint8 = 4
	typeWindowAckSize    uint8 = 5
	typeSetPeerBandwidth uint8 = 6
	typeAudio            uint8 = 8
	typeVideo            uint8 = 9
	typeDataAMF3         uint8 = 15
	typeSharedObjectAMF3 uint8 = 16
	typeCommandAMF3      uint8 = 17
	typeDataAMF0         uint8 = 18
	typeSharedObjectAMF0 uint8 = 19
	typeCommandAMF0      uint8 = 20
	typeAggregate        uint8 = 22
)

const (
	defaultChunkSize = 128
	maxChunkSize     = 0x7fffffff // the top bit of Set Chunk Size must be 0

	// maxMessageSize caps one message. The 24-bit length field
	// cannot say more anyway; the cap is explicit so memory stays bounded.
	maxMessageSize = 16 << 20

	// maxChunkStreams bounds the per-chunk-stream state a peer can make us
	// keep. ffmpeg and OBS use fewer than ten.
	maxChunkStreams = 64

	// maxBuffered bounds the bytes of all partly received messages.
	maxBuffered = 32 << 20

	// keepBuffer is the largest payload buffer kept for reuse once its
	// message has been handed out: larger ones (a rare huge keyframe) are
	// dropped so a connection does not pin them.
	keepBuffer = 4 << 20

	extendedTimestamp = 0xffffff

	// readPiece is the most chunk data read into a buffer at a time.
	readPiece = 64 << 10
)

var errChunkStreams = errors.New("rtmp: too many chunk streams")

// message is one RTMP message. Its Payload, when it comes from a
// chunkReader, is valid until the next ReadMessage call.
type message struct {
	Type     uint8
	CSID     uint32
	StreamID uint32
	Time     uint32
	Payload  []byte
}

// inStream is the receive state of one chunk stream: the header fields that
// later chunks inherit, and the message being assembled.
type inStream struct {
	started  bool // a header has been seen, later chunks may inherit it
	time     uint32
	delta    uint32 // what a fmt 3 chunk starting a message adds to time
	length   uint32
	typ      uint8
	streamID uint32
	extended bool   // the last header carried an extended timestamp
	extValue uint32 // and this was its value
	partial  bool   // buf holds the start of a message of length bytes
	buf      []byte
}

// chunkReader turns chunks into messages.
type chunkReader struct {
	r          *bufio.Reader
	chunkSize  uint32
	maxMessage uint32
	low        [64]*inStream // chunk stream ids 2..63, the common case
	high       map[uint32]*inStream
	nstreams   int
	buffered   int
	hdr        [11]byte  // scratch; a local would escape through io.ReadFull
	last       *inStream // holds the payload ReadMessage returned last
}

func newChunkReader(r *bufio.Reader) *chunkReader {
	return &chunkReader{r: r, chunkSize: defaultChunkSize, maxMessage: maxMessageSize}
}

// setChunkSize applies the peer's Set Chunk Size.
func (cr *chunkReader) setChunkSize(n uint32) error {
	if n == 0 || n > maxChunkSize {
		return fmt.Errorf("rtmp: invalid chunk size %d", n)
	}
	cr.chunkSize = n
	return nil
}

// abort drops the partly received message of chunk stream csid (an Abort
// message from the peer).
func (cr *chunkReader) abort(csid uint32) {
	var s *inStream
	if csid < 64 {
		s = cr.low[csid]
	} else {
		s = cr.high[csid]
	}
	if s != nil && s.partial {
		cr.buffered -= len(s.buf)
		s.buf = s.buf[:0]
		s.partial = false
	}
}

func (cr *chunkReader) stream(csid uint32) (*inStream, error) {
	if csid < 64 {
		if s := cr.low[csid]; s != nil {
			return s, nil
		}
	} else if s := cr.high[csid]; s != nil {
		return s, nil
	}
	if cr.nstreams >= maxChunkStreams {
		return nil, fmt.Errorf("%w: more than %d in use", errChunkStreams, maxChunkStreams)
	}
	cr.nstreams++
	s := &inStream{}
	if csid < 64 {
		cr.low[csid] = s
	} else {
		if cr.high == nil {
			cr.high = make(map[uint32]*inStream)
		}
		cr.high[csid] = s
	}
	return s, nil
}

// ReadMessage reads chunks until a message is complete.
func (cr *chunkReader) ReadMessage() (message, error) {
	// The previous payload is no longer in use: drop it if it is big.
	if cr.last != nil && cap(cr.last.buf) > keepBuffer {
		cr.last.buf = nil
	}
	cr.last = nil
	for {
		m, done, err := cr.readChunk()
		if err != nil || done {
			return m, err
		}
	}
}

func (cr *chunkReader) readChunk() (m message, done bool, err error) {
	b0, err := cr.r.ReadByte()
	if err != nil {
		return m, false, fmt.Errorf("rtmp: read chunk header: %w", err)
	}
	format := b0 >> 6
	csid := uint32(b0 & 0x3f)
	hdr := cr.hdr[:]
	switch csid {
	case 0:
		if _, err := io.ReadFull(cr.r, hdr[:1]); err != nil {
			return m, false, fmt.Errorf("rtmp: read chunk header: %w", err)
		}
		csid = 64 + uint32(hdr[0])
	case 1:
		if _, err := io.ReadFull(cr.r, hdr[:2]); err != nil {
			return m, false, fmt.Errorf("rtmp: read chunk header: %w", err)
		}
		csid = 64 + uint32(hdr[0]) + uint32(hdr[1])<<8
	}
	s, err := cr.stream(csid)
	if err != nil {
		return m, false, err
	}

	starts := format < 3 || !s.partial
	if format < 3 {
		n := [3]int{11, 7, 3}[format]
		if _, err := io.ReadFull(cr.r, hdr[:n]); err != nil {
			return m, false, fmt.Errorf("rtmp: read chunk header (csid %d fmt %d): %w", csid, format, err)
		}
		if !s.started && format == 2 {
			// fmt 1 on a fresh stream is tolerated (librtmp pings that
			// way); fmt 2 has no length to go on.
			return m, false, fmt.Errorf("rtmp: chunk stream %d starts with fmt %d, not 0", csid, format)
		}
		if s.partial { // a new header mid-message: the rest was lost
			cr.buffered -= len(s.buf)
			s.buf, s.partial = s.buf[:0], false
		}
		ts := be24(hdr[0:])
		if format <= 1 {
			s.length = be24(hdr[3:])
			s.typ = hdr[6]
		}
		if format == 0 {
			s.streamID = binary.LittleEndian.Uint32(hdr[7:])
		}
		s.extended = ts == extendedTimestamp
		if s.extended {
			if _, err := io.ReadFull(cr.r, hdr[:4]); err != nil {
				return m, false, fmt.Errorf("rtmp: read extended timestamp: %w", err)
			}
			ts = binary.BigEndian.Uint32(hdr[:4])
			s.extValue = ts
		}
		if format == 0 {
			s.time = ts
		} else {
			s.time += ts
		}
		// After fmt 0 the field is absolute, and a following fmt 3 adds it
		// as the delta: the spec's rule, and what ffmpeg and FMLE send.
		s.delta = ts
		s.started = true
	} else {
		if !s.started {
			return m, false, fmt.Errorf("rtmp: chunk stream %d starts with fmt 3, no header to inherit", csid)
		}
		if s.extended {
			if starts {
				// A new message repeats the extended field, which holds
				// its delta.
				if _, err := io.ReadFull(cr.r, hdr[:4]); err != nil {
					return m, false, fmt.Errorf("rtmp: read extended timestamp: %w", err)
				}
				s.delta = binary.BigEndian.Uint32(hdr[:4])
				s.extValue = s.delta
			} else if p, err := cr.r.Peek(4); err == nil && binary.BigEndian.Uint32(p) == s.extValue {
				// Continuation chunks repeat the extended timestamp per
				// the spec (ffmpeg, FMS); some old peers do not, so take
				// the four bytes only when they hold the expected value.
				cr.r.Discard(4)
			}
		}
		if starts {
			s.time += s.delta
		}
	}

	if starts {
		if s.length > cr.maxMessage {
			return m, false, fmt.Errorf("rtmp: message of %d bytes on chunk stream %d exceeds the %d byte limit", s.length, csid, cr.maxMessage)
		}
		s.buf = s.buf[:0]
		s.partial = true
	}
	n := int(min(s.length-uint32(len(s.buf)), cr.chunkSize))
	if cr.buffered+n > maxBuffered {
		return m, false, fmt.Errorf("rtmp: more than %d bytes of unfinished messages", maxBuffered)
	}
	// Read in pieces so memory follows the bytes that arrive, not the
	// length a peer announces.
	for n > 0 {
		k := min(n, readPiece)
		off := len(s.buf)
		s.buf = slices.Grow(s.buf, k)[:off+k]
		if _, err := io.ReadFull(cr.r, s.buf[off:]); err != nil {
			s.buf = s.buf[:off]
			return m, false, fmt.Errorf("rtmp: read chunk data (csid %d): %w", csid, err)
		}
		cr.buffered += k
		n -= k
	}
	if uint32(len(s.buf)) < s.length {
		return m, false, nil
	}
	cr.buffered -= len(s.buf)
	s.partial = false
	cr.last = s
	return message{Type: s.typ, CSID: csid, StreamID: s.streamID, Time: s.time, Payload: s.buf}, true, nil
}

// outStream is what the peer remembers of our last header on a chunk
// stream, so the next header can be shorter.
type outStream struct {
	started    bool
	time       uint32
	delta      uint32
	deltaValid bool // the last header was fmt 1, 2 or 3: a fmt 3 repeats delta
	length     uint32
	typ        uint8
	streamID   uint32
}

// chunkWriter splits messages into chunks. Not safe for concurrent use.
type chunkWriter struct {
	w         *bufio.Writer
	chunkSize uint32
	low       [64]outStream
	high      map[uint32]*outStream
	hdr       [18]byte // scratch headers; locals would escape through Write
	cont      [8]byte
}

func newChunkWriter(w *bufio.Writer) *chunkWriter {
	return &chunkWriter{w: w, chunkSize: defaultChunkSize}
}

func (cw *chunkWriter) state(csid uint32) *outStream {
	if csid < 64 {
		return &cw.low[csid]
	}
	if cw.high == nil {
		cw.high = make(map[uint32]*outStream)
	}
	s := cw.high[csid]
	if s == nil {
		s = &outStream{}
		cw.high[csid] = s
	}
	return s
}

// basicHeader appends the chunk basic header for csid (2..65599).
func basicHeader(b []byte, format uint8, csid uint32) []byte {
	switch {
	case csid < 64:
		return append(b, format<<6|uint8(csid))
	case csid < 64+256:
		return append(b, format<<6, uint8(csid-64))
	default:
		return append(b, format<<6|1, uint8(csid-64), uint8((csid-64)>>8))
	}
}

// WriteMessage writes m as chunks, choosing the shortest header the peer
// can decode from what it saw last on m.CSID. It does not flush.
func (cw *chunkWriter) WriteMessage(m message) error {
	if m.CSID < 2 || m.CSID > 65599 {
		return fmt.Errorf("rtmp: invalid chunk stream id %d", m.CSID)
	}
	if len(m.Payload) > 0xffffff {
		return fmt.Errorf("rtmp: message of %d bytes does not fit a 24-bit length", len(m.Payload))
	}
	s := cw.state(m.CSID)
	length := uint32(len(m.Payload))
	var format uint8
	field := m.Time
	if s.started && s.streamID == m.StreamID && m.Time >= s.time {
		field = m.Time - s.time
		switch {
		case length != s.length || m.Type != s.typ:
			format = 1
		case s.deltaValid && field == s.delta:
			format = 3
		default:
			format = 2
		}
	}
	ext := field >= extendedTimestamp
	ts24 := field
	if ext {
		ts24 = extendedTimestamp
	}

	h := basicHeader(cw.hdr[:0], format, m.CSID)
	if format < 3 {
		h = append(h, byte(ts24>>16), byte(ts24>>8), byte(ts24))
	}
	if format < 2 {
		h = append(h, byte(length>>16), byte(length>>8), byte(length), m.Type)
	}
	if format == 0 {
		h = binary.LittleEndian.AppendUint32(h, m.StreamID)
	}
	if ext {
		h = binary.BigEndian.AppendUint32(h, field)
	}
	if _, err := cw.w.Write(h); err != nil {
		return fmt.Errorf("rtmp: write chunk header: %w", err)
	}

	*s = outStream{started: true, time: m.Time, delta: field, deltaValid: format != 0,
		length: length, typ: m.Type, streamID: m.StreamID}

	// Continuation chunks: fmt 3, and the extended timestamp again when the
	// first chunk had one (spec 5.3.1.3; ffmpeg expects it).
	c := basicHeader(cw.cont[:0], 3, m.CSID)
	if ext {
		c = binary.BigEndian.AppendUint32(c, field)
	}
	p := m.Payload
	for {
		n := min(uint32(len(p)), cw.chunkSize)
		if _, err := cw.w.Write(p[:n]); err != nil {
			return fmt.Errorf("rtmp: write chunk data: %w", err)
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
		if _, err := cw.w.Write(c); err != nil {
			return fmt.Errorf("rtmp: write chunk header: %w", err)
		}
	}
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
