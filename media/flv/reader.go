package flv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Errors a Reader returns, wrapped with the byte offset and the detail; test
// them with errors.Is. A truncated stream wraps io.ErrUnexpectedEOF.
var (
	ErrSignature   = errors.New("flv: not an FLV stream (bad signature)")
	ErrHeader      = errors.New("flv: bad file header")
	ErrTagType     = errors.New("flv: bad tag type")
	ErrTagTooLarge = errors.New("flv: tag too large")
	ErrPrevTagSize = errors.New("flv: PreviousTagSize does not match the tag")
)

// maxHeaderSkip bounds the DataOffset we honour: a header claiming gigabytes
// of extension is garbage, not a future FLV version.
const maxHeaderSkip = 4096

// Reader reads an FLV stream: the header, then tags one at a time. It reads
// through its own buffer, so it may consume bytes past the last tag it
// returned from the underlying reader.
type Reader struct {
	// MaxDataSize bounds the body of one tag; a larger tag fails with
	// ErrTagTooLarge before its body is read. 0 means MaxDataSize (16 MiB),
	// which is all the format can express. Set it before the first read.
	MaxDataSize int

	r          *bufio.Reader
	off        int64 // bytes consumed so far
	headerRead bool
	header     Header
	buf        []byte
	scratch    [TagHeaderSize]byte
	err        error // sticky: a broken stream stays broken
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 16<<10 {
		br = bufio.NewReaderSize(r, 32<<10)
	}
	return &Reader{r: br}
}

// Offset is the number of bytes of the stream consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// ReadHeader reads the FLV header and PreviousTagSize0. ReadTag calls it
// itself when it was not called.
func (r *Reader) ReadHeader() (Header, error) {
	if r.headerRead {
		return r.header, nil
	}
	if r.err != nil {
		return Header{}, r.err
	}
	h, err := r.readHeader()
	if err != nil {
		r.err = err
		return Header{}, err
	}
	r.header, r.headerRead = h, true
	return h, nil
}

func (r *Reader) readHeader() (Header, error) {
	b := r.scratch[:HeaderSize]
	if n, err := io.ReadFull(r.r, b); err != nil {
		r.off += int64(n)
		if n >= 3 && string(b[:3]) != "FLV" {
			return Header{}, fmt.Errorf("%w: % x", ErrSignature, b[:3])
		}
		if err == io.EOF {
			return Header{}, fmt.Errorf("flv: empty stream, no header: %w", io.ErrUnexpectedEOF)
		}
		return Header{}, fmt.Errorf("flv: reading header: %w", err)
	}
	r.off += HeaderSize
	if b[0] != 'F' || b[1] != 'L' || b[2] != 'V' {
		return Header{}, fmt.Errorf("%w: % x", ErrSignature, b[:3])
	}
	if b[3] != 1 {
		return Header{}, fmt.Errorf("%w: version %d, want 1", ErrHeader, b[3])
	}
	h := Header{Audio: b[4]&flagAudio != 0, Video: b[4]&flagVideo != 0}
	offset := be32(b[5:9])
	if offset < HeaderSize || offset > HeaderSize+maxHeaderSkip {
		return Header{}, fmt.Errorf("%w: DataOffset %d", ErrHeader, offset)
	}
	if skip := int64(offset) - HeaderSize; skip > 0 {
		n, err := io.CopyN(io.Discard, r.r, skip)
		r.off += n
		if err != nil {
			return Header{}, fmt.Errorf("flv: header extension truncated at offset %d: %w", r.off, unexpected(err))
		}
	}
	p := r.scratch[:4]
	if n, err := io.ReadFull(r.r, p); err != nil {
		r.off += int64(n)
		return Header{}, fmt.Errorf("flv: PreviousTagSize0 truncated at offset %d: %w", r.off, unexpected(err))
	}
	r.off += 4
	if v := be32(p); v != 0 {
		return Header{}, fmt.Errorf("%w: PreviousTagSize0 is %d, want 0", ErrPrevTagSize, v)
	}
	return h, nil
}

// ReadTag reads the next tag. Its Data points into the Reader's buffer and is
// valid only until the next ReadTag: use ReadTagCopy or Tag.Clone to keep it.
// At a clean end of stream (between tags) it returns io.EOF; a stream that
// ends inside a tag is an error wrapping io.ErrUnexpectedEOF. After any error
// every later call returns the same error.
func (r *Reader) ReadTag() (Tag, error) {
	if !r.headerRead {
		if _, err := r.ReadHeader(); err != nil {
			return Tag{}, err
		}
	}
	if r.err != nil {
		return Tag{}, r.err
	}
	t, err := r.readTag()
	if err != nil {
		r.err = err
		return Tag{}, err
	}
	return t, nil
}

// ReadTagCopy is ReadTag with a Data of its own, for callers that keep tags.
func (r *Reader) ReadTagCopy() (Tag, error) {
	t, err := r.ReadTag()
	if err != nil {
		return t, err
	}
	return t.Clone(), nil
}

func (r *Reader) readTag() (Tag, error) {
	start := r.off
	h := r.scratch[:TagHeaderSize]
	n, err := io.ReadFull(r.r, h)
	r.off += int64(n)
	if err != nil {
		if err == io.EOF {
			return Tag{}, io.EOF
		}
		return Tag{}, fmt.Errorf("flv: tag header at offset %d truncated (%d of %d bytes): %w", start, n, TagHeaderSize, unexpected(err))
	}
	if h[0]&0x20 != 0 {
		return Tag{}, fmt.Errorf("%w at offset %d: encrypted (Filter bit set), not supported", ErrTagType, start)
	}
	typ := h[0] & 0x1f
	if h[0]&0xc0 != 0 || (typ != TagAudio && typ != TagVideo && typ != TagScript) {
		return Tag{}, fmt.Errorf("%w at offset %d: 0x%02x", ErrTagType, start, h[0])
	}
	size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	max := r.MaxDataSize
	if max <= 0 || max > MaxDataSize {
		max = MaxDataSize
	}
	if size > max {
		return Tag{}, fmt.Errorf("%w at offset %d: %d bytes, limit %d", ErrTagTooLarge, start, size, max)
	}
	ts := uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])
	// StreamID (h[8:11]) is always 0 by the spec; nothing depends on it, so
	// a writer that fills it in is tolerated.

	data, err := r.readBody(size)
	if err != nil {
		return Tag{}, fmt.Errorf("flv: tag at offset %d: body truncated (%d of %d bytes): %w", start, len(data), size, unexpected(err))
	}
	p := r.scratch[:4]
	n, err = io.ReadFull(r.r, p)
	r.off += int64(n)
	if err != nil {
		return Tag{}, fmt.Errorf("flv: tag at offset %d: PreviousTagSize truncated: %w", start, unexpected(err))
	}
	if got, want := be32(p), uint32(TagHeaderSize+size); got != want {
		return Tag{}, fmt.Errorf("%w at offset %d: %d, want %d", ErrPrevTagSize, start, got, want)
	}
	return Tag{Type: typ, Time: ts, Data: data}, nil
}

// readBody reads n bytes into the reusable buffer. It grows the buffer as
// bytes actually arrive, so a header that lies about a 16 MiB body on a
// short stream costs no 16 MiB allocation.
func (r *Reader) readBody(n int) ([]byte, error) {
	if n <= cap(r.buf) {
		b := r.buf[:n]
		got, err := io.ReadFull(r.r, b)
		r.off += int64(got)
		return b[:got], err
	}
	b := r.buf[:0]
	for len(b) < n {
		want := min(n, max(2*cap(b), 64<<10))
		if want > cap(b) {
			nb := make([]byte, len(b), want)
			copy(nb, b)
			b = nb
		}
		got, err := io.ReadFull(r.r, b[len(b):want])
		r.off += int64(got)
		b = b[:len(b)+got]
		if err != nil {
			r.buf = b[:0]
			return b, err
		}
	}
	r.buf = b[:0]
	return b, nil
}

// unexpected turns a clean EOF inside a structure into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
