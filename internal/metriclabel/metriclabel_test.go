package metriclabel

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"heartbeat", "heartbeat"},
		{"", ""},
		{"\xff\xfe", "\uFFFD"},
		{"a\xffb", "a\uFFFDb"},
		{"é", "é"},
		{strings.Repeat("x", MaxLen), strings.Repeat("x", MaxLen)},
		{strings.Repeat("x", MaxLen+1), strings.Repeat("x", MaxLen) + Mark},
	} {
		if got := Value(c.in); got != c.want {
			t.Errorf("Value(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzValue: whatever the bytes, the result is a label value the client
// library accepts, and it is bounded.
func FuzzValue(f *testing.F) {
	for _, s := range []string{"", "heartbeat", "\xff\xfe", strings.Repeat("é", 100), strings.Repeat("\xff", 200), "a\x00b\n\"c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := Value(s)
		if !utf8.ValidString(v) || len(v) > MaxLen+len(Mark) {
			t.Fatalf("Value(%q) = %q: invalid or %d bytes", s, v, len(v))
		}
		if len(s) <= MaxLen && utf8.ValidString(s) && v != s {
			t.Fatalf("Value changed a valid short value %q to %q", s, v)
		}
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"l"})
		cv.WithLabelValues(v).Inc() // panics on an invalid value
	})
}
