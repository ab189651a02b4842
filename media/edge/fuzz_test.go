package edge

import (
	"strings"
	"testing"

	"github.com/lastmile-qoe/lastmile/cmcd"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// FuzzAddCMCD: whatever key and value a player sends, a typed column gets
// a value of its type within its catalog range, and anything else lands in
// cmcd_rest as one pair the store splits right: one '=' and no ',' outside
// quotes, and a value that reads back as sent.
func FuzzAddCMCD(f *testing.F) {
	for _, s := range [][2]string{{"bl", "(4400)"}, {"mtp", "(100 200)"}, {"su", "true"}, {"cid", `a "b", c`},
		{"nor", "../seg-4.ts"}, {"bl", "-3"}, {"ot", strings.Repeat("v", 40)}, {"x", ""}, {"x", `\`}, {"sta", "p"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		if k == "" || k == "sid" || strings.ContainsAny(k, "=,\"") {
			return // not a key the CMCD parser yields
		}
		ev := map[string]any{}
		addCMCD(ev, cmcd.Data{k: v})
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
		val, ok := strings.CutPrefix(rest, k+"=")
		if !ok {
			t.Fatalf("%s=%q: cmcd_rest %q", k, v, rest)
		}
		if !strings.HasPrefix(val, `"`) {
			if val != v || strings.ContainsAny(val, "=,\" ") {
				t.Fatalf("%s=%q written bare as %q", k, v, val)
			}
			return
		}
		if got, ok := unquote(val); !ok || got != v {
			t.Fatalf("%s=%q written as %s, which reads back as %q (%v)", k, v, val, got, ok)
		}
	})
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

// unquote reads a quoted string with \" and \\ escapes that spans all of s.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 >= len(s) {
				return "", false
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), i == len(s)-1
		default:
			b.WriteByte(s[i])
		}
	}
	return "", false
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
