package collector

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
)

// errTooManyEvents stops splitting a body with more events than allowed.
var errTooManyEvents = errors.New("too many events")

// splitBody appends to dst[:0] the span of each event of a request body, in
// order, and returns them. The format (docs/collector.md, "The body"):
//
//   - a Content-Type of NDJSON (application/x-ndjson and its aliases) says
//     lines, whatever the first line looks like;
//   - otherwise a body that is exactly one well-formed JSON array is an array,
//     and its elements are the events;
//   - otherwise the body is NDJSON when its first non-blank byte is '{' or
//     when at least one of its lines is a whole JSON object: each non-blank
//     line is an event, and a bad one is rejected alone by its index;
//   - anything else (a one-line array cut short, a multi-line array with a
//     syntax error and no whole-object line, bytes that are not JSON) is
//     refused whole with the returned *flatjson.SyntaxError.
//
// Spans are collected before any event is handled, so a body refused whole
// has counted nothing. More than max events return errTooManyEvents.
func splitBody(dst [][2]int, body []byte, contentType string, max int) ([][2]int, error) {
	dst = dst[:0]
	i := skipJSONSpace(body, 0)
	if i == len(body) {
		return dst, &flatjson.SyntaxError{Offset: i, Msg: "empty body"}
	}
	if isNDJSONType(contentType) || body[i] == '{' {
		return splitLines(dst, body, max)
	}
	var arrErr error
	if body[i] == '[' {
		_, arrErr = flatjson.SplitArray(body, func(elem []byte) error {
			if len(dst) >= max {
				return errTooManyEvents
			}
			dst = append(dst, spanOf(body, elem))
			return nil
		})
		if arrErr == nil || errors.Is(arrErr, errTooManyEvents) {
			return dst, arrErr
		}
		dst = dst[:0]
	}
	if hasObjectLine(body) {
		return splitLines(dst, body, max)
	}
	if arrErr != nil {
		return dst, arrErr
	}
	msg := fmt.Sprintf("body starts with %q and no line is a JSON object: expected a JSON array or NDJSON objects", body[i])
	if len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b {
		msg = "body is gzip-compressed but sent without Content-Encoding: gzip"
	}
	return dst, &flatjson.SyntaxError{Offset: i, Msg: msg}
}

// spanOf returns the offsets of sub, a subslice of b.
func spanOf(b, sub []byte) [2]int {
	start := cap(b) - cap(sub)
	return [2]int{start, start + len(sub)}
}

// splitLines appends the span of each non-blank line of NDJSON, without
// its surrounding JSON whitespace (so "\r\n" ends a line too).
func splitLines(dst [][2]int, body []byte, max int) ([][2]int, error) {
	for start := 0; start < len(body); {
		end := lineEnd(body, start)
		next := end + 1
		s := skipJSONSpace(body[:end], start)
		for end > s && isJSONSpace(body[end-1]) {
			end--
		}
		if end > s {
			if len(dst) >= max {
				return dst, errTooManyEvents
			}
			dst = append(dst, [2]int{s, end})
		}
		start = next
	}
	return dst, nil
}

// hasObjectLine reports whether some line of body is a whole JSON object,
// the mark of NDJSON. It stops at the first one.
func hasObjectLine(body []byte) bool {
	for start := 0; start < len(body); {
		end := lineEnd(body, start)
		if flatjson.IsObject(body[start:end]) {
			return true
		}
		start = end + 1
	}
	return false
}

// lineEnd returns the offset of the first newline at or after start, or
// len(body).
func lineEnd(body []byte, start int) int {
	if i := bytes.IndexByte(body[start:], '\n'); i >= 0 {
		return start + i
	}
	return len(body)
}

// isNDJSONType reports whether a Content-Type names newline-delimited JSON.
func isNDJSONType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl",
		"application/jsonlines", "application/x-jsonlines", "application/json-lines":
		return true
	}
	return false
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}
