package amf0

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Decode decodes every value in b.
func Decode(b []byte) ([]any, error) {
	d := decoder{b: b}
	var vals []any
	for d.off < len(b) {
		v, err := d.value(0)
		if err != nil {
			return vals, err
		}
		vals = append(vals, v)
	}
	return vals, nil
}

// DecodeOne decodes the first value in b and returns it with the number of
// bytes it used. References (marker 0x07) cannot be resolved here and are
// an error.
func DecodeOne(b []byte) (v any, n int, err error) {
	d := decoder{b: b}
	v, err = d.value(0)
	return v, d.off, err
}

// decoder walks a buffer; refs holds complex values in decode order, for the
// Reference marker, with the number of values each one expands to.
type decoder struct {
	b     []byte
	off   int
	refs  []ref
	nodes int // values decoded so far, references counted as expanded
}

type ref struct {
	v     any
	nodes int
}

// maxNodes bounds what references can expand to: a chain of references
// doubling at each level would otherwise turn a few bytes into an
// exponentially large value tree.
const maxNodes = 1 << 16

func (d *decoder) need(n int, what string) error {
	if n < 0 || len(d.b)-d.off < n {
		return truncated(d.off, what)
	}
	return nil
}

func (d *decoder) u16(what string) (uint16, error) {
	if err := d.need(2, what); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.need(4, what); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) f64(what string) (float64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(d.b[d.off:]))
	d.off += 8
	return v, nil
}

// str reads a UTF-8 string with a 16-bit length (long=false) or a 32-bit one.
func (d *decoder) str(long bool) (string, error) {
	var n int
	if long {
		v, err := d.u32("long string length")
		if err != nil {
			return "", err
		}
		if uint64(v) > uint64(len(d.b)-d.off) {
			return "", truncated(d.off, fmt.Sprintf("long string of %d bytes", v))
		}
		n = int(v)
	} else {
		v, err := d.u16("string length")
		if err != nil {
			return "", err
		}
		n = int(v)
	}
	if err := d.need(n, "string bytes"); err != nil {
		return "", err
	}
	s := string(d.b[d.off : d.off+n])
	d.off += n
	return s, nil
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("amf0: values nested deeper than %d at offset %d", maxDepth, d.off)
	}
	if err := d.need(1, "type marker"); err != nil {
		return nil, err
	}
	start := d.off
	m := d.b[d.off]
	d.off++
	d.nodes++
	switch m {
	case markerNumber:
		return d.f64("number")
	case markerBoolean:
		if err := d.need(1, "boolean"); err != nil {
			return nil, err
		}
		v := d.b[d.off] != 0
		d.off++
		return v, nil
	case markerString:
		return d.str(false)
	case markerLongString, markerXMLDocument:
		return d.str(true)
	case markerNull:
		return nil, nil
	case markerUndefined, markerUnsupported:
		return Undefined{}, nil
	case markerObject:
		return d.properties(depth)
	case markerTypedObject:
		if _, err := d.str(false); err != nil { // class name
			return nil, err
		}
		return d.properties(depth)
	case markerECMAArray:
		// The count is only a hint: the end marker ends the array.
		if _, err := d.u32("ECMA array count"); err != nil {
			return nil, err
		}
		return d.properties(depth)
	case markerStrictArray:
		n, err := d.u32("strict array count")
		if err != nil {
			return nil, err
		}
		// Every value takes at least one byte: a count beyond what is left
		// is a lie, and must not size an allocation.
		if uint64(n) > uint64(len(d.b)-d.off) {
			return nil, truncated(d.off, fmt.Sprintf("strict array of %d values", n))
		}
		idx, before := len(d.refs), d.nodes
		d.refs = append(d.refs, ref{})
		arr := make([]any, 0, n)
		for i := uint32(0); i < n; i++ {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		d.refs[idx] = ref{arr, d.nodes - before}
		return arr, nil
	case markerDate:
		ms, err := d.f64("date")
		if err != nil {
			return nil, err
		}
		if _, err := d.u16("date time zone"); err != nil {
			return nil, err
		}
		return dateToValue(ms), nil
	case markerReference:
		i, err := d.u16("reference index")
		if err != nil {
			return nil, err
		}
		if int(i) >= len(d.refs) || d.refs[i].v == nil {
			return nil, fmt.Errorf("amf0: reference %d at offset %d points to no complete value", i, start)
		}
		d.nodes += d.refs[i].nodes
		if d.nodes > maxNodes {
			return nil, fmt.Errorf("amf0: references at offset %d expand beyond %d values", start, maxNodes)
		}
		return d.refs[i].v, nil
	case markerObjectEnd:
		return nil, fmt.Errorf("amf0: object end marker outside an object at offset %d", start)
	case markerAVMPlus:
		return nil, fmt.Errorf("amf0: AMF3 value (marker 0x11) at offset %d is not supported", start)
	default: // movie clip, record set and unknown markers
		return nil, fmt.Errorf("amf0: unsupported type marker 0x%02x at offset %d", m, start)
	}
}

// properties reads key/value pairs up to the object end marker (an empty
// key followed by 0x09).
func (d *decoder) properties(depth int) (Object, error) {
	idx, before := len(d.refs), d.nodes
	d.refs = append(d.refs, ref{})
	obj := Object{}
	for {
		key, err := d.str(false)
		if err != nil {
			return nil, err
		}
		if key == "" {
			if err := d.need(1, "object end marker"); err != nil {
				return nil, err
			}
			if d.b[d.off] == markerObjectEnd {
				d.off++
				d.refs[idx] = ref{obj, d.nodes - before}
				return obj, nil
			}
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		obj = append(obj, Property{Key: key, Value: v})
	}
}
