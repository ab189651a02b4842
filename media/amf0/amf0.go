// Package amf0 encodes and decodes AMF0, the value format of RTMP commands
// and of FLV script data (onMetaData).
//
// Go types used for AMF0 values:
//
//	Number          float64 (Encode also takes Go integer types and float32)
//	Boolean         bool
//	String          string (Long String when longer than 65535 bytes)
//	Object          Object (ordered properties)
//	Null            nil
//	Undefined       Undefined{}
//	ECMA array      decoded as Object; encode an ECMAArray to write one
//	Strict array    []any
//	Date            time.Time (millisecond precision); a date that is not a
//	                whole number of milliseconds decodes as float64
//	Typed object    decoded as Object (the class name is dropped)
//	XML document    decoded as string
//
// Decoding never panics: truncated or malformed input gives an error that
// names the offset and what was expected.
package amf0

import (
	"errors"
	"fmt"
	"time"
)

// Type markers (AMF0 spec, section 2.1).
const (
	markerNumber      = 0x00
	markerBoolean     = 0x01
	markerString      = 0x02
	markerObject      = 0x03
	markerMovieClip   = 0x04
	markerNull        = 0x05
	markerUndefined   = 0x06
	markerReference   = 0x07
	markerECMAArray   = 0x08
	markerObjectEnd   = 0x09
	markerStrictArray = 0x0a
	markerDate        = 0x0b
	markerLongString  = 0x0c
	markerUnsupported = 0x0d
	markerRecordSet   = 0x0e
	markerXMLDocument = 0x0f
	markerTypedObject = 0x10
	markerAVMPlus     = 0x11
)

// Property is one key/value pair of an Object or ECMA array.
type Property struct {
	Key   string
	Value any
}

// Object is an AMF0 object. It keeps the wire order of its properties,
// because peers (and FLV metadata readers) sometimes care about it.
type Object []Property

// ECMAArray encodes as an AMF0 ECMA array (the form onMetaData uses).
// Decoding an ECMA array gives an Object.
type ECMAArray []Property

// Undefined is the AMF0 undefined value.
type Undefined struct{}

// ErrTruncated is wrapped by every error caused by input that ends early.
var ErrTruncated = errors.New("amf0: truncated input")

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// Get returns the value of the first property named key.
func (o Object) Get(key string) (any, bool) {
	for _, p := range o {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

// String returns the string property key, or "" when it is absent or not a
// string.
func (o Object) String(key string) string {
	v, _ := o.Get(key)
	s, _ := v.(string)
	return s
}

// Number returns the number property key; ok is false when it is absent or
// not a number.
func (o Object) Number(key string) (n float64, ok bool) {
	v, _ := o.Get(key)
	n, ok = v.(float64)
	return n, ok
}

// Set replaces the first property named key, or appends it.
func (o *Object) Set(key string, v any) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, Property{Key: key, Value: v})
}

// dateToValue turns an AMF0 date (ms since the epoch, UTC) into time.Time
// when that is lossless, so that re-encoding gives the same bytes.
func dateToValue(ms float64) any {
	const limit = 8.64e15 // ECMAScript date range
	if ms != ms || ms > limit || ms < -limit || ms != float64(int64(ms)) {
		return ms
	}
	return time.UnixMilli(int64(ms)).UTC()
}

func truncated(off int, what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrTruncated, what, off)
}
