package e2e

import (
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// genEvent appends a valid event of log_type lt with event_id "ev-<n>" for
// device "dev-<device>", filling every catalog field with a valid value, so
// the generator follows the catalog as it grows.
func genEvent(dst []byte, lt *schemas.LogType, n int64, device int, ts int64) []byte {
	dst = append(dst, `{"event_id":"ev-`...)
	dst = strconv.AppendInt(dst, n, 10)
	dst = append(dst, `","log_type":"`...)
	dst = append(dst, lt.Name...)
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dev := strconv.Itoa(device)
	for _, f := range lt.Columns() {
		switch f.Name {
		case "event_id", "log_type", "ts", "app_id", "received_at", "sample_rate", "source":
			continue
		case "device_id":
			dst = append(dst, `,"device_id":"dev-`+dev+`"`...)
			continue
		case "session_id":
			dst = append(dst, `,"session_id":"sess-`+dev+`-`+strconv.FormatInt(n%3, 10)+`"`...)
			continue
		case "user_id":
			dst = append(dst, `,"user_id":"user-`+dev+`"`...)
			continue
		case "stream_id":
			dst = append(dst, `,"stream_id":"live/room-`+strconv.Itoa(device%50)+`"`...)
			continue
		case "code":
			dst = append(dst, `,"code":0`...)
			continue
		case "first_frame_blocked":
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, f.Name...)
		dst = append(dst, '"', ':')
		switch f.Kind {
		case schemas.KindString, schemas.KindDim:
			v := f.Name + "-" + strconv.Itoa(device%7)
			if len(f.Enum) > 0 {
				v = f.Enum[len(f.Enum)-1]
			}
			dst = flatjson.AppendString(dst, v)
		case schemas.KindInt:
			v := int64(device%100) + 1
			if f.HasRange() && float64(v) > f.Max {
				v = int64(f.Max)
			}
			if f.HasRange() && float64(v) < f.Min {
				v = int64(f.Min)
			}
			dst = strconv.AppendInt(dst, v, 10)
		case schemas.KindFloat:
			dst = append(dst, "12.5"...)
		case schemas.KindBool:
			dst = strconv.AppendBool(dst, device%2 == 0)
		case schemas.KindTime:
			dst = strconv.AppendInt(dst, ts, 10)
		}
	}
	return append(dst, '}')
}

// malformation kinds: each yields exactly one rejected event with this code.
var malformations = []struct {
	code string
	make func(valid string, n int64) string
}{
	{schemas.ReasonInvalidJSON, func(v string, n int64) string { return v[:len(v)/2] }},
	{schemas.ReasonNotObject, func(v string, n int64) string { return `["ev-` + strconv.FormatInt(n, 10) + `"]` }},
	{schemas.ReasonUnknownLogType, func(v string, n int64) string {
		return strings.Replace(v, `"log_type":"`, `"log_type":"nope_`, 1)
	}},
	{schemas.ReasonMissingField, func(v string, n int64) string { return cutField(v, "ts") }},
	{schemas.ReasonWrongType, func(v string, n int64) string { return replaceField(v, "ts", `"yesterday"`) }},
	{schemas.ReasonOutOfRange, func(v string, n int64) string { return replaceField(v, "ts", `-5`) }},
	{schemas.ReasonTsOutOfWindow, func(v string, n int64) string {
		return replaceField(v, "ts", strconv.FormatInt(time.Now().Add(30*24*time.Hour).UnixMilli(), 10))
	}},
	{schemas.ReasonTooLong, func(v string, n int64) string {
		return replaceField(v, "region", `"`+strings.Repeat("r", 100)+`"`)
	}},
	{schemas.ReasonNotAllowed, func(v string, n int64) string { return replaceField(v, "source", `"alien"`) }},
}

// cutField removes "name":value from a flat event.
func cutField(v, name string) string {
	fs, _ := flatjson.ParseObject(nil, []byte(v))
	var b []byte
	b = append(b, '{')
	first := true
	for _, f := range fs {
		if string(f.Key) == name {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, f.Key...)
		b = append(b, `":`...)
		b = append(b, f.Raw...)
	}
	return string(append(b, '}'))
}

// replaceField sets "name" to raw, adding it when absent.
func replaceField(v, name, raw string) string {
	return strings.TrimSuffix(cutField(v, name), "}") + `,"` + name + `":` + raw + `}`
}
