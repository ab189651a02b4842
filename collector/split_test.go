package collector

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestSplitBody(t *testing.T) {
	const o = `{"a":1}`
	cases := []struct {
		body, ctype string
		want        []string // the events; nil with err for a refused body
		err         string
	}{
		{"[" + o + "," + o + "]", "", []string{o, o}, ""},
		{" [\n  " + o + ",\n  " + o + "\n]\n", "application/json", []string{o, o}, ""},
		{o + "\r\n\r\n" + o + "\n", "", []string{o, o}, ""},
		{"[1]\n" + o, "", []string{"[1]", o}, ""},
		{`"x"` + "\n" + o, "", []string{`"x"`, o}, ""},
		{"123\n" + o + "\ngarbage", "", []string{"123", o, "garbage"}, ""},
		{"[1,\n" + o, "", []string{"[1,", o}, ""},
		{"[" + o + "]", "application/x-ndjson; charset=utf-8", []string{"[" + o + "]"}, ""},
		{"[\n" + o + ",\n" + o + "\n", "", []string{"[", o + ",", o}, ""}, // array missing its ]: lines
		{"{broken", "", []string{"{broken"}, ""},
		{"[" + o + ",", "", nil, "unexpected end of input"},
		{"[\n{\n\"a\": 1\n},\n{\n", "", nil, "invalid JSON"},
		{"garbage", "", nil, "no line is a JSON object"},
		{"\x1f\x8b\x08\x00", "", nil, "gzip-compressed"},
		{"[1] x", "", nil, "after array"},
	}
	for _, c := range cases {
		spans, err := splitBody(nil, []byte(c.body), c.ctype, 100)
		var got []string
		for _, sp := range spans {
			got = append(got, c.body[sp[0]:sp[1]])
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %q, %v; want an error with %q", c.body, got, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: got %q, %v; want %q", c.body, got, err, c.want)
		}
	}
	if _, err := splitBody(nil, []byte(strings.Repeat(`{}`+"\n", 11)), "", 10); !errors.Is(err, errTooManyEvents) {
		t.Errorf("11 lines, max 10: %v", err)
	}
	if _, err := splitBody(nil, []byte("["+strings.Repeat(`{},`, 10)+"{}]"), "", 10); !errors.Is(err, errTooManyEvents) {
		t.Errorf("11 elements, max 10: %v", err)
	}
}

func TestContentCoding(t *testing.T) {
	for enc, want := range map[string]string{
		"": "", "identity": "", "IDENTITY": "", "gzip": "gzip", "GZIP": "gzip", " x-gzip ": "gzip",
		"identity, Gzip": "gzip", "gzip, gzip": "error:lists 2 codings", "br": "error:not supported", "gzip,br": "error:lists 2",
	} {
		h := http.Header{}
		if enc != "" {
			h.Set("Content-Encoding", enc)
		}
		got, err := contentCoding(h)
		if err != nil {
			got = "error:" + err.Error()
		}
		if (want == "" && got != "") || !strings.Contains(got, strings.TrimPrefix(want, "error:")) || strings.HasPrefix(want, "error:") != strings.HasPrefix(got, "error:") {
			t.Errorf("Content-Encoding %q: %q, want %q", enc, got, want)
		}
	}
	h := http.Header{"Content-Encoding": {"gzip", "gzip"}}
	if _, err := contentCoding(h); err == nil {
		t.Error("two Content-Encoding lines of gzip accepted")
	}
}
