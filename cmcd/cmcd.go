// Package cmcd parses Common Media Client Data (CTA-5004, and the
// CTA-5004-B version 2) as players send it. One parser, ParseDict (an RFC
// 8941 Structured Field dictionary), reads both modes: request mode, in the
// CMCD query parameter or the CMCD-Request, CMCD-Object, CMCD-Status and
// CMCD-Session headers (FromRequest; the edge reads the session id from it
// to join its access logs to the player's events), and event mode, the
// application/cmcd reports a player POSTs to a collector, one per line
// (Reports).
package cmcd

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// Data is the parsed key/value pairs as text: strings are unquoted,
// booleans are "true" or "false" (a bare key is "true"), numbers and tokens
// keep their text, an inner list keeps its text as sent, e.g. "(4400)"
// (its items' parameters included). A member's own parameters are dropped;
// ParseDict keeps them, typed.
type Data map[string]string

// SessionID is the sid key: the playback session the request belongs to.
func (d Data) SessionID() string { return d["sid"] }

// Int returns an integer key, and whether it was present and valid. An
// inner list (CMCD v2 sends bl=(4400)) gives its first member.
func (d Data) Int(key string) (int64, bool) { return IntValue(d[key]) }

// IntValue reads an integer from a bare value ("4400") or a one-member inner
// list ("(4400)", CMCD v2's form of bl, br, mtp, ...; the member's
// parameters ignored). A list of several members is no one number.
func IntValue(s string) (int64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if strings.HasPrefix(s, "(") {
		if l, err := ParseDict("l=" + s); err == nil {
			if v := l.Vals["l"]; len(v.List) == 1 && v.List[0].Kind == Integer {
				return v.List[0].Int, true
			}
		}
	}
	return 0, false
}

// headers carry CMCD in four groups; a request may use any of them.
var headers = []string{"CMCD-Request", "CMCD-Object", "CMCD-Status", "CMCD-Session"}

// FromRequest reads CMCD from the query parameter and the headers of r. A
// malformed payload is an error naming the problem; the keys parsed before
// it are still returned, so one bad key does not hide the session id.
func FromRequest(r *http.Request) (Data, error) {
	d := Data{}
	var firstErr error
	if q := r.URL.Query().Get("CMCD"); q != "" {
		firstErr = parseInto(d, q)
	}
	for _, h := range headers {
		if v := r.Header.Get(h); v != "" {
			if err := parseInto(d, v); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return d, firstErr
}

// Parse parses one CMCD payload (a Structured Field dictionary, see
// ParseDict) into its text form.
func Parse(s string) (Data, error) {
	d := Data{}
	return d, parseInto(d, s)
}

func parseInto(d Data, s string) error {
	return members(s, func(key string, v *Value, raw string) {
		switch v.Kind {
		case InnerList, Integer, Decimal, Token:
			d[key] = raw // as sent: no copy
		default:
			d[key] = v.Text()
		}
	})
}

// Encode renders d as a CMCD payload with keys in the order given (the
// spec asks for alphabetical order; callers pass them sorted). Values that
// are not numbers or tokens are quoted.
func Encode(keys []string, d Data) string {
	var b strings.Builder
	for _, k := range keys {
		v, ok := d[k]
		if !ok {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		if v == "true" {
			continue
		}
		b.WriteByte('=')
		switch {
		case v == "false":
			b.WriteString("?0")
		case isNumber(v) || isToken(k) && isTokenText(v) || isInnerList(v):
			b.WriteString(v)
		default:
			b.WriteString(quote(v))
		}
	}
	return b.String()
}

// isNumber, isInnerList and isTokenText report whether v, written as is,
// parses back to the same text as that kind, so that it is sent unquoted.
func isNumber(v string) bool    { k := kindOf(v); return k == Integer || k == Decimal }
func isInnerList(v string) bool { return kindOf(v) == InnerList }
func isTokenText(v string) bool { return kindOf(v) == Token }

func kindOf(v string) Kind {
	d, err := ParseDict("k=" + v)
	if x := d.Vals["k"]; err == nil && len(x.Params) == 0 && x.Text() == v {
		return x.Kind
	}
	return 0
}

// isToken: keys whose values are tokens, not strings (object type, streaming
// format, stream type).
func isToken(k string) bool { return k == "ot" || k == "sf" || k == "st" }

// Reports calls fn for each report of an event-mode body (see Lines), with
// its 1-based line number, its text, and the parsed report or the error
// that refused it. fn returning false stops.
func Reports(body []byte, fn func(line int, text []byte, d Dict, err error) bool) {
	Lines(body, func(line int, text []byte) bool {
		d, err := ParseDict(string(text))
		return fn(line, text, d, err)
	})
}

// Lines calls fn for each non-blank line of an event-mode body (one report
// per line, "\r\n" allowed; a line of spaces and tabs is blank), with its
// 1-based line number, without the line end. fn returning false stops.
func Lines(body []byte, fn func(line int, text []byte) bool) {
	for line, rest := 1, body; len(rest) > 0; line++ {
		l := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		l = bytes.TrimRight(l, "\r")
		if len(bytes.Trim(l, " \t")) == 0 {
			continue
		}
		if !fn(line, l) {
			return
		}
	}
}
