package flv

import (
	"fmt"
	"io"
)

// Sizes of the fixed parts of an FLV file.
const (
	// HeaderSize is the FLV file header without PreviousTagSize0.
	HeaderSize = 9
	// TagHeaderSize is the header in front of every tag body.
	TagHeaderSize = 11
	// MaxDataSize is the largest tag body the 24-bit DataSize field holds.
	MaxDataSize = 1<<24 - 1
)

// Header is the FLV file header: which kinds of tags follow. Players use the
// flags only as a hint; the tags themselves decide.
type Header struct {
	Audio bool
	Video bool
}

// Flag bits in the header's TypeFlags byte.
const (
	flagVideo = 0x01
	flagAudio = 0x04
)

// AppendHeader appends the 9-byte FLV header and the 4-byte PreviousTagSize0
// that every file and HTTP-FLV response begins with.
func AppendHeader(dst []byte, h Header) []byte {
	var flags byte
	if h.Audio {
		flags |= flagAudio
	}
	if h.Video {
		flags |= flagVideo
	}
	return append(dst,
		'F', 'L', 'V', 1, flags,
		0, 0, 0, HeaderSize, // DataOffset
		0, 0, 0, 0, // PreviousTagSize0
	)
}

// TagSize is the number of bytes AppendTag writes for t: tag header, body and
// PreviousTagSize. Callers size a buffer with it to append without growing.
func TagSize(t *Tag) int { return TagHeaderSize + len(t.Data) + 4 }

// AppendTag appends t as an FLV tag: the 11-byte tag header (the timestamp's
// upper 8 bits go in TimestampExtended, StreamID is 0), the body, then the
// 4-byte PreviousTagSize. It does not allocate when dst has room (see
// TagSize); it is the per-tag cost of every edge.
//
// A body longer than MaxDataSize cannot be framed: AppendTag then returns dst
// unchanged. Tags that arrive over RTMP or FLV can never be that large, so
// only callers that build tags themselves need to check.
func AppendTag(dst []byte, t *Tag) []byte {
	n := len(t.Data)
	if n > MaxDataSize {
		return dst
	}
	ts := t.Time
	dst = append(dst,
		t.Type&0x1f,
		byte(n>>16), byte(n>>8), byte(n),
		byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24),
		0, 0, 0,
	)
	dst = append(dst, t.Data...)
	size := uint32(TagHeaderSize + n)
	return append(dst, byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
}

// Writer writes an FLV stream to an io.Writer: the header before the first
// tag, then one Write per tag. For the hot path, AppendTag into a buffer of
// your own.
type Writer struct {
	w       io.Writer
	h       Header
	started bool
	buf     []byte
}

// NewWriter returns a Writer that starts the stream with header h.
func NewWriter(w io.Writer, h Header) *Writer { return &Writer{w: w, h: h} }

// WriteTag writes t (after the file header, the first time). A body over
// MaxDataSize fails with ErrTagTooLarge and writes nothing.
func (w *Writer) WriteTag(t *Tag) error {
	if len(t.Data) > MaxDataSize {
		return fmt.Errorf("%w: %d bytes, the format's limit is %d", ErrTagTooLarge, len(t.Data), MaxDataSize)
	}
	w.buf = w.buf[:0]
	if !w.started {
		w.buf = AppendHeader(w.buf, w.h)
		w.started = true
	}
	w.buf = AppendTag(w.buf, t)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("flv: writing tag: %w", err)
	}
	return nil
}
