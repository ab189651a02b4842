package trace

import (
	"io"
	"slices"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// ArrowMedia is what a client sends in Accept to get Arrow IPC.
const ArrowMedia = "application/vnd.apache.arrow.stream"

// ArrowSchema is the schema of the Arrow answer of /api/v1/trace: one
// row per event of each session — trace_session_id (the session the row is
// joined to), kind (client, server or stream), then every column of the
// events table in catalog order but source and received_at (ts as
// timestamp[ms, UTC]). A column an event lacks is null.
var ArrowSchema = func() *arrow.Schema {
	fields := []arrow.Field{
		{Name: "trace_session_id", Type: arrow.BinaryTypes.String},
		{Name: "kind", Type: arrow.BinaryTypes.String},
	}
	for _, f := range traceArrowColumns {
		fields = append(fields, arrow.Field{Name: f.Name, Type: schemas.ArrowType(f.Kind), Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}()

// traceArrowColumns are the event columns of the Arrow answer: those the
// trace reads.
var traceArrowColumns = func() []schemas.Field {
	var out []schemas.Field
	for _, f := range schemas.EventColumns {
		if f.Name != "source" && f.Name != "received_at" {
			out = append(out, f)
		}
	}
	return out
}()

// traceArrowBatch is how many rows go into one record batch.
const traceArrowBatch = 8192

// WriteArrow writes the sessions' events as an Arrow IPC stream, each
// session's client, server and stream events interleaved in time order. The
// next page's cursor is in the schema metadata (next_cursor) as well as in
// the X-Lastmile-Next-Cursor header.
func WriteArrow(w io.Writer, res *Response) error {
	schema := ArrowSchema
	if res.NextCursor != "" || res.Truncated {
		md := arrow.NewMetadata([]string{"next_cursor", "truncated"}, []string{res.NextCursor, strconv.FormatBool(res.Truncated)})
		schema = arrow.NewSchema(schema.Fields(), &md)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	iw := ipc.NewWriter(w, ipc.WithSchema(schema))
	flush := func() error {
		rec := b.NewRecordBatch()
		defer rec.Release()
		return iw.Write(rec)
	}
	cols := traceArrowColumns
	rows := 0
	for i := range res.Sessions {
		s := &res.Sessions[i]
		for _, r := range flatTraceSession(s) {
			b.Field(0).(*array.StringBuilder).Append(s.SessionID)
			b.Field(1).(*array.StringBuilder).Append(r.kind)
			appendTraceArrowRow(b, cols, r.ev)
			if rows++; rows%traceArrowBatch == 0 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if rows == 0 || rows%traceArrowBatch != 0 {
		if err := flush(); err != nil {
			return err
		}
	}
	return iw.Close()
}

type traceKindEvent struct {
	kind string
	ev   *Event
}

// flatTraceSession interleaves a session's three lists by time; at the same
// millisecond client events come first, then server, then stream.
func flatTraceSession(s *Session) []traceKindEvent {
	out := make([]traceKindEvent, 0, len(s.Events)+len(s.ServerEvents)+len(s.StreamEvents))
	for _, l := range []struct {
		kind string
		evs  []Event
	}{{"client", s.Events}, {"server", s.ServerEvents}, {"stream", s.StreamEvents}} {
		for i := range l.evs {
			out = append(out, traceKindEvent{l.kind, &l.evs[i]})
		}
	}
	slices.SortStableFunc(out, func(a, b traceKindEvent) int { return a.ev.TS.Compare(b.ev.TS) })
	return out
}

// appendTraceArrowRow appends one event; columns come after the two leading
// ones, in EventColumns order.
func appendTraceArrowRow(b *array.RecordBuilder, cols []schemas.Field, e *Event) {
	// Both lists are in catalog order: walk them together.
	j := 0
	for i := range cols {
		fb := b.Field(i + 2)
		name := cols[i].Name
		var raw []byte
		switch name {
		case "ts":
			fb.(*array.TimestampBuilder).Append(arrow.Timestamp(e.TS.UnixMilli()))
			continue
		case "log_type":
			fb.(*array.StringBuilder).Append(e.LogType)
			continue
		}
		for k := j; k < len(e.Fields); k++ {
			if e.Fields[k].Name == name {
				raw, j = e.Fields[k].Value, k+1
				break
			}
		}
		if raw == nil {
			fb.AppendNull()
			continue
		}
		ev := Event{Fields: []Field{{Name: name, Value: raw}}}
		switch cols[i].Kind {
		case schemas.KindInt:
			if n, ok := ev.Int(name); ok {
				fb.(*array.Int64Builder).Append(n)
				continue
			}
		case schemas.KindFloat:
			if f, ok := ev.Float(name); ok {
				fb.(*array.Float64Builder).Append(f)
				continue
			}
		case schemas.KindBool:
			if v, ok := ev.Bool(name); ok {
				fb.(*array.BooleanBuilder).Append(v)
				continue
			}
		case schemas.KindTime:
			if n, ok := ev.Int(name); ok {
				fb.(*array.TimestampBuilder).Append(arrow.Timestamp(n))
				continue
			}
		default:
			fb.(*array.StringBuilder).Append(ev.Str(name))
			continue
		}
		fb.AppendNull()
	}
}
