package flatjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseObject(t *testing.T) {
	fs, err := ParseObject(nil, []byte(` {"a":1, "b":"x\"y", "c":true, "d":null, "e":{"n":[1,2,{"z":3}]}, "f":[], "g":-1.5e3, "h\u0041":"\u00e9\ud83d\ude00"} `))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key, val string
		kind     Kind
	}{
		{"a", "1", Number}, {"b", `x"y`, String}, {"c", "true", Bool}, {"d", "null", Null},
		{"e", `{"n":[1,2,{"z":3}]}`, Object}, {"f", "[]", Array}, {"g", "-1.5e3", Number}, {"hA", "é😀", String},
	}
	if len(fs) != len(want) {
		t.Fatalf("got %d fields, want %d", len(fs), len(want))
	}
	for i, w := range want {
		f := &fs[i]
		if !f.KeyIs(w.key) || f.Kind != w.kind || f.Str() != w.val {
			t.Errorf("field %d: got key=%s kind=%s val=%s, want %s %s %s", i, f.Key, f.Kind, f.Str(), w.key, w.kind, w.val)
		}
	}
}

func TestParseObjectErrors(t *testing.T) {
	for _, in := range []string{
		``, `   `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, `{a:1}`, `{"a":tru}`, `{"a":01x}`,
		`{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":"unterminated}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":[1,2}`,
		`{"a":"\u12"}`,
	} {
		if _, err := ParseObject(nil, []byte(in)); err == nil {
			t.Errorf("%q: expected an error", in)
		} else {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("%q: error %v is not a SyntaxError", in, err)
			}
		}
	}
	for _, in := range []string{`[1]`, `"s"`, `12`, `null`} {
		if _, err := ParseObject(nil, []byte(in)); !errors.Is(err, ErrNotObject) {
			t.Errorf("%q: got %v, want ErrNotObject", in, err)
		}
	}
}

func TestDeepNestingRefused(t *testing.T) {
	in := `{"a":` + string(repeat('[', 10000)) + string(repeat(']', 10000)) + `}`
	if _, err := ParseObject(nil, []byte(in)); err == nil {
		t.Fatal("expected a nesting error")
	}
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestSplitArray(t *testing.T) {
	var got []string
	n, err := SplitArray([]byte(` [ {"a":1} , 2, "x", [3] ] `), func(e []byte) error { got = append(got, string(e)); return nil })
	if err != nil || n != 4 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	want := []string{`{"a":1}`, `2`, `"x"`, `[3]`}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("elem %d = %q, want %q", i, got[i], want[i])
		}
	}
	if n, err := SplitArray([]byte(`[]`), func([]byte) error { return nil }); n != 0 || err != nil {
		t.Errorf("empty array: n=%d err=%v", n, err)
	}
	for _, bad := range []string{`[`, `[1,`, `[1 2]`, `[1]x`, `{}`} {
		if _, err := SplitArray([]byte(bad), func([]byte) error { return nil }); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}

// The scanner must agree with encoding/json on what is valid.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"\u00e9","b":[1,{"c":null}]}`, `{}`, `{"a":1e5}`, `[1]`, `{"a":"\ud83d\ude00"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := ParseObject(nil, b)
		var v map[string]any
		jerr := json.Unmarshal(b, &v)
		// A number beyond float64 (1e700) is valid JSON that encoding/json
		// cannot store; the scanner accepts it and coercion refuses it.
		var tooBig *json.UnmarshalTypeError
		if errors.As(jerr, &tooBig) && strings.HasPrefix(tooBig.Value, "number") && json.Valid(b) {
			jerr = nil
		}
		if err == nil && jerr != nil {
			t.Fatalf("we accept %q, encoding/json says %v", b, jerr)
		}
		if err != nil && jerr == nil && !errors.Is(err, ErrNotObject) && v != nil {
			t.Fatalf("we refuse %q (%v), encoding/json accepts it", b, err)
		}
		for i := range fs {
			_ = fs[i].Str()
		}
	})
}

func BenchmarkParseObject(b *testing.B) {
	ev := []byte(`{"event_id":"e-123456789","log_type":"first_frame","ts":1763700000000,"device_id":"dev-0001","user_id":"u-1","session_id":"s-0001-1","room_id":"room-9","stream_id":"live/room-9","region":"north","isp":"isp-a","cdn":"cdn-a","node_id":"edge-a-north-1","protocol":"http-flv","rendition":"720p","codec":"h264","app_version":"5.2.1","os":"android","network":"wifi","total_ms":820,"dns_ms":20,"tcp_connect_ms":30,"tcp_first_packet_ms":120,"video_first_packet_ms":300,"first_decode_ms":200,"first_render_ms":150,"server_ip":"10.0.0.1","edge_cached":true}`)
	var fs []Field
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	for b.Loop() {
		fs, _ = ParseObject(fs, ev)
	}
}
