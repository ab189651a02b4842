package textclip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"\xff\xfe", 8, "\uFFFD"},
		{"a\xffb", 8, "a\uFFFDb"},
		{"ééé", 5, "éé…"}, // not cut inside the third é
		{strings.Repeat("\xff", 100), 8, "\uFFFD…"},
	} {
		if got := Clip(c.in, c.max, "…"); got != c.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func FuzzClip(f *testing.F) {
	for _, s := range []string{"", "abc", "\xff\xfe", strings.Repeat("é", 50), "a\xffb\xc3"} {
		f.Add(s, uint8(8))
	}
	f.Fuzz(func(t *testing.T, s string, max uint8) {
		got := Clip(s, int(max), "…")
		if !utf8.ValidString(got) || len(got) > int(max)+len("…") {
			t.Fatalf("Clip(%q, %d) = %q", s, max, got)
		}
		if len(s) <= int(max) && utf8.ValidString(s) && got != s {
			t.Fatalf("Clip changed %q to %q", s, got)
		}
	})
}
