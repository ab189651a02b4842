// Package flatjson scans flat JSON objects — the shape of every lastmile event —
// without building maps or allocating per field. A parsed object is a list of
// key/value spans into the caller's buffer; values are decoded only when asked.
//
// Nested objects and arrays are accepted and kept as raw spans (Kind Object or
// Array) so a caller can reject or pass them through; they are validated for
// syntax but not decoded.
package flatjson

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is the JSON type of a value.
type Kind uint8

const (
	Null Kind = iota
	Bool
	Number
	String
	Object
	Array
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "bool"
	case Number:
		return "number"
	case String:
		return "string"
	case Object:
		return "object"
	case Array:
		return "array"
	}
	return "unknown"
}

// Field is one key/value pair of an object. Key and Raw are slices of the
// scanned buffer: Key without quotes (still escaped if KeyEscaped), Raw the
// value exactly as written (strings with their quotes).
type Field struct {
	Key        []byte
	Raw        []byte
	Kind       Kind
	KeyEscaped bool
	// Escaped is true for a String value containing backslash escapes.
	Escaped bool
}

// Str returns a string value's content, unescaped. For other kinds it returns
// the raw text.
func (f *Field) Str() string {
	if f.Kind != String {
		return string(f.Raw)
	}
	if !f.Escaped {
		return string(f.Raw[1 : len(f.Raw)-1])
	}
	s, _ := Unescape(nil, f.Raw[1:len(f.Raw)-1])
	return string(s)
}

// AppendStr appends a string value's unescaped content to dst.
func (f *Field) AppendStr(dst []byte) []byte {
	if f.Kind != String {
		return append(dst, f.Raw...)
	}
	if !f.Escaped {
		return append(dst, f.Raw[1:len(f.Raw)-1]...)
	}
	dst, _ = Unescape(dst, f.Raw[1:len(f.Raw)-1])
	return dst
}

// KeyIs reports whether the field's key equals name.
func (f *Field) KeyIs(name string) bool {
	if f.KeyEscaped {
		k, _ := Unescape(nil, f.Key)
		return string(k) == name
	}
	return string(f.Key) == name
}

// SyntaxError says where a document stopped being valid JSON.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

func synErr(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// ErrNotObject is returned by ParseObject when the value is valid JSON but not
// an object.
var ErrNotObject = errors.New("event is not a JSON object")

// maxDepth bounds nesting so a hostile body cannot exhaust the stack.
const maxDepth = 64

// ParseObject parses b, which must hold exactly one JSON object (surrounding
// whitespace allowed), appending its fields to dst[:0]. Duplicate keys are all
// returned in order; callers decide (lastmile lets the last one win).
func ParseObject(dst []Field, b []byte) ([]Field, error) {
	dst = dst[:0]
	i := skipWS(b, 0)
	if i >= len(b) {
		return dst, synErr(i, "empty input")
	}
	if b[i] != '{' {
		end, _, err := scanValue(b, i, 0)
		if err != nil {
			return dst, err
		}
		if j := skipWS(b, end); j != len(b) {
			return dst, synErr(j, "unexpected %q after value", b[j])
		}
		return dst, ErrNotObject
	}
	dst, end, err := parseObjectAt(dst, b, i)
	if err != nil {
		return dst, err
	}
	if j := skipWS(b, end); j != len(b) {
		return dst, synErr(j, "unexpected %q after object", b[j])
	}
	return dst, nil
}

func parseObjectAt(dst []Field, b []byte, i int) ([]Field, int, error) {
	i++ // '{'
	i = skipWS(b, i)
	if i < len(b) && b[i] == '}' {
		return dst, i + 1, nil
	}
	for {
		i = skipWS(b, i)
		if i >= len(b) {
			return dst, i, synErr(i, "unexpected end of input in object")
		}
		if b[i] != '"' {
			return dst, i, synErr(i, "expected a quoted key, found %q", b[i])
		}
		kend, kesc, err := scanString(b, i)
		if err != nil {
			return dst, i, err
		}
		key := b[i+1 : kend-1]
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return dst, i, synErr(i, "expected ':' after key %q", key)
		}
		i = skipWS(b, i+1)
		vstart := i
		vend, kind, err := scanValue(b, i, 1)
		if err != nil {
			return dst, vend, err
		}
		dst = append(dst, Field{Key: key, KeyEscaped: kesc, Raw: b[vstart:vend], Kind: kind,
			Escaped: kind == String && hasBackslash(b[vstart:vend])})
		i = skipWS(b, vend)
		if i >= len(b) {
			return dst, i, synErr(i, "unexpected end of input in object")
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return dst, i + 1, nil
		default:
			return dst, i, synErr(i, "expected ',' or '}', found %q", b[i])
		}
	}
}

func hasBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// SplitArray calls fn with the raw bytes of each element of the JSON array in
// b, in order. It stops at the first syntax error, which is returned together
// with the number of elements already passed to fn.
func SplitArray(b []byte, fn func(elem []byte) error) (int, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return 0, synErr(i, "expected '['")
	}
	i = skipWS(b, i+1)
	n := 0
	if i < len(b) && b[i] == ']' {
		if j := skipWS(b, i+1); j != len(b) {
			return 0, synErr(j, "unexpected %q after array", b[j])
		}
		return 0, nil
	}
	for {
		i = skipWS(b, i)
		start := i
		end, _, err := scanValue(b, i, 1)
		if err != nil {
			return n, err
		}
		if err := fn(b[start:end]); err != nil {
			return n, err
		}
		n++
		i = skipWS(b, end)
		if i >= len(b) {
			return n, synErr(i, "unexpected end of input in array")
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			if j := skipWS(b, i+1); j != len(b) {
				return n, synErr(j, "unexpected %q after array", b[j])
			}
			return n, nil
		default:
			return n, synErr(i, "expected ',' or ']', found %q", b[i])
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue returns the end offset of the value starting at b[i] and its kind.
func scanValue(b []byte, i, depth int) (int, Kind, error) {
	if i >= len(b) {
		return i, Null, synErr(i, "unexpected end of input, expected a value")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, String, err
	case c == '-' || (c >= '0' && c <= '9'):
		end, err := scanNumber(b, i)
		return end, Number, err
	case c == 't':
		return scanLiteral(b, i, "true", Bool)
	case c == 'f':
		return scanLiteral(b, i, "false", Bool)
	case c == 'n':
		return scanLiteral(b, i, "null", Null)
	case c == '{':
		if depth >= maxDepth {
			return i, Object, synErr(i, "nesting deeper than %d", maxDepth)
		}
		return scanComposite(b, i, depth, '}', Object)
	case c == '[':
		if depth >= maxDepth {
			return i, Array, synErr(i, "nesting deeper than %d", maxDepth)
		}
		return scanComposite(b, i, depth, ']', Array)
	default:
		return i, Null, synErr(i, "unexpected %q, expected a value", c)
	}
}

func scanLiteral(b []byte, i int, lit string, k Kind) (int, Kind, error) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), k, nil
	}
	return i, k, synErr(i, "invalid literal, expected %s", lit)
}

func scanComposite(b []byte, i, depth int, closer byte, k Kind) (int, Kind, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, k, nil
	}
	for {
		i = skipWS(b, i)
		if k == Object {
			if i >= len(b) || b[i] != '"' {
				return i, k, synErr(i, "expected a quoted key")
			}
			end, _, err := scanString(b, i)
			if err != nil {
				return end, k, err
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return i, k, synErr(i, "expected ':'")
			}
			i = skipWS(b, i+1)
		}
		end, _, err := scanValue(b, i, depth+1)
		if err != nil {
			return end, k, err
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return i, k, synErr(i, "unexpected end of input")
		}
		switch b[i] {
		case ',':
			i++
		case closer:
			return i + 1, k, nil
		default:
			return i, k, synErr(i, "expected ',' or %q, found %q", closer, b[i])
		}
	}
}

// scanString returns the offset after the closing quote and whether the string
// contains escapes. Control characters and invalid escapes are errors.
func scanString(b []byte, i int) (int, bool, error) {
	start := i
	i++
	esc := false
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return i, esc, synErr(i, "unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return i, esc, synErr(i, "invalid \\u escape")
				}
				i += 6
			default:
				return i, esc, synErr(i, "invalid escape \\%c", b[i+1])
			}
		case c < 0x20:
			return i, esc, synErr(i, "control character in string")
		default:
			i++
		}
	}
	return start, esc, synErr(start, "unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
			return false
		}
	}
	return true
}

func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return i, synErr(start, "invalid number")
	}
	if b[i] == '0' {
		i++
	} else if b[i] >= '1' && b[i] <= '9' {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	} else {
		return i, synErr(start, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, synErr(start, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, synErr(start, "invalid number")
		}
	}
	return i, nil
}

// Unescape appends the unescaped content of a JSON string body (without
// quotes) to dst. Invalid UTF-16 surrogates become U+FFFD.
func Unescape(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		if i+1 >= len(s) {
			return dst, errors.New("unterminated escape")
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if i+5 > len(s) {
				return dst, errors.New("invalid \\u escape")
			}
			r1, err := strconv.ParseUint(string(s[i+1:i+5]), 16, 32)
			if err != nil {
				return dst, errors.New("invalid \\u escape")
			}
			i += 4
			r := rune(r1)
			if utf16.IsSurrogate(r) && i+7 <= len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
				if r2, err := strconv.ParseUint(string(s[i+3:i+7]), 16, 32); err == nil {
					if d := utf16.DecodeRune(r, rune(r2)); d != utf8.RuneError {
						r = d
						i += 6
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, fmt.Errorf("invalid escape \\%c", s[i])
		}
	}
	return dst, nil
}

// AppendString appends s as a quoted JSON string.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigit(c>>4), hexDigit(c&0xf))
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func hexDigit(c byte) byte {
	if c < 10 {
		return '0' + c
	}
	return 'a' + c - 10
}
