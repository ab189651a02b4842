package amf0

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 70000)
	date := time.UnixMilli(1700000000123).UTC()
	tests := []struct {
		name string
		in   any
		want any // nil means: same as in
	}{
		{"number", 3.5, nil},
		{"int becomes number", 42, float64(42)},
		{"uint32 becomes number", uint32(7), float64(7)},
		{"true", true, nil},
		{"false", false, nil},
		{"empty string", "", nil},
		{"string", "NetConnection.Connect.Success", nil},
		{"long string", long, nil},
		{"null", nil, nil},
		{"undefined", Undefined{}, nil},
		{"date", date, nil},
		{"empty object", Object{}, nil},
		{"object keeps order", Object{{"z", 1.0}, {"a", "b"}, {"m", nil}}, nil},
		{"nested", Object{{"o", Object{{"x", []any{1.0, "two", Object{}}}}}}, nil},
		{"ecma array decodes to object", ECMAArray{{"duration", 0.0}, {"width", 320.0}}, Object{{"duration", 0.0}, {"width", 320.0}}},
		{"strict array", []any{1.0, true, nil, "s"}, nil},
		{"map sorted", map[string]any{"b": 2, "a": "x"}, Object{{"a", "x"}, {"b", 2.0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(nil, tc.in)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tc.want
			if want == nil {
				want = tc.in
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
				t.Fatalf("round trip: got %#v, want %#v", got, want)
			}
		})
	}
}

// A connect command shaped like ffmpeg's encodes to the spec's byte layout
// and decodes to the values the server needs.
func TestDecodeConnectCommand(t *testing.T) {
	var b []byte
	b, _ = Encode(b, "connect", 1.0, Object{
		{"app", "live"},
		{"type", "nonprivate"},
		{"flashVer", "FMLE/3.0 (compatible; Lavf59.27.100)"},
		{"tcUrl", "rtmp://127.0.0.1:1935/live"},
	})
	want := "020007636f6e6e656374003ff00000000000000300036170700200046c697665"
	if got := hex.EncodeToString(b[:len(want)/2]); got != want {
		t.Fatalf("encoding prefix %s, want %s", got, want)
	}
	vals, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 3 || vals[0] != "connect" || vals[1] != 1.0 {
		t.Fatalf("got %#v", vals)
	}
	obj := vals[2].(Object)
	if obj.String("app") != "live" || obj.String("tcUrl") != "rtmp://127.0.0.1:1935/live" {
		t.Fatalf("object %#v", obj)
	}
	if _, ok := obj.Number("app"); ok {
		t.Fatal("Number of a string property reported ok")
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		hex       string
		truncated bool
		contains  string
	}{
		{"number short", "00 3ff0", true, "number"},
		{"string short", "02 0005 6162", true, "string bytes"},
		{"string length short", "02 00", true, "string length"},
		{"long string lies", "0c ffffffff 61", true, "long string"},
		{"object no end", "03 0001 61 0101", true, "string length"},
		{"object end alone", "09", false, "object end"},
		{"strict array lies", "0a 7fffffff 00", true, "strict array"},
		{"amf3 switch", "11 01", false, "AMF3"},
		{"movie clip", "04", false, "unsupported type marker 0x04"},
		{"unknown marker", "ee", false, "0xee"},
		{"dangling reference", "07 0003", false, "reference 3"},
		{"date short", "0b 0000000000000000 00", true, "date time zone"},
		{"boolean short", "01", true, "boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(b)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrTruncated) != tc.truncated {
				t.Errorf("errors.Is(ErrTruncated) = %v, want %v (%v)", !tc.truncated, tc.truncated, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func TestDeepNestingIsAnError(t *testing.T) {
	b := bytes.Repeat([]byte{markerStrictArray, 0, 0, 0, 1}, 1000)
	b = append(b, markerNull)
	if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("err = %v, want nesting error", err)
	}
}

func TestReferenceResolves(t *testing.T) {
	b, _ := Encode(nil, Object{{"a", 1.0}})
	b = append(b, markerReference, 0, 0)
	vals, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vals[0], vals[1]) {
		t.Fatalf("reference gave %#v, want %#v", vals[1], vals[0])
	}
}

func TestTypedObjectAndXML(t *testing.T) {
	b := []byte{markerTypedObject, 0, 1, 'C', 0, 1, 'k', markerBoolean, 1, 0, 0, markerObjectEnd,
		markerXMLDocument, 0, 0, 0, 2, '<', '>'}
	vals, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{Object{{"k", true}}, "<>"}
	if !reflect.DeepEqual(vals, want) {
		t.Fatalf("got %#v, want %#v", vals, want)
	}
}

func TestDateNotWholeMillisecondsIsFloat(t *testing.T) {
	b := AppendNumber(nil, 1.5)
	b[0] = markerDate // same 8-byte double, then the time zone
	b = append(b, 0, 0)
	vals, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if vals[0] != 1.5 {
		t.Fatalf("got %#v, want 1.5", vals[0])
	}
}

func TestEncodeUnsupported(t *testing.T) {
	dst := []byte{1, 2}
	out, err := Encode(dst, "ok", struct{}{})
	if err == nil || !strings.Contains(err.Error(), "struct {}") {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(out, []byte{1, 2}) {
		t.Fatalf("dst changed on error: %x", out)
	}
}

func TestSetDataFrame(t *testing.T) {
	meta, _ := Encode(nil, OnMetaData, ECMAArray{{"width", 320.0}, {"height", 180.0}})
	sent := AddSetDataFrame(nil, meta)
	if !HasPrefixString(sent, SetDataFrame) {
		t.Fatal("AddSetDataFrame did not prepend @setDataFrame")
	}
	if got := StripSetDataFrame(sent); !bytes.Equal(got, meta) {
		t.Fatalf("StripSetDataFrame = %x, want %x", got, meta)
	}
	if got := StripSetDataFrame(meta); !bytes.Equal(got, meta) {
		t.Fatal("StripSetDataFrame changed a payload without @setDataFrame")
	}
	other, _ := Encode(nil, "onCuePoint", Object{})
	if got := AddSetDataFrame(nil, other); !bytes.Equal(got, other) {
		t.Fatal("AddSetDataFrame changed a non-metadata payload")
	}
	for _, p := range [][]byte{sent, meta} {
		obj, err := ParseMetaData(p)
		if err != nil {
			t.Fatal(err)
		}
		if w, _ := obj.Number("width"); w != 320 {
			t.Fatalf("width = %v", w)
		}
	}
	if _, err := ParseMetaData(other); err == nil {
		t.Fatal("ParseMetaData accepted onCuePoint")
	}
}

func TestObjectSet(t *testing.T) {
	var o Object
	o.Set("a", 1.0)
	o.Set("b", 2.0)
	o.Set("a", 3.0)
	if !reflect.DeepEqual(o, Object{{"a", 3.0}, {"b", 2.0}}) {
		t.Fatalf("got %#v", o)
	}
}

func FuzzDecode(f *testing.F) {
	seed := func(vals ...any) {
		b, err := Encode(nil, vals...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed("connect", 1.0, Object{{"app", "live"}, {"tcUrl", "rtmp://h/live"}})
	seed("@setDataFrame", "onMetaData", ECMAArray{{"duration", 0.0}, {"encoder", "Lavf"}})
	// Seeds stay small: the fuzzer minimizes every new input it finds,
	// which is slow for large ones. Long strings are covered above.
	seed([]any{1.0, Undefined{}, nil, time.UnixMilli(5)}, "y")
	f.Add([]byte{markerLongString, 0, 0, 0, 2, 'h', 'i'})
	seed(math.NaN(), math.Inf(-1))
	f.Add([]byte{markerObject, 0, 1, 'a', markerReference, 0, 0, 0, 0, 9, markerReference, 0, 0})
	f.Add([]byte{markerDate, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := Decode(b)
		if err != nil {
			return
		}
		enc1, err := Encode(nil, vals...)
		if err != nil {
			t.Fatalf("re-encode of decoded values: %v", err)
		}
		vals2, err := Decode(enc1)
		if err != nil {
			t.Fatalf("decode of re-encoded values: %v", err)
		}
		// Bytes, not DeepEqual: NaN != NaN, but its bits survive.
		enc2, err := Encode(nil, vals2...)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("round trip changed values:\n%x\n%x", enc1, enc2)
		}
	})
}

// Each array holds two references to the one before: 40 levels would expand
// to 2^40 values when re-encoded. The decoder refuses instead.
func TestReferenceBombIsAnError(t *testing.T) {
	b := []byte{markerStrictArray, 0, 0, 0, 0}
	for i := 0; i < 40; i++ {
		b = append(b, markerStrictArray, 0, 0, 0, 2,
			markerReference, 0, byte(i), markerReference, 0, byte(i))
	}
	if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), "expand") {
		t.Fatalf("err = %v, want expansion error", err)
	}
}
