// Package cmcd parses Common Media Client Data (CTA-5004, and v2's
// additions) as players send it: in the CMCD query parameter or in the
// CMCD-Request, CMCD-Object, CMCD-Status and CMCD-Session headers. The edge
// reads the session id (sid) from it to join its access logs to the
// player's events.
package cmcd

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Data is the parsed key/value pairs. Strings are unquoted, booleans given as
// a bare key are "true", numbers keep their text.
type Data map[string]string

// SessionID is the sid key: the playback session the request belongs to.
func (d Data) SessionID() string { return d["sid"] }

// Int returns an integer key, and whether it was present and valid.
func (d Data) Int(key string) (int64, bool) {
	n, err := strconv.ParseInt(d[key], 10, 64)
	return n, err == nil
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

// Parse parses one CMCD payload: comma-separated key=value pairs.
func Parse(s string) (Data, error) {
	d := Data{}
	return d, parseInto(d, s)
}

func parseInto(d Data, s string) error {
	for i := 0; i < len(s); {
		// key
		j := i
		for j < len(s) && s[j] != '=' && s[j] != ',' {
			j++
		}
		key := strings.TrimSpace(s[i:j])
		if key == "" {
			return fmt.Errorf("cmcd: empty key at byte %d", i)
		}
		if j == len(s) || s[j] == ',' {
			d[key] = "true" // a bare key is a true boolean
			i = j + 1
			continue
		}
		j++ // '='
		if j < len(s) && s[j] == '"' {
			// quoted string; \" and \\ are escapes
			var b strings.Builder
			k := j + 1
			for ; k < len(s) && s[k] != '"'; k++ {
				if s[k] == '\\' && k+1 < len(s) {
					k++
				}
				b.WriteByte(s[k])
			}
			if k == len(s) {
				return fmt.Errorf("cmcd: unterminated string for key %q", key)
			}
			d[key] = b.String()
			k++
			if k < len(s) && s[k] != ',' {
				return fmt.Errorf("cmcd: unexpected %q after the string of key %q", s[k], key)
			}
			i = k + 1
			continue
		}
		k := j
		for k < len(s) && s[k] != ',' {
			k++
		}
		d[key] = strings.TrimSpace(s[j:k])
		i = k + 1
	}
	return nil
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
		if _, err := strconv.ParseFloat(v, 64); err == nil || isToken(k) {
			b.WriteString(v)
			continue
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v))
		b.WriteByte('"')
	}
	return b.String()
}

// isToken: keys whose values are tokens, not strings (object type, streaming
// format, stream type).
func isToken(k string) bool { return k == "ot" || k == "sf" || k == "st" }
