package processor

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/schemas"
)

// arrowType maps a catalog kind to the Arrow type the store reads it as.
func arrowType(f *schemas.Field) arrow.DataType {
	switch f.Kind {
	case schemas.KindInt:
		return arrow.PrimitiveTypes.Int64
	case schemas.KindFloat:
		return arrow.PrimitiveTypes.Float64
	case schemas.KindBool:
		return arrow.FixedWidthTypes.Boolean
	case schemas.KindTime:
		return &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	default:
		return arrow.BinaryTypes.String
	}
}

// SchemaOf returns the Arrow schema of a log_type's rows: the catalog
// columns, then where each row came from in Kafka.
func SchemaOf(lt *schemas.LogType) *arrow.Schema {
	cols := lt.Columns()
	fields := make([]arrow.Field, 0, len(cols)+2)
	for i := range cols {
		fields = append(fields, arrow.Field{Name: cols[i].Name, Type: arrowType(&cols[i]), Nullable: cols[i].Nullable()})
	}
	fields = append(fields,
		arrow.Field{Name: schemas.ColKafkaPartition, Type: arrow.PrimitiveTypes.Uint32},
		arrow.Field{Name: schemas.ColKafkaOffset, Type: arrow.PrimitiveTypes.Int64})
	return arrow.NewSchema(fields, nil)
}

// rowBuilder accumulates cleaned events of one log_type into Arrow columns.
type rowBuilder struct {
	lt   *schemas.LogType
	cols []schemas.Field
	b    *array.RecordBuilder
}

func newRowBuilder(lt *schemas.LogType) *rowBuilder {
	return &rowBuilder{lt: lt, cols: lt.Columns(), b: array.NewRecordBuilder(memory.DefaultAllocator, SchemaOf(lt))}
}

// Append adds one event. Unset values are null in nullable columns and the
// zero value (empty string, 0) elsewhere; sample_rate defaults to 1.
func (rb *rowBuilder) Append(ev *schemas.Event, partition int32, offset int64) {
	for i := range rb.cols {
		f := &rb.cols[i]
		v := &ev.Vals[i]
		fb := rb.b.Field(i)
		if !v.Set && f.Nullable() {
			fb.AppendNull()
			continue
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
	n := len(rb.cols)
	rb.b.Field(n).(*array.Uint32Builder).Append(uint32(partition))
	rb.b.Field(n + 1).(*array.Int64Builder).Append(offset)
}

// Rows returns the number of rows appended since the last Build.
func (rb *rowBuilder) Rows() int { return rb.b.Field(0).Len() }

// Build returns the accumulated rows as one record and resets the builder.
func (rb *rowBuilder) Build() arrow.RecordBatch { return rb.b.NewRecordBatch() }
