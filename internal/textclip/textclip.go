// Package textclip bounds text that came from outside: valid UTF-8, at most
// a given length, cut on a rune boundary with a mark saying so.
package textclip

import (
	"strings"
	"unicode/utf8"
)

// Clip returns s as valid UTF-8 (each run of invalid bytes replaced by
// U+FFFD) of at most max bytes plus len(mark): a longer s is cut on a rune
// boundary and mark appended. A valid s of at most max bytes is returned as
// is, without allocating.
func Clip(s string, max int, mark string) string {
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	// Bound the work on a huge s; whether it was cut shows in the mark.
	cut := len(s) > max
	if len(s) > 4*max {
		s = s[:4*max]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max && !cut {
		return s
	}
	n := min(len(s), max)
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}
