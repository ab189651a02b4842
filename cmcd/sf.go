package cmcd

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the type of a Structured Field value (RFC 8941 §3.3), plus
// InnerList for a member that is a list of items.
type Kind uint8

const (
	Integer Kind = iota + 1
	Decimal
	String
	Token
	Bytes // a byte sequence, kept as its base64 text
	Boolean
	InnerList
)

// Value is one typed member value of a CMCD dictionary: a bare item or an
// inner list, with its parameters (kept in order, never interpreted).
type Value struct {
	Kind   Kind
	Int    int64   // Integer
	Float  float64 // Decimal
	Bool   bool    // Boolean
	Str    string  // String (unescaped), Token, Bytes (base64 text), and the literal text of Integer and Decimal
	List   []Value // InnerList members
	Params []Param
}

// Param is one ;key=value parameter of an item or inner list.
type Param struct {
	Key   string
	Value Value // a bare item
}

// Dict is a parsed CMCD payload: the members in the order sent (a repeated
// key keeps its first position and its last value, as RFC 8941 says).
type Dict struct {
	Keys []string
	Vals map[string]Value
}

// Get returns a member and whether it is present.
func (d Dict) Get(key string) (Value, bool) { v, ok := d.Vals[key]; return v, ok }

// Number returns an integer or decimal member as a float64; a one-member
// inner list (CMCD v2 sends bl=(4400)) counts as its member.
func (d Dict) Number(key string) (float64, bool) {
	v, ok := d.Vals[key]
	if !ok {
		return 0, false
	}
	if v.Kind == InnerList && len(v.List) > 0 {
		v = v.List[0]
	}
	switch v.Kind {
	case Integer:
		return float64(v.Int), true
	case Decimal:
		return v.Float, true
	}
	return 0, false
}

// Text returns a string or token member (or the first of an inner list of
// them: CMCD v2 sends ec=("manifestLoadError")).
func (d Dict) Text(key string) (string, bool) {
	v, ok := d.Vals[key]
	if !ok {
		return "", false
	}
	if v.Kind == InnerList && len(v.List) > 0 {
		v = v.List[0]
	}
	if v.Kind == String || v.Kind == Token {
		return v.Str, true
	}
	return "", false
}

// SyntaxError names where a payload stopped making sense.
type SyntaxError struct {
	Offset int    // byte offset in the payload
	Key    string // the member being parsed, "" between members
	Msg    string
}

func (e *SyntaxError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("cmcd: byte %d, key %q: %s", e.Offset, e.Key, e.Msg)
	}
	return fmt.Sprintf("cmcd: byte %d: %s", e.Offset, e.Msg)
}

// Limits of a dictionary, so that hostile input costs bounded work.
const (
	maxMembers    = 256
	maxListItems  = 256
	maxParams     = 64
	maxIntDigits  = 15 // RFC 8941 §3.3.1
	maxDecDigits  = 12 // integer part
	maxFracDigits = 3
)

// ParseDict parses a CMCD payload as an RFC 8941 dictionary: members
// separated by commas with optional spaces or tabs around them, each a key
// alone (true) or key=item or key=(inner list), with parameters. On an error
// the members parsed before it are returned, so one bad key does not hide
// the session id.
func ParseDict(s string) (Dict, error) {
	d := Dict{Vals: make(map[string]Value, 16)}
	err := members(s, func(key string, v *Value, _ string) {
		if _, seen := d.Vals[key]; !seen {
			d.Keys = append(d.Keys, key)
		}
		d.Vals[key] = *v
	})
	return d, err
}

// members parses s as a dictionary and calls fn for each member in order,
// with its value and the value's text as sent (without its parameters).
func members(s string, fn func(key string, v *Value, raw string)) error {
	p := sfParser{s: s}
	p.skipOWS()
	for n := 0; p.i < len(s); n++ {
		if n >= maxMembers {
			return p.err("", "more than %d members", maxMembers)
		}
		start := p.i
		key, err := p.key()
		if err != nil {
			return err
		}
		var v Value
		vstart := p.i + 1
		if p.i < len(s) && s[p.i] == '=' {
			p.i++
			if p.i < len(s) && s[p.i] == '(' {
				v, err = p.innerList(key)
			} else {
				v, err = p.bareItem(key)
			}
			if err != nil {
				return err
			}
		} else {
			v, vstart = Value{Kind: Boolean, Bool: true}, p.i
		}
		raw := s[vstart:p.i]
		if v.Params, err = p.params(key); err != nil {
			return err
		}
		fn(key, &v, raw)
		p.skipOWS()
		if p.i == len(s) {
			break
		}
		if s[p.i] != ',' {
			return p.err(key, "expected ',' after the member that starts at byte %d, found %q", start, s[p.i])
		}
		p.i++
		p.skipOWS()
		if p.i == len(s) {
			return p.err("", "trailing comma")
		}
	}
	return nil
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) err(key, format string, args ...any) error {
	return &SyntaxError{Offset: p.i, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) skipSP() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// key: lcalpha or '*', then lcalpha, digits, '_', '-', '.', '*'.
func (p *sfParser) key() (string, error) {
	start := p.i
	if p.i == len(p.s) || !(isLower(p.s[p.i]) || p.s[p.i] == '*') {
		if p.i == len(p.s) {
			return "", p.err("", "expected a key, found the end")
		}
		return "", p.err("", "expected a key (a lowercase letter or '*'), found %q", p.s[p.i])
	}
	for p.i < len(p.s) && isKeyChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i], nil
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isKeyChar(c byte) bool {
	return isLower(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

// tchar of RFC 9110, plus ':' and '/' as RFC 8941 tokens allow.
func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
}

func (p *sfParser) innerList(key string) (Value, error) {
	p.i++ // '('
	v := Value{Kind: InnerList}
	for {
		p.skipSP()
		if p.i == len(p.s) {
			return v, p.err(key, "inner list not closed with ')'")
		}
		if p.s[p.i] == ')' {
			p.i++
			return v, nil
		}
		if len(v.List) >= maxListItems {
			return v, p.err(key, "inner list has more than %d items", maxListItems)
		}
		it, err := p.bareItem(key)
		if err != nil {
			return v, err
		}
		if it.Params, err = p.params(key); err != nil {
			return v, err
		}
		v.List = append(v.List, it)
		if p.i < len(p.s) && p.s[p.i] != ' ' && p.s[p.i] != ')' {
			return v, p.err(key, "expected a space or ')' in the inner list, found %q", p.s[p.i])
		}
	}
}

func (p *sfParser) params(key string) ([]Param, error) {
	var ps []Param
	for p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
		p.skipSP()
		if len(ps) >= maxParams {
			return ps, p.err(key, "more than %d parameters", maxParams)
		}
		pk, err := p.key()
		if err != nil {
			return ps, &SyntaxError{Offset: p.i, Key: key, Msg: "parameter: " + err.(*SyntaxError).Msg}
		}
		pv := Value{Kind: Boolean, Bool: true}
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if pv, err = p.bareItem(key); err != nil {
				return ps, err
			}
		}
		ps = append(ps, Param{Key: pk, Value: pv})
	}
	return ps, nil
}

func (p *sfParser) bareItem(key string) (Value, error) {
	if p.i == len(p.s) {
		return Value{}, p.err(key, "expected a value after '=', found the end")
	}
	switch c := p.s[p.i]; {
	case c == '-' || isDigit(c):
		return p.number(key)
	case c == '"':
		return p.str(key)
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return Value{Kind: Boolean, Bool: p.s[p.i-1] == '1'}, nil
		}
		return Value{}, p.err(key, "a boolean is ?0 or ?1")
	case c == ':':
		end := strings.IndexByte(p.s[p.i+1:], ':')
		if end < 0 {
			return Value{}, p.err(key, "byte sequence not closed with ':'")
		}
		b := p.s[p.i+1 : p.i+1+end]
		for j := 0; j < len(b); j++ {
			if !(isTokenChar(b[j]) || b[j] == '=') || b[j] == ':' {
				return Value{}, &SyntaxError{Offset: p.i + 1 + j, Key: key, Msg: fmt.Sprintf("%q in a byte sequence", b[j])}
			}
		}
		p.i += end + 2
		return Value{Kind: Bytes, Str: b}, nil
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		start := p.i
		for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
			p.i++
		}
		return Value{Kind: Token, Str: p.s[start:p.i]}, nil
	default:
		return Value{}, p.err(key, "unexpected %q at the start of a value", c)
	}
}

func (p *sfParser) number(key string) (Value, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits, frac, dot := 0, 0, false
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case isDigit(c) && dot:
			frac++
		case isDigit(c):
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			goto done
		}
	}
done:
	text := p.s[start:p.i]
	switch {
	case digits == 0:
		return Value{}, p.err(key, "a number needs a digit")
	case !dot && digits > maxIntDigits:
		return Value{}, p.err(key, "integer %s has more than %d digits", text, maxIntDigits)
	case !dot:
		n, _ := strconv.ParseInt(text, 10, 64)
		return Value{Kind: Integer, Int: n, Str: text}, nil
	case digits > maxDecDigits:
		return Value{}, p.err(key, "decimal %s has more than %d integer digits", text, maxDecDigits)
	case frac == 0 || frac > maxFracDigits:
		return Value{}, p.err(key, "decimal %s needs 1 to %d fraction digits", text, maxFracDigits)
	}
	f, _ := strconv.ParseFloat(text, 64)
	return Value{Kind: Decimal, Float: f, Str: text}, nil
}

func (p *sfParser) str(key string) (Value, error) {
	p.i++ // '"'
	// Most strings have no escape: a slice of the input.
	if end := strings.IndexByte(p.s[p.i:], '"'); end >= 0 {
		body := p.s[p.i : p.i+end]
		if strings.IndexByte(body, '\\') < 0 && printable(body) {
			p.i += end + 1
			return Value{Kind: String, Str: body}, nil
		}
	}
	var b strings.Builder
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c == '\\':
			p.i++
			if p.i == len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return Value{}, p.err(key, `a string escape is \" or \\`)
			}
			b.WriteByte(p.s[p.i])
		case c == '"':
			p.i++
			return Value{Kind: String, Str: b.String()}, nil
		case c < 0x20 || c > 0x7e:
			return Value{}, p.err(key, "byte 0x%02x in a string (only printable ASCII is allowed)", c)
		default:
			b.WriteByte(c)
		}
	}
	return Value{}, p.err(key, "unterminated string")
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Text renders a value without parameters as the Data map holds it:
// strings unquoted, booleans "true"/"false", numbers and tokens as sent, an
// inner list in its Structured Field form, e.g. (4400 "a").
func (v Value) Text() string {
	switch v.Kind {
	case Boolean:
		return strconv.FormatBool(v.Bool)
	case InnerList:
		var b strings.Builder
		b.WriteByte('(')
		for i, it := range v.List {
			if i > 0 {
				b.WriteByte(' ')
			}
			if it.Kind == String {
				b.WriteString(quote(it.Str))
			} else {
				b.WriteString(it.Text())
			}
		}
		b.WriteByte(')')
		return b.String()
	case Bytes:
		return ":" + v.Str + ":"
	}
	return v.Str
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
