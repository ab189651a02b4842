package amf0

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// Encode appends the AMF0 encoding of vals to dst. See the package comment
// for the Go types it takes; map[string]any is also accepted and written as
// an Object with sorted keys. An unsupported type is an error and dst is
// returned as it was.
func Encode(dst []byte, vals ...any) ([]byte, error) {
	orig := dst
	var err error
	for i, v := range vals {
		if dst, err = appendValue(dst, v, 0); err != nil {
			return orig, fmt.Errorf("amf0: encode value %d: %w", i, err)
		}
	}
	return dst, nil
}

// AppendNumber appends an AMF0 Number.
func AppendNumber(dst []byte, f float64) []byte {
	dst = append(dst, markerNumber)
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
}

// AppendBool appends an AMF0 Boolean.
func AppendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, markerBoolean, 1)
	}
	return append(dst, markerBoolean, 0)
}

// AppendString appends an AMF0 String, or a Long String when s does not fit
// a 16-bit length.
func AppendString(dst []byte, s string) []byte {
	if len(s) > math.MaxUint16 {
		dst = append(dst, markerLongString)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
		return append(dst, s...)
	}
	dst = append(dst, markerString)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// AppendNull appends an AMF0 Null.
func AppendNull(dst []byte) []byte { return append(dst, markerNull) }

func appendKey(dst []byte, k string) ([]byte, error) {
	if len(k) > math.MaxUint16 {
		return dst, fmt.Errorf("property key of %d bytes is longer than 65535", len(k))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(k)))
	return append(dst, k...), nil
}

func appendProps(dst []byte, props []Property, depth int) ([]byte, error) {
	var err error
	for _, p := range props {
		if dst, err = appendKey(dst, p.Key); err != nil {
			return dst, err
		}
		if dst, err = appendValue(dst, p.Value, depth+1); err != nil {
			return dst, fmt.Errorf("property %q: %w", p.Key, err)
		}
	}
	return append(dst, 0, 0, markerObjectEnd), nil
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, fmt.Errorf("values nested deeper than %d", maxDepth)
	}
	switch v := v.(type) {
	case nil:
		return AppendNull(dst), nil
	case Undefined:
		return append(dst, markerUndefined), nil
	case bool:
		return AppendBool(dst, v), nil
	case float64:
		return AppendNumber(dst, v), nil
	case float32:
		return AppendNumber(dst, float64(v)), nil
	case int:
		return AppendNumber(dst, float64(v)), nil
	case int8:
		return AppendNumber(dst, float64(v)), nil
	case int16:
		return AppendNumber(dst, float64(v)), nil
	case int32:
		return AppendNumber(dst, float64(v)), nil
	case int64:
		return AppendNumber(dst, float64(v)), nil
	case uint:
		return AppendNumber(dst, float64(v)), nil
	case uint8:
		return AppendNumber(dst, float64(v)), nil
	case uint16:
		return AppendNumber(dst, float64(v)), nil
	case uint32:
		return AppendNumber(dst, float64(v)), nil
	case uint64:
		return AppendNumber(dst, float64(v)), nil
	case string:
		return AppendString(dst, v), nil
	case time.Time:
		dst = append(dst, markerDate)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(float64(v.UnixMilli())))
		return append(dst, 0, 0), nil // time zone: "should be 0" per the spec
	case Object:
		return appendProps(append(dst, markerObject), v, depth)
	case ECMAArray:
		dst = append(dst, markerECMAArray)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		return appendProps(dst, v, depth)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		props := make([]Property, len(keys))
		for i, k := range keys {
			props[i] = Property{k, v[k]}
		}
		return appendProps(append(dst, markerObject), props, depth)
	case []any:
		dst = append(dst, markerStrictArray)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		var err error
		for i, e := range v {
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, fmt.Errorf("array element %d: %w", i, err)
			}
		}
		return dst, nil
	default:
		return dst, fmt.Errorf("unsupported Go type %T", v)
	}
}
