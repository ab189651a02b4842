package schemas

import (
	"bytes"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
)

// validEvent is a valid event of lt at ts with every catalog field set, as an
// SDK or a media/ component sends it: the seeds follow the catalog.
func validEvent(lt *LogType, ts string) []byte {
	b := []byte(`{"log_type":"` + lt.Name + `","ts":` + ts)
	for _, f := range lt.Columns() {
		switch f.Name {
		case "log_type", "ts", "app_id", "received_at", "sample_rate":
			continue
		case "code":
			b = append(b, `,"code":0`...)
			continue
		}
		b = append(b, `,"`+f.Name+`":`...)
		switch f.Kind {
		case KindString, KindDim:
			v := f.Name + "-1"
			if len(f.Enum) > 0 {
				v = f.Enum[0]
			}
			b = flatjson.AppendString(b, v)
		case KindInt:
			b = strconv.AppendFloat(b, math.Max(f.Min, math.Min(f.Max, 42)), 'f', 0, 64)
		case KindFloat:
			b = append(b, "12.5"...)
		case KindBool:
			b = append(b, "true"...)
		case KindTime:
			b = append(b, ts...)
		}
	}
	return append(b, '}')
}

// Reason codes Clean may answer; anything else would be a new, undocumented
// label of the rejected metric and table.
var reasonCodes = map[string]bool{
	ReasonUnknownLogType: true, ReasonMissingField: true, ReasonWrongType: true, ReasonOutOfRange: true,
	ReasonNotAllowed: true, ReasonTooLong: true, ReasonTsOutOfWindow: true,
	ReasonInvalidJSON: true, // a string value that is not UTF-8
}

// FuzzClean: validation and coercion of any flat object never panics; a
// refusal has a documented code; a repeated key behaves exactly as if only its
// last copy were sent; and an accepted event, written back as JSON from its
// cleaned values, parses and cleans to the same values (coercion is stable).
func FuzzClean(f *testing.F) {
	for i := range Catalog {
		f.Add(validEvent(&Catalog[i], nowMs))
	}
	for _, s := range []string{
		`{"log_type":"first_frame","ts":` + nowMs + `,"device_id":"d1","session_id":"s1","total_ms":"812.6","dns_ms":12,"edge_cached":1,"extra":{"x":1},"region":"north"}`,
		`{"log_type":"first_frame","ts":` + nowMs + `,"device_id":"d1","session_id":"s1","total_ms":800,"dns_ms":"abc","dns_ms":12}`,
		`{"log_type":"first_frame","ts":` + nowMs + `,"device_id":"d1","session_id":"s1","total_ms":800,"dns_ms":12,"dns_ms":"abc"}`,
		`{"log_type":"heartbeat","ts":"2026-11-21T12:00:00Z","device_id":"d","session_id":"s","log_type":"stall"}`,
		`{"log_type":"heartbeat","ts":1795262400.5,"device_id":"d","session_id":"s","\u0074s":null}`,
		`{"log_type":"play_stop","ts":` + nowMs + `,"device_id":"d","session_id":"s","code":"-1e9","first_frame_blocked":"dns"}`,
		`{"log_type":"edge_access","ts":` + nowMs + `,"stream_id":"live/1","bytes":1e15,"cache_hit":"false"}`,
		`{"log_type":"transcode","ts":` + nowMs + `,"stream_id":"live/r1","fps":"NaN","bitrate_kbps":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fields, err := flatjson.ParseObject(nil, in)
		if err != nil {
			return
		}
		c := Cleaner{Now: func() time.Time { return now }}
		var ev Event
		rej := c.Clean(fields, &ev)

		// The same object with only the last copy of each key.
		last := map[string]int{}
		for i := range fields {
			last[keyOf(&fields[i])] = i
		}
		var uniq []flatjson.Field
		for i := range fields {
			if last[keyOf(&fields[i])] == i {
				uniq = append(uniq, fields[i])
			}
		}
		var ev2 Event
		rej2 := (&Cleaner{Now: func() time.Time { return now }}).Clean(uniq, &ev2)
		if (rej == nil) != (rej2 == nil) || (rej != nil && *rej != *rej2) {
			t.Fatalf("repeated keys: %v, but with only the last copies: %v\n%s", rej, rej2, in)
		}

		if rej != nil {
			if !reasonCodes[rej.Code] || rej.Msg == "" {
				t.Fatalf("reject %+v: undocumented code or no reason", rej)
			}
			return
		}
		if !sameVals(&ev, &ev2) {
			t.Fatalf("repeated keys change the values:\n%+v\n%+v", ev.Vals, ev2.Vals)
		}
		out := encodeEvent(nil, &ev)
		fields2, err := flatjson.ParseObject(nil, out)
		if err != nil {
			t.Fatalf("encoded event does not parse: %v\n%s", err, out)
		}
		var ev3 Event
		if rej := c.Clean(fields2, &ev3); rej != nil {
			t.Fatalf("encoded event refused: %v\nin:  %s\nout: %s", rej, in, out)
		}
		if !sameVals(&ev, &ev3) {
			t.Fatalf("cleaning is not stable:\nin:  %s\nout: %s\n%+v\n%+v", in, out, ev.Vals, ev3.Vals)
		}
	})
}

func keyOf(f *flatjson.Field) string {
	if f.KeyEscaped {
		k, _ := flatjson.Unescape(nil, f.Key)
		return string(k)
	}
	return string(f.Key)
}

// encodeEvent writes the set values of ev as a JSON object, times as RFC 3339
// text (unambiguous, unlike small numbers, which Clean takes as seconds).
func encodeEvent(b []byte, ev *Event) []byte {
	b = append(b, '{')
	cols := ev.Type.Columns()
	for i, v := range ev.Vals {
		if !v.Set {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = flatjson.AppendString(b, cols[i].Name)
		b = append(b, ':')
		switch cols[i].Kind {
		case KindString, KindDim:
			b = flatjson.AppendString(b, string(v.S))
		case KindBool:
			b = strconv.AppendBool(b, v.B)
		case KindInt:
			b = strconv.AppendInt(b, v.I, 10)
		case KindFloat:
			b = strconv.AppendFloat(b, v.F, 'g', -1, 64)
		case KindTime:
			b = flatjson.AppendString(b, time.UnixMilli(v.I).UTC().Format(time.RFC3339Nano))
		}
	}
	return append(b, '}')
}

func sameVals(a, b *Event) bool {
	if a.Type != b.Type || len(a.Vals) != len(b.Vals) {
		return false
	}
	for i := range a.Vals {
		x, y := a.Vals[i], b.Vals[i]
		if x.Set != y.Set {
			return false
		}
		if !x.Set {
			continue
		}
		switch a.Type.Columns()[i].Kind {
		case KindString, KindDim:
			if !bytes.Equal(x.S, y.S) {
				return false
			}
		case KindBool:
			if x.B != y.B {
				return false
			}
		case KindInt, KindTime:
			if x.I != y.I {
				return false
			}
		case KindFloat:
			if x.F != y.F {
				return false
			}
		}
	}
	return true
}
