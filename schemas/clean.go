package schemas

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
)

// Reason codes of a rejected event. They label metrics and the rejected table,
// so they are stable; the human text goes with them in Reject.Msg.
const (
	ReasonInvalidJSON    = "invalid_json"
	ReasonNotObject      = "not_object"
	ReasonUnknownLogType = "unknown_log_type"
	ReasonMissingField   = "missing_field"
	ReasonWrongType      = "wrong_type"
	ReasonOutOfRange     = "out_of_range"
	ReasonNotAllowed     = "not_allowed"
	ReasonTooLong        = "too_long"
	ReasonTsOutOfWindow  = "ts_out_of_window"
	// ReasonInternalError: handling the event panicked (a bug); the record's
	// reason holds the panic text.
	ReasonInternalError = "internal_error"
	// ReasonTooLarge: the event as stored is bigger than one Kafka record
	// may be (set by the collector, which knows the producer's limit).
	ReasonTooLarge = "too_large"
)

// Reject says why one event was refused.
type Reject struct {
	Code  string `json:"code"`
	Field string `json:"field,omitempty"`
	Msg   string `json:"reason"`
}

func (r *Reject) Error() string { return r.Msg }

func reject(code, field, format string, args ...any) *Reject {
	return &Reject{Code: code, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Value is one cleaned field value. Which member holds it follows the field's
// Kind: S for string and dim, I for int and time (ms), F for float, B for bool.
type Value struct {
	Set bool
	B   bool
	I   int64
	F   float64
	S   []byte
}

// Event is a cleaned event: one Value per column of its log_type's table, in
// the order of LogType.Columns().
type Event struct {
	Type *LogType
	Vals []Value
	// Unknown holds the names of fields not in the catalog, which are dropped.
	Unknown [][]byte
	buf     []byte
}

// Column positions shared by every log_type (Common then ServerFields).
var (
	ColEventID    = commonIndex("event_id")
	ColLogType    = commonIndex("log_type")
	ColTs         = commonIndex("ts")
	ColSource     = commonIndex("source")
	ColAppID      = commonIndex("app_id")
	ColDeviceID   = commonIndex("device_id")
	ColUserID     = commonIndex("user_id")
	ColSessionID  = commonIndex("session_id")
	ColStreamID   = commonIndex("stream_id")
	ColNodeID     = commonIndex("node_id")
	ColRendition  = commonIndex("rendition")
	ColReceivedAt = len(Common)
	ColSampleRate = len(Common) + 1
)

func commonIndex(name string) int {
	for i, f := range Common {
		if f.Name == name {
			return i
		}
	}
	panic("schemas: no common field " + name)
}

// Get returns the value of a column by name, and whether the log_type has it.
func (e *Event) Get(name string) (*Value, bool) {
	i, ok := e.Type.index[name]
	if !ok {
		return nil, false
	}
	return &e.Vals[i], true
}

// Str returns the string value of a column, "" when unset or absent.
func (e *Event) Str(col int) string { return string(e.Vals[col].S) }

// Cleaner validates and coerces events against the catalog. The zero value
// uses the default time window. A Cleaner is not safe for concurrent use (it
// learns field orders): copy the configured value, one per goroutine.
type Cleaner struct {
	// MaxPast and MaxFuture bound ts relative to Now. Defaults: 7 days, 1 hour.
	MaxPast, MaxFuture time.Duration
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// At, when not zero, is the current time for the ts window instead of
	// Now(): a caller cleaning a batch reads the clock once.
	At time.Time

	// order remembers, per log_type, which column the k-th field of the last
	// event was: senders keep their field order, so a guess confirmed by one
	// string comparison replaces a map lookup for most fields.
	order [][]int
	// col is the column of each field of the event being cleaned (or
	// colUnknown, colShadowed); seen marks columns already given.
	col  []int
	seen []bool
}

const (
	colUnknown  = -1 // not in the catalog: dropped
	colShadowed = -2 // a later copy of the same key wins
)

// Defaults of Cleaner's window.
const (
	DefaultMaxPast   = 7 * 24 * time.Hour
	DefaultMaxFuture = time.Hour
)

// Clean validates the fields of one event object into ev. Unknown fields are
// listed in ev.Unknown and otherwise ignored; when a key repeats, the last
// value wins. It returns nil when the event is valid.
//
// Coercions (documented in docs/events.md): numbers given as strings, whole
// numbers given as floats (rounded), booleans given as 0/1 or "true"/"false",
// scalars given for string fields (kept as their text), and ts given in
// seconds (values below 1e11) or as RFC 3339 text.
func (c *Cleaner) Clean(fields []flatjson.Field, ev *Event) *Reject {
	var lt *LogType
	for i := len(fields) - 1; i >= 0; i-- {
		f := &fields[i]
		if f.KeyIs("log_type") {
			if f.Kind != flatjson.String {
				return reject(ReasonWrongType, "log_type", "log_type must be a string, got %s", f.Kind)
			}
			ev.buf = f.AppendStr(ev.buf[:0])
			lt = LookupBytes(ev.buf)
			if lt == nil {
				return reject(ReasonUnknownLogType, "log_type", "unknown log_type %q", truncate(ev.buf, 64))
			}
			break
		}
	}
	if lt == nil {
		return reject(ReasonMissingField, "log_type", "missing required field log_type")
	}
	ev.Type = lt
	cols := lt.columns
	if cap(ev.Vals) < len(cols) {
		ev.Vals = make([]Value, len(cols))
	} else {
		ev.Vals = ev.Vals[:len(cols)]
		for i := range ev.Vals {
			ev.Vals[i] = Value{S: ev.Vals[i].S[:0]}
		}
	}
	ev.Unknown = ev.Unknown[:0]
	if c.order == nil {
		c.order = make([][]int, len(Catalog))
	}
	guess := c.order[lt.pos]
	for len(guess) < len(fields) {
		guess = append(guess, colUnknown)
	}
	c.col = c.col[:0]
	for i := range fields {
		f := &fields[i]
		idx := guess[i]
		if idx < 0 || f.KeyEscaped || string(f.Key) != cols[idx].Name {
			var ok bool
			if f.KeyEscaped {
				k, _ := flatjson.Unescape(nil, f.Key)
				idx, ok = lt.index[string(k)]
			} else {
				idx, ok = lt.index[string(f.Key)]
			}
			if !ok {
				idx = colUnknown
			}
			guess[i] = idx
		}
		c.col = append(c.col, idx)
	}
	c.order[lt.pos] = guess
	// When a key repeats, the last copy wins and earlier ones are ignored,
	// even invalid ones (docs/events.md): mark them before coercing.
	if cap(c.seen) < len(cols) {
		c.seen = make([]bool, len(cols))
	}
	c.seen = c.seen[:len(cols)]
	clear(c.seen)
	for i := len(c.col) - 1; i >= 0; i-- {
		if idx := c.col[i]; idx >= 0 {
			if c.seen[idx] {
				c.col[i] = colShadowed
			}
			c.seen[idx] = true
		}
	}
	for i := range fields {
		switch idx := c.col[i]; {
		case idx == colUnknown:
			ev.Unknown = append(ev.Unknown, fields[i].Key)
		case idx >= 0:
			if r := c.coerce(&cols[idx], &fields[i], &ev.Vals[idx]); r != nil {
				return r
			}
		}
	}
	for i := range cols {
		if cols[i].Required && !ev.Vals[i].Set {
			return reject(ReasonMissingField, cols[i].Name, "missing required field %s", cols[i].Name)
		}
	}
	for _, id := range lt.requiredIDs {
		if v := &ev.Vals[id]; !v.Set || len(v.S) == 0 {
			return reject(ReasonMissingField, cols[id].Name, "missing id %s: a %s event needs %s", cols[id].Name, lt.Name, lt.requiredIDNames)
		}
	}
	t := c.At
	if t.IsZero() {
		if c.Now != nil {
			t = c.Now()
		} else {
			t = time.Now()
		}
	}
	past, future := c.MaxPast, c.MaxFuture
	if past == 0 {
		past = DefaultMaxPast
	}
	if future == 0 {
		future = DefaultMaxFuture
	}
	ts := ev.Vals[ColTs].I
	if ts > t.Add(future).UnixMilli() {
		return reject(ReasonTsOutOfWindow, "ts", "ts %d is %s in the future (at most %s allowed)", ts,
			time.Duration(ts-t.UnixMilli())*time.Millisecond, future)
	}
	if ts < t.Add(-past).UnixMilli() {
		return reject(ReasonTsOutOfWindow, "ts", "ts %d is %s in the past (at most %s allowed)", ts,
			(time.Duration(t.UnixMilli()-ts) * time.Millisecond).Round(time.Second), past)
	}
	if !ev.Vals[ColSource].Set {
		ev.Vals[ColSource] = Value{Set: true, S: append(ev.Vals[ColSource].S[:0], lt.Source...)}
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func (c *Cleaner) coerce(fd *Field, f *flatjson.Field, v *Value) *Reject {
	if f.Kind == flatjson.Null {
		*v = Value{S: v.S[:0]}
		return nil
	}
	if f.Kind == flatjson.Object || f.Kind == flatjson.Array {
		return reject(ReasonWrongType, fd.Name, "%s must be a %s, got %s", fd.Name, fd.Kind.jsonName(), f.Kind)
	}
	switch fd.Kind {
	case KindString, KindDim:
		v.S = f.AppendStr(v.S[:0])
		max := fd.MaxLen
		if max == 0 {
			max = DefaultMaxLen
		}
		if len(v.S) > max {
			return reject(ReasonTooLong, fd.Name, "%s is %d bytes long, at most %d allowed", fd.Name, len(v.S), max)
		}
		// JSON text is UTF-8 (RFC 8259); stored bytes that are not would
		// make every JSON answer that returns them invalid.
		if !utf8.Valid(v.S) {
			return reject(ReasonInvalidJSON, fd.Name, "%s is not valid UTF-8", fd.Name)
		}
		if len(fd.Enum) > 0 && !inEnum(fd.Enum, v.S) {
			return reject(ReasonNotAllowed, fd.Name, "%s %q is not one of %q", fd.Name, truncate(v.S, 64), fd.Enum)
		}
		v.Set = true
		return nil
	case KindBool:
		b, ok := parseBool(f)
		if !ok {
			return reject(ReasonWrongType, fd.Name, "%s must be a boolean, got %s %s", fd.Name, f.Kind, truncate(f.Raw, 32))
		}
		v.B, v.Set = b, true
		return nil
	}
	// Numeric kinds.
	x, ok := parseNumber(f)
	if !ok {
		if fd.Kind == KindTime && f.Kind == flatjson.String {
			if t, err := time.Parse(time.RFC3339Nano, f.Str()); err == nil {
				// Held to the same range as a number (below).
				if ms := t.UnixMilli(); ms >= 0 && ms <= 1e14 {
					v.I, v.Set = ms, true
					return nil
				}
				return reject(ReasonOutOfRange, fd.Name, "%s %s is not a time in ms since the epoch", fd.Name, truncate(f.Raw, 40))
			}
		}
		return reject(ReasonWrongType, fd.Name, "%s must be a number, got %s %s", fd.Name, f.Kind, truncate(f.Raw, 32))
	}
	switch fd.Kind {
	case KindTime:
		if x < 1e11 && x > 0 { // seconds since epoch
			x *= 1000
		}
		if x < 0 || x > 1e14 {
			return reject(ReasonOutOfRange, fd.Name, "%s %v is not a time in ms since the epoch", fd.Name, x)
		}
		v.I, v.Set = int64(math.Round(x)), true
		return nil
	case KindInt:
		if fd.HasRange() && (x < fd.Min || x > fd.Max) {
			return rangeReject(fd, x)
		}
		// float64(math.MaxInt64) is 2^63, itself out of range.
		if x >= math.MaxInt64 || x < math.MinInt64 {
			return rangeReject(fd, x)
		}
		v.I, v.Set = int64(math.Round(x)), true
		return nil
	default: // KindFloat
		if fd.HasRange() && (x < fd.Min || x > fd.Max) {
			return rangeReject(fd, x)
		}
		v.F, v.Set = x, true
		return nil
	}
}

func rangeReject(fd *Field, x float64) *Reject {
	unit := ""
	if fd.Unit != "" {
		unit = " " + fd.Unit
	}
	return reject(ReasonOutOfRange, fd.Name, "%s %v%s is out of range [%v, %v]", fd.Name, x, unit, fd.Min, fd.Max)
}

func inEnum(enum []string, s []byte) bool {
	for _, e := range enum {
		if e == string(s) {
			return true
		}
	}
	return false
}

func parseBool(f *flatjson.Field) (bool, bool) {
	switch f.Kind {
	case flatjson.Bool:
		return f.Raw[0] == 't', true
	case flatjson.Number:
		switch string(f.Raw) {
		case "0":
			return false, true
		case "1":
			return true, true
		}
	case flatjson.String:
		switch string(f.Raw[1 : len(f.Raw)-1]) {
		case "true", "1":
			return true, true
		case "false", "0":
			return false, true
		}
	}
	return false, false
}

func parseNumber(f *flatjson.Field) (float64, bool) {
	raw := f.Raw
	switch f.Kind {
	case flatjson.Number:
	case flatjson.String:
		raw = raw[1 : len(raw)-1]
		if len(raw) == 0 || f.Escaped {
			return 0, false
		}
	default:
		return 0, false
	}
	// Fast path: plain integers, the common case, without strconv.
	if n, ok := parseInt(raw); ok {
		return float64(n), true
	}
	x, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, false
	}
	return x, true
}

func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func (k Kind) jsonName() string {
	switch k {
	case KindString, KindDim:
		return "string"
	case KindInt, KindFloat, KindTime:
		return "number"
	case KindBool:
		return "boolean"
	}
	return "value"
}
