package dns

import (
	"encoding/binary"
	"errors"
	"net"
)

// The DNS wire format (RFC 1035 §4), only as much as an authoritative A/AAAA
// server needs: parse a query's header and single question, build an answer.

// Record types and classes we know.
const (
	typeA    uint16 = 1
	typeAAAA uint16 = 28
	typeANY  uint16 = 255
	classIN  uint16 = 1
	classANY uint16 = 255
)

// Response codes.
const (
	rcodeSuccess  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
)

// Header flag bits.
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagRD = 1 << 8
)

const (
	headerLen = 12
	// maxUDP is the classic UDP message limit; answers are cut to fit rather
	// than truncated with TC, because clients then retry over TCP, which this
	// server does not speak.
	maxUDP     = 512
	maxNameLen = 255
	ttl        = 30 // seconds; clients of the stack resolve per play anyway
)

// header is the fixed 12-byte message header.
type header struct {
	id, flags              uint16
	qdcount, ancount       uint16
	nscount, arcount       uint16
	opcode                 uint8
	recursionDesired, resp bool
}

// question is the one question of a query.
type question struct {
	name  string // lower case, no trailing dot; "" for the root
	raw   []byte // the question exactly as sent (name, type, class), echoed back
	qtype uint16
	class uint16
}

var (
	errShort      = errors.New("message shorter than a DNS header")
	errResponse   = errors.New("message is a response, not a query")
	errQDCount    = errors.New("query must have exactly one question")
	errOpcode     = errors.New("only standard queries (opcode 0) are supported")
	errTruncName  = errors.New("question name runs past the end of the message")
	errLabel      = errors.New("compression pointers and extended labels are not allowed in a question")
	errNameLen    = errors.New("question name longer than 255 bytes")
	errTruncQuest = errors.New("question type and class run past the end of the message")
)

func parseHeader(b []byte) (header, error) {
	if len(b) < headerLen {
		return header{}, errShort
	}
	h := header{
		id:      binary.BigEndian.Uint16(b[0:]),
		flags:   binary.BigEndian.Uint16(b[2:]),
		qdcount: binary.BigEndian.Uint16(b[4:]),
		ancount: binary.BigEndian.Uint16(b[6:]),
		nscount: binary.BigEndian.Uint16(b[8:]),
		arcount: binary.BigEndian.Uint16(b[10:]),
	}
	h.resp = h.flags&flagQR != 0
	h.opcode = uint8(h.flags>>11) & 0xF
	h.recursionDesired = h.flags&flagRD != 0
	return h, nil
}

// parseQuery reads a query's header and question. Records after the
// question (an EDNS0 OPT record, typically) are ignored. When the header was
// readable, h is valid even if err is not, so the caller can answer FORMERR.
func parseQuery(b []byte) (h header, q question, err error) {
	if h, err = parseHeader(b); err != nil {
		return h, q, err
	}
	if h.resp {
		return h, q, errResponse
	}
	if h.opcode != 0 {
		return h, q, errOpcode
	}
	if h.qdcount != 1 {
		return h, q, errQDCount
	}
	off := headerLen
	name := make([]byte, 0, 64)
	wire := 0
	for {
		if off >= len(b) {
			return h, q, errTruncName
		}
		l := int(b[off])
		off++
		wire += l + 1
		if wire > maxNameLen {
			return h, q, errNameLen
		}
		if l == 0 {
			break
		}
		if l&0xC0 != 0 {
			return h, q, errLabel
		}
		if off+l > len(b) {
			return h, q, errTruncName
		}
		if len(name) > 0 {
			name = append(name, '.')
		}
		for _, c := range b[off : off+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name = append(name, c)
		}
		off += l
	}
	if off+4 > len(b) {
		return h, q, errTruncQuest
	}
	q.qtype = binary.BigEndian.Uint16(b[off:])
	q.class = binary.BigEndian.Uint16(b[off+2:])
	off += 4
	q.name = string(name)
	q.raw = b[headerLen:off]
	return h, q, nil
}

// buildResponse answers h/q with rcode and, for a success, the addresses of
// ips that match the question type, as many as fit in maxUDP. A nil q.raw
// (unreadable question) gives a header-only answer.
func buildResponse(h header, q question, rcode int, ips []net.IP) []byte {
	out := make([]byte, headerLen, maxUDP)
	flags := uint16(flagQR|flagAA) | uint16(h.opcode&0xF)<<11 | uint16(rcode&0xF)
	if h.recursionDesired {
		flags |= flagRD
	}
	binary.BigEndian.PutUint16(out[0:], h.id)
	binary.BigEndian.PutUint16(out[2:], flags)
	if q.raw == nil {
		return out
	}
	binary.BigEndian.PutUint16(out[4:], 1)
	out = append(out, q.raw...)
	var an uint16
	for _, ip := range ips {
		var rtype uint16
		var data []byte
		if v4 := ip.To4(); v4 != nil {
			rtype, data = typeA, v4
		} else if v6 := ip.To16(); v6 != nil {
			rtype, data = typeAAAA, v6
		} else {
			continue
		}
		if q.qtype != rtype && q.qtype != typeANY {
			continue
		}
		if len(out)+12+len(data) > maxUDP {
			break
		}
		// Name: a pointer to the question's name at offset 12.
		out = append(out, 0xC0, headerLen)
		out = binary.BigEndian.AppendUint16(out, rtype)
		out = binary.BigEndian.AppendUint16(out, classIN)
		out = binary.BigEndian.AppendUint32(out, ttl)
		out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
		out = append(out, data...)
		an++
	}
	binary.BigEndian.PutUint16(out[6:], an)
	return out
}
