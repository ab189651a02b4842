// Package metriclabel makes any byte sequence safe to use as a Prometheus
// label value. The client library panics on a label value that is not valid
// UTF-8, and every distinct value is a series kept in memory for the life of
// the process: a label value that can carry a client's bytes (a field name,
// a log_type, a topic) must go through Value.
package metriclabel

import "github.com/lastmile-qoe/lastmile/internal/textclip"

// MaxLen bounds a label value in bytes: longer values are cut (on a rune
// boundary) and end with Mark.
const MaxLen = 128

// Mark ends a value that was cut.
const Mark = "…"

// Value returns s as valid UTF-8 (each run of invalid bytes replaced by
// U+FFFD) of at most MaxLen bytes plus Mark. A value already valid and
// short is returned as is, without allocating.
func Value(s string) string { return textclip.Clip(s, MaxLen, Mark) }
