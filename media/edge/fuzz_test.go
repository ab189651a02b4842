package edge

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// FuzzAddCMCD: whatever key and value a player sends, a typed column gets
// a value of its type within its catalog range, and anything else lands in
// cmcd_rest as one pair the store splits right (one '=' and no ',' outside
// quotes) that reads back as sent (invalid UTF-8 as U+FFFD), or, past the
// length bound, not at all.
func FuzzAddCMCD(f *testing.F) {
	for _, s := range [][2]string{{"bl", "(4400)"}, {"mtp", "(100 200)"}, {"su", "true"}, {"cid", `a "b", c`},
		{"nor", "../seg-4.ts"}, {"bl", "-3"}, {"ot", strings.Repeat("v", 40)}, {"x", ""}, {"x", `\`}, {"sta", "p"}, {"cid", "\xff\xfe"}, {"ot", "\xff"}, {"x", strings.Repeat("é\\", 700)}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		if k == "" || k == "sid" || strings.ContainsAny(k, "=,") {
			return // not a key the CMCD parser yields
		}
		ev := map[string]any{}
		addCMCD(ev, cmcd.Data{k: v})
		if rej := clean(ev); rej != nil {
			t.Fatalf("%q=%q: the processor rejects the edge_access: %v", k, v, rej)
		}
		if col, ok := cmcdColumns[k]; ok && ev[col] != nil {
			if !fits(col, ev[col]) {
				t.Fatalf("%s=%q stored as %v, which its column refuses", k, v, ev[col])
			}
			if ev["cmcd_rest"] != nil {
				t.Fatalf("%s=%q typed and in cmcd_rest", k, v)
			}
			return
		}
		rest, _ := ev["cmcd_rest"].(string)
		if !utf8.ValidString(rest) || len(rest) > cmcdFields["cmcd_rest"].MaxLen {
			t.Fatalf("%q=%q: cmcd_rest %q is not valid UTF-8 or too long", k, v, rest)
		}
		if rest == "" {
			if len(k)+len(v) < 1000 {
				t.Fatalf("%q=%q: left out of cmcd_rest", k, v)
			}
			return
		}
		key, after := readPart(t, rest)
		if !strings.HasPrefix(after, "=") {
			t.Fatalf("%q=%q: no '=' after the key in %q", k, v, rest)
		}
		val, after := readPart(t, after[1:])
		if after != "" || key != strings.ToValidUTF8(k, "\uFFFD") || val != strings.ToValidUTF8(v, "\uFFFD") {
			t.Fatalf("%q=%q: cmcd_rest %q reads as %q=%q, then %q", k, v, rest, key, val, after)
		}
	})
}

// clean runs the processor's cleaning on an edge_access with the CMCD
// fields of ev.
func clean(ev map[string]any) *schemas.Reject {
	full := map[string]any{"log_type": "edge_access", "ts": time.Now().UnixMilli(), "node_id": "edge-f", "http_status": 200}
	for k, v := range ev {
		full[k] = v
	}
	b, err := json.Marshal(full)
	if err != nil {
		panic(err)
	}
	fields, err := flatjson.ParseObject(nil, b)
	if err != nil {
		panic(err)
	}
	var out schemas.Event
	return (&schemas.Cleaner{Now: time.Now}).Clean(fields, &out)
}

// readPart reads a bare or quoted key or value at the start of s and
// returns it and what follows.
func readPart(t *testing.T, s string) (string, string) {
	if !strings.HasPrefix(s, `"`) {
		i := strings.IndexAny(s, "=,\" ")
		if i < 0 {
			i = len(s)
		}
		return s[:i], s[i:]
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 >= len(s) {
				t.Fatalf("%q ends in an escape", s)
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(s[i])
		}
	}
	t.Fatalf("%q: unterminated string", s)
	return "", ""
}

// fits checks a typed value against its catalog field.
func fits(col string, x any) bool {
	for _, f := range edgeAccess.Fields {
		if f.Name != col {
			continue
		}
		switch f.Kind {
		case schemas.KindInt:
			n, ok := x.(int64)
			return ok && float64(n) >= f.Min && float64(n) <= f.Max
		case schemas.KindBool:
			_, ok := x.(bool)
			return ok
		default:
			s, ok := x.(string)
			return ok && s != "" && len(s) <= f.MaxLen
		}
	}
	return false
}

// BenchmarkAddCMCD: the cost CMCD adds to each request's log, for the
// hls.js sample.
func BenchmarkAddCMCD(b *testing.B) {
	d, err := cmcd.Parse(hlsSample)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		addCMCD(map[string]any{}, d)
	}
}
