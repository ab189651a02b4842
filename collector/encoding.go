package collector

import (
	"fmt"
	"net/http"
	"strings"
)

// contentCoding returns the one content coding of a request, "" for none or
// "gzip", from all its Content-Encoding header lines. Codings are
// case-insensitive tokens (RFC 9110 8.4); x-gzip is gzip, identity is none. A
// list of more than one real coding, or an unknown one, is an error that
// says so: the body would need decoding in a way the collector does not.
func contentCoding(h http.Header) (string, error) {
	var codings []string
	for _, line := range h.Values("Content-Encoding") {
		for _, tok := range strings.Split(line, ",") {
			tok = strings.ToLower(strings.TrimSpace(tok))
			switch tok {
			case "", "identity":
				continue
			case "x-gzip":
				tok = "gzip"
			}
			codings = append(codings, tok)
		}
	}
	switch {
	case len(codings) == 0:
		return "", nil
	case len(codings) > 1:
		return "", fmt.Errorf("Content-Encoding %.100q lists %d codings: send one, gzip or none", strings.Join(h.Values("Content-Encoding"), ", "), len(codings))
	case codings[0] != "gzip":
		return "", fmt.Errorf("Content-Encoding %.100q is not supported: use gzip or none", codings[0])
	}
	return "gzip", nil
}
