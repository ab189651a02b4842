package trace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
)

// Event is one stored event in a trace: its time, its log_type and its
// other non-empty columns in catalog order. Values stay the JSON the store
// printed, so an event passes through without being re-typed.
type Event struct {
	TS      time.Time
	LogType string
	Fields  []Field
}

// Field is one column of an event.
type Field struct {
	Name  string
	Value json.RawMessage
}

// traceHidden are columns left out of an event's JSON because they repeat on
// every row (app_id is on the session, source on the list the event is in)
// or are pipeline bookkeeping. The Arrow output keeps them.
func traceHidden(f *Field) bool {
	switch f.Name {
	case "app_id", "source", "received_at":
		return true
	case "sample_rate":
		return string(f.Value) == "1"
	}
	return false
}

// MarshalJSON writes {"ts":…,"log_type":…, then the fields in catalog order}.
func (e Event) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 64+32*len(e.Fields))
	b = append(b, `{"ts":"`...)
	b = e.TS.UTC().AppendFormat(b, traceTimeFormat)
	b = append(b, `","log_type":`...)
	b = flatjson.AppendString(b, e.LogType)
	for i := range e.Fields {
		f := &e.Fields[i]
		if traceHidden(f) {
			continue
		}
		b = append(b, ',')
		b = flatjson.AppendString(b, f.Name)
		b = append(b, ':')
		b = append(b, f.Value...)
	}
	return append(b, '}'), nil
}

// traceTimeFormat is RFC 3339 with milliseconds, the store's precision.
const traceTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// UnmarshalJSON reads what MarshalJSON wrote, keeping the field order (the
// CLI prints fields in it).
func (e *Event) UnmarshalJSON(b []byte) error {
	fields, err := decodeOrdered(b)
	if err != nil {
		return err
	}
	*e = Event{}
	for _, f := range fields {
		switch f.Name {
		case "ts":
			var s string
			if err := json.Unmarshal(f.Value, &s); err != nil {
				return fmt.Errorf("event ts: %w", err)
			}
			if e.TS, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Errorf("event ts: %w", err)
			}
		case "log_type":
			if err := json.Unmarshal(f.Value, &e.LogType); err != nil {
				return fmt.Errorf("event log_type: %w", err)
			}
		default:
			e.Fields = append(e.Fields, f)
		}
	}
	return nil
}

// decodeOrdered splits a flat JSON object into its fields, in order.
func decodeOrdered(b []byte) ([]Field, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %.80q", b)
	}
	var out []Field
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
		out = append(out, Field{Name: name, Value: v})
	}
	return out, nil
}

// Get returns a field's raw value, nil when the event does not have it.
func (e *Event) Get(name string) json.RawMessage {
	for i := range e.Fields {
		if e.Fields[i].Name == name {
			return e.Fields[i].Value
		}
	}
	return nil
}

// Str returns a string field, "" when absent.
func (e *Event) Str(name string) string {
	v := e.Get(name)
	if len(v) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return string(v) // a number or bool: its text
	}
	return s
}

// Int returns a whole-number field; ok is false when absent or not a number.
// The store may quote 64-bit integers, so quoted numbers are read too.
func (e *Event) Int(name string) (n int64, ok bool) {
	v := bytes.Trim(e.Get(name), `"`)
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(v), 64)
		if ferr != nil {
			return 0, false
		}
		n = int64(f)
	}
	return n, true
}

// Float returns a number field; ok is false when absent or not a number.
func (e *Event) Float(name string) (float64, bool) {
	v := bytes.Trim(e.Get(name), `"`)
	if len(v) == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil
}

// Bool returns a boolean field; ok is false when absent.
func (e *Event) Bool(name string) (b, ok bool) {
	switch string(bytes.Trim(e.Get(name), `"`)) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}
