package amf0

import (
	"encoding/binary"
	"fmt"
)

// Names of the data messages a publisher sends for stream metadata.
const (
	SetDataFrame = "@setDataFrame"
	OnMetaData   = "onMetaData"
)

// HasPrefixString reports whether b starts with the AMF0 String s, without
// decoding or allocating.
func HasPrefixString(b []byte, s string) bool {
	n := len(s)
	if len(b) < 3+n || b[0] != markerString || int(binary.BigEndian.Uint16(b[1:])) != n {
		return false
	}
	return string(b[3:3+n]) == s
}

// StripSetDataFrame returns payload without a leading "@setDataFrame"
// string. A publisher sends "@setDataFrame", "onMetaData", {...} to ask the
// server to keep the metadata; what a server stores and what FLV files carry
// is "onMetaData", {...}. Other payloads are returned unchanged. The result
// aliases payload.
func StripSetDataFrame(payload []byte) []byte {
	if HasPrefixString(payload, SetDataFrame) {
		return payload[3+len(SetDataFrame):]
	}
	return payload
}

// AddSetDataFrame appends payload to dst, preceded by the "@setDataFrame"
// string when payload is "onMetaData" data without it: the form a publisher
// sends so that servers store the metadata for later viewers.
func AddSetDataFrame(dst, payload []byte) []byte {
	if HasPrefixString(payload, OnMetaData) {
		dst = AppendString(dst, SetDataFrame)
	}
	return append(dst, payload...)
}

// ParseMetaData decodes the object of an onMetaData data message or script
// tag (with or without "@setDataFrame"). An ECMA array or an object gives
// an Object.
func ParseMetaData(payload []byte) (Object, error) {
	b := StripSetDataFrame(payload)
	if !HasPrefixString(b, OnMetaData) {
		return nil, fmt.Errorf("amf0: data is not onMetaData")
	}
	v, _, err := DecodeOne(b[3+len(OnMetaData):])
	if err != nil {
		return nil, fmt.Errorf("amf0: onMetaData: %w", err)
	}
	obj, ok := v.(Object)
	if !ok {
		return nil, fmt.Errorf("amf0: onMetaData carries %T, not an object", v)
	}
	return obj, nil
}
