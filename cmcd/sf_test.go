package cmcd

import (
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// The samples of issue 20, verbatim from hls.js 1.7.4 (CMCD version 2).
const (
	hlsRequestMode = `bl=(4400),br=(0),cid="room1",d=2000,dl=4400,lb=(0),mtp=(206100),pb=(0),rtp=0,sf=h,sid="91a28b06-b2f5-429e-acd2-e25e2a3143d5",sn=33,st=l,sta=p,tpb=(0),v=2`
	hlsEventPS     = `cid="room1",e=ps,mtp=(500),sf=h,sid="91a28b06-b2f5-429e-acd2-e25e2a3143d5",sn=2,sta=s,ts=1796490410860,v=2`
	hlsEventRR     = `br=(0),cid="room1",e=rr,mtp=(500),rc=200,sf=h,sid="91a28b06-b2f5-429e-acd2-e25e2a3143d5",sn=4,st=l,sta=s,ts=1796490410940,ttfb=15,ttlb=31,url="http://127.0.0.1:8080/live/room1/seg-508.ts?sig=x",v=2`
	hlsEventError  = `cid="room1",e=e,ec=("manifestLoadError"),mtp=(500),sf=h,sid="58b4c88e-0000-4000-8000-000000000000",sn=4,sta=f,ts=1796490411000,v=2`
)

func intV(n int64, text string) Value { return Value{Kind: Integer, Int: n, Str: text} }
func tok(s string) Value              { return Value{Kind: Token, Str: s} }
func str(s string) Value              { return Value{Kind: String, Str: s} }
func boolV(b bool) Value              { return Value{Kind: Boolean, Bool: b} }
func list(vs ...Value) Value          { return Value{Kind: InnerList, List: vs} }

func TestParseDict(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		keys []string
		want map[string]Value
	}{
		// RFC 8941 §3.2 and §3.3 examples.
		{"rfc strings and bytes", `en="Applepie", da=:w4ZibGV0w6ZydGUK:`, []string{"en", "da"},
			map[string]Value{"en": str("Applepie"), "da": {Kind: Bytes, Str: "w4ZibGV0w6ZydGUK"}}},
		{"rfc booleans and params", `a=?0, b, c; foo=bar`, []string{"a", "b", "c"},
			map[string]Value{"a": boolV(false), "b": boolV(true), "c": {Kind: Boolean, Bool: true, Params: []Param{{"foo", tok("bar")}}}}},
		{"rfc decimal and inner list", `rating=1.5, feelings=(joy sadness)`, []string{"rating", "feelings"},
			map[string]Value{"rating": {Kind: Decimal, Float: 1.5, Str: "1.5"}, "feelings": list(tok("joy"), tok("sadness"))}},
		{"rfc lists with params", `a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid`, []string{"a", "b", "c", "d"},
			map[string]Value{"a": list(intV(1, "1"), intV(2, "2")), "b": intV(3, "3"),
				"c": {Kind: Integer, Int: 4, Str: "4", Params: []Param{{"aa", tok("bb")}}},
				"d": {Kind: InnerList, List: []Value{intV(5, "5"), intV(6, "6")}, Params: []Param{{"valid", boolV(true)}}}}},
		{"rfc repeated key keeps its place, last value", `a=1, b=2, a=3`, []string{"a", "b"},
			map[string]Value{"a": intV(3, "3"), "b": intV(2, "2")}},
		{"rfc negative, token with slash, string escapes", `n=-42, t=foo123/456, s="a\"b\\c"`, []string{"n", "t", "s"},
			map[string]Value{"n": intV(-42, "-42"), "t": tok("foo123/456"), "s": str(`a"b\c`)}},
		{"empty inner list and item params in a list", `l=(), m=("x";p=1 2)`, []string{"l", "m"},
			map[string]Value{"l": {Kind: InnerList}, "m": list(Value{Kind: String, Str: "x", Params: []Param{{"p", intV(1, "1")}}}, intV(2, "2"))}},
		// CTA-5004 (v1) query example, after URL decoding.
		{"cta-5004 v1", `bl=21300,br=3200,bs,cid="faec5fc2-ac30-11eabb37-0242ac130002",d=4004,mtp=25400,ot=v,rtp=15000,sf=d,sid="6e2fb550-c457-11e9-bb97-0800200c9a66",st=v,tb=6000`,
			[]string{"bl", "br", "bs", "cid", "d", "mtp", "ot", "rtp", "sf", "sid", "st", "tb"},
			map[string]Value{"bl": intV(21300, "21300"), "bs": boolV(true), "ot": tok("v"), "sid": str("6e2fb550-c457-11e9-bb97-0800200c9a66"), "tb": intV(6000, "6000")}},
		{"cta-5004 v1 next object", `nor="../300kbps/track.m4v",nrr="12323-48763",su`, []string{"nor", "nrr", "su"},
			map[string]Value{"nor": str("../300kbps/track.m4v"), "nrr": str("12323-48763"), "su": boolV(true)}},
		{"hls.js request mode", hlsRequestMode,
			[]string{"bl", "br", "cid", "d", "dl", "lb", "mtp", "pb", "rtp", "sf", "sid", "sn", "st", "sta", "tpb", "v"},
			map[string]Value{"bl": list(intV(4400, "4400")), "mtp": list(intV(206100, "206100")), "sta": tok("p"), "sn": intV(33, "33"), "v": intV(2, "2")}},
		{"hls.js event ps", hlsEventPS, []string{"cid", "e", "mtp", "sf", "sid", "sn", "sta", "ts", "v"},
			map[string]Value{"e": tok("ps"), "sta": tok("s"), "ts": intV(1796490410860, "1796490410860")}},
		{"hls.js event rr", hlsEventRR, nil,
			map[string]Value{"e": tok("rr"), "rc": intV(200, "200"), "ttfb": intV(15, "15"), "ttlb": intV(31, "31"), "url": str("http://127.0.0.1:8080/live/room1/seg-508.ts?sig=x")}},
		{"hls.js event error", hlsEventError, nil,
			map[string]Value{"e": tok("e"), "ec": list(str("manifestLoadError")), "sta": tok("f")}},
		{"unknown keys kept", `com.example-x=?1,zz="q"`, []string{"com.example-x", "zz"},
			map[string]Value{"com.example-x": boolV(true), "zz": str("q")}},
	} {
		d, err := ParseDict(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.keys != nil && !reflect.DeepEqual(d.Keys, tc.keys) {
			t.Errorf("%s: keys %v, want %v", tc.name, d.Keys, tc.keys)
		}
		for k, want := range tc.want {
			if got := d.Vals[k]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s = %+v, want %+v", tc.name, k, got, want)
			}
		}
	}
}

func TestParseDictErrors(t *testing.T) {
	for _, tc := range []struct {
		in, key, msg string
		offset       int
		keptKeys     int
	}{
		{`sid="open`, "sid", "unterminated string", 9, 0},
		{`=3`, "", "expected a key", 0, 0},
		{`Sid="x"`, "", "expected a key", 0, 0},
		{`sid="x"y`, "sid", "expected ','", 7, 1},
		{`a=1,b=1.2345`, "b", "fraction digits", 12, 1},
		{`a=1234567890123456`, "a", "more than 15 digits", 18, 0},
		{`a="\x"`, "a", "escape", 4, 0},
		{`a=(1 2`, "a", "not closed", 6, 0},
		{`a=(1,2)`, "a", "expected a space or ')'", 4, 0},
		{`a=?2`, "a", "?0 or ?1", 2, 0},
		{`a=1,`, "", "trailing comma", 4, 1},
		{"a=\"\x01\"", "a", "byte 0x01", 3, 0},
		{`a=1;=2`, "a", "parameter", 4, 0},
		{`sid="s",bl=(1 x`, "bl", "not closed", 15, 1},
	} {
		d, err := ParseDict(tc.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("ParseDict(%q) err = %v, want a SyntaxError", tc.in, err)
			continue
		}
		if se.Key != tc.key || se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("ParseDict(%q) = %v (key %q byte %d), want key %q byte %d and %q", tc.in, err, se.Key, se.Offset, tc.key, tc.offset, tc.msg)
		}
		if len(d.Keys) != tc.keptKeys {
			t.Errorf("ParseDict(%q) kept %v, want %d members before the error", tc.in, d.Keys, tc.keptKeys)
		}
	}
}

// Request mode reads v2's inner lists through the text API the edge uses.
func TestRequestModeV2(t *testing.T) {
	r := httptest.NewRequest("GET", "/live/room1/seg-33.ts?CMCD="+strings.NewReplacer(",", "%2C", "=", "%3D", `"`, "%22", "(", "%28", ")", "%29").Replace(hlsRequestMode), nil)
	d, err := FromRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if d.SessionID() != "91a28b06-b2f5-429e-acd2-e25e2a3143d5" || d["bl"] != "(4400)" || d["sta"] != "p" || d["cid"] != "room1" {
		t.Errorf("data %v", d)
	}
	for k, want := range map[string]int64{"bl": 4400, "mtp": 206100, "d": 2000, "rtp": 0} {
		if n, ok := d.Int(k); !ok || n != want {
			t.Errorf("Int(%s) = %d %v, want %d", k, n, ok, want)
		}
	}
	if _, ok := d.Int("sf"); ok {
		t.Errorf("Int(sf) of a token should fail")
	}
	// What Encode writes parses back to the same text.
	keys := []string{"bl", "cid", "d", "sf", "sid", "su", "x"}
	in := Data{"bl": "(4400)", "cid": `a "b"`, "d": "2000", "sf": "h", "sid": "s", "su": "false", "x": "1.5"}
	back, err := Parse(Encode(keys, in))
	if err != nil || !reflect.DeepEqual(back, in) {
		t.Errorf("Encode round trip: %q → %v %v", Encode(keys, in), back, err)
	}
}

func TestReports(t *testing.T) {
	body := hlsEventPS + "\r\n\n  \n" + "cid=bad\"\n" + hlsEventRR
	type got struct {
		line int
		e    string
		err  bool
	}
	var gs []got
	Reports([]byte(body), func(line int, _ []byte, d Dict, err error) bool {
		e, _ := d.Text("e")
		gs = append(gs, got{line, e, err != nil})
		return true
	})
	want := []got{{1, "ps", false}, {4, "", true}, {5, "rr", false}}
	if !reflect.DeepEqual(gs, want) {
		t.Errorf("reports %+v, want %+v", gs, want)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{hlsRequestMode, `bl=21300,br=3200,bs,sid="abc",st=l`, `sid="a\"b"`, `a=(1 2);x, b=?0`, `da=:w4Zi:`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		// A payload that parsed encodes to one that parses to the same text.
		enc := Encode(keys, d)
		back, err := Parse(enc)
		if err != nil {
			t.Fatalf("Encode(%v) = %q does not parse: %v", d, enc, err)
		}
		for k, v := range d {
			if back[k] != v {
				t.Fatalf("%q: key %s was %q, after Encode %q", s, k, v, back[k])
			}
		}
	})
}

func FuzzReports(f *testing.F) {
	f.Add(hlsEventPS + "\n" + hlsEventRR + "\n" + hlsEventError)
	f.Add("a=1\r\n\r\nb=(\n")
	f.Fuzz(func(t *testing.T, body string) {
		Reports([]byte(body), func(line int, _ []byte, d Dict, err error) bool {
			var se *SyntaxError
			if err != nil && !errors.As(err, &se) {
				t.Fatalf("line %d: error %T %v", line, err, err)
			}
			if len(d.Keys) != len(d.Vals) {
				t.Fatalf("line %d: keys %v and %d values", line, d.Keys, len(d.Vals))
			}
			return true
		})
	})
}

// BenchmarkParse is request mode on the hls.js v2 sample, as the edge reads
// every media request.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(hlsRequestMode); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIntValue(t *testing.T) {
	for in, want := range map[string]int64{"4400": 4400, "(4400)": 4400, "(0)": 0, "(4400;t=v)": 4400} {
		if n, ok := IntValue(in); !ok || n != want {
			t.Errorf("IntValue(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
	for _, in := range []string{"", "()", "(1 2)", "(12", "1.5", "x", `"3"`} {
		if n, ok := IntValue(in); ok {
			t.Errorf("IntValue(%q) = %d, want no number", in, n)
		}
	}
}
