package store

import (
	"fmt"
	"strings"
	"time"
)

// QuoteTime renders t as a ClickHouse DateTime64(3) value in UTC.
func QuoteTime(t time.Time) string {
	return fmt.Sprintf("fromUnixTimestamp64Milli(%d, 'UTC')", t.UnixMilli())
}

// QuoteIdent quotes one identifier for ClickHouse with backticks, escaping
// backslashes and backticks, so any column name is safe in generated SQL.
func QuoteIdent(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	writeIdent(&b, s)
	return b.String()
}

// QuoteTable quotes a table name; "db.table" is split at the first dot and
// each part quoted, so callers may pass qualified names.
func QuoteTable(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 4)
	writeTable(&b, s)
	return b.String()
}

// QuoteString quotes a string literal (e.g. a dedup token like
// "topic:3:100-200" or a file path) with single quotes.
func QuoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	writeString(&b, s)
	return b.String()
}

func writeTable(b *strings.Builder, s string) {
	if db, t, ok := strings.Cut(s, "."); ok && db != "" && t != "" {
		writeIdent(b, db)
		b.WriteByte('.')
		writeIdent(b, t)
		return
	}
	writeIdent(b, s)
}

func writeIdent(b *strings.Builder, s string) { writeQuoted(b, s, '`') }

func writeString(b *strings.Builder, s string) { writeQuoted(b, s, '\'') }

func writeQuoted(b *strings.Builder, s string, q byte) {
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case q, '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
}
