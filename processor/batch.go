package processor

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// EventsSchema is the Arrow schema of the events table's rows: the catalog
// columns, the trace key, then where each row came from in Kafka.
var EventsSchema = func() *arrow.Schema {
	cols := schemas.EventColumns
	fields := make([]arrow.Field, 0, len(cols)+3)
	for i := range cols {
		fields = append(fields, arrow.Field{Name: cols[i].Name, Type: schemas.ArrowType(cols[i].Kind), Nullable: cols[i].Nullable()})
	}
	fields = append(fields,
		arrow.Field{Name: schemas.ColTraceKey, Type: arrow.BinaryTypes.String},
		arrow.Field{Name: schemas.ColKafkaPartition, Type: arrow.PrimitiveTypes.Uint32},
		arrow.Field{Name: schemas.ColKafkaOffset, Type: arrow.PrimitiveTypes.Int64})
	return arrow.NewSchema(fields, nil)
}()

// RowBuilder accumulates cleaned events of any log_type into the columns of
// the events table. A row has values in ~30 of ~110 columns; the columns it
// lacks are padded lazily, in bulk, when they next get a value or at Build,
// so a row costs its own columns, not all of them.
type RowBuilder struct {
	cols    []schemas.Field
	b       *array.RecordBuilder
	builder []array.Builder
	filled  []int // rows present in each catalog column
	rows    int
}

// NewRowBuilder returns an empty builder for rows of the events table.
func NewRowBuilder() *RowBuilder {
	b := array.NewRecordBuilder(memory.DefaultAllocator, EventsSchema)
	return &RowBuilder{cols: schemas.EventColumns, b: b, builder: b.Fields(), filled: make([]int, len(schemas.EventColumns))}
}

// Append adds one event. Columns its log_type lacks, and its unset values,
// are null in nullable columns and the zero value (empty string, 0)
// elsewhere; sample_rate defaults to 1.
func (rb *RowBuilder) Append(ev *schemas.Event, partition int32, offset int64) {
	wide := ev.Type.WideIndex()
	// Checked before any column is touched: a panic past this point would
	// leave half a row (see fetcher.addGuarded).
	if len(ev.Vals) != len(wide) {
		panic(fmt.Sprintf("processor: %s event with %d values, its type has %d columns", ev.Type.Name, len(ev.Vals), len(wide)))
	}
	for j := range ev.Vals {
		i := wide[j]
		rb.pad(i, rb.rows)
		rb.appendValue(i, &ev.Vals[j])
		rb.filled[i] = rb.rows + 1
	}
	n := len(rb.cols)
	rb.builder[n].(*array.StringBuilder).BinaryBuilder.Append(ev.Vals[ev.Type.TraceKeyCol()].S)
	rb.builder[n+1].(*array.Uint32Builder).Append(uint32(partition))
	rb.builder[n+2].(*array.Int64Builder).Append(offset)
	rb.rows++
}

// pad fills column i with "absent" up to row count rows.
func (rb *RowBuilder) pad(i, rows int) {
	gap := rows - rb.filled[i]
	if gap <= 0 {
		return
	}
	if rb.cols[i].Nullable() {
		rb.builder[i].AppendNulls(gap)
	} else {
		rb.builder[i].AppendEmptyValues(gap)
	}
	rb.filled[i] = rows
}

func (rb *RowBuilder) appendValue(i int, v *schemas.Value) {
	f := &rb.cols[i]
	fb := rb.builder[i]
	if !v.Set && f.Nullable() {
		fb.AppendNull()
		return
	}
	switch f.Kind {
	case schemas.KindString, schemas.KindDim:
		fb.(*array.StringBuilder).BinaryBuilder.Append(v.S)
	case schemas.KindInt:
		fb.(*array.Int64Builder).Append(v.I)
	case schemas.KindFloat:
		x := v.F
		if !v.Set && i == schemas.ColSampleRate {
			x = 1
		}
		fb.(*array.Float64Builder).Append(x)
	case schemas.KindBool:
		fb.(*array.BooleanBuilder).Append(v.B)
	case schemas.KindTime:
		fb.(*array.TimestampBuilder).Append(arrow.Timestamp(v.I))
	}
}

// consistent checks that every column holds whole rows only: a catalog
// column its filled count, the trailing ones the row count.
func (rb *RowBuilder) consistent() error {
	for i, b := range rb.builder {
		want := rb.rows
		if i < len(rb.filled) {
			want = rb.filled[i]
		}
		if b.Len() != want {
			return fmt.Errorf("events column %s holds %d values, want %d", EventsSchema.Field(i).Name, b.Len(), want)
		}
	}
	return nil
}

// Rows returns the number of rows appended since the last Build.
func (rb *RowBuilder) Rows() int { return rb.rows }

// Build returns the accumulated rows as one record and resets the builder.
func (rb *RowBuilder) Build() arrow.RecordBatch {
	for i := range rb.cols {
		rb.pad(i, rb.rows)
	}
	clear(rb.filled)
	rb.rows = 0
	return rb.b.NewRecordBatch()
}
