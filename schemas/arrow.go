package schemas

import "github.com/apache/arrow-go/v18/arrow"

// ArrowType is the Arrow type of a field kind: how the processor builds
// columns for the store and how the read API streams them out.
func ArrowType(k Kind) arrow.DataType {
	switch k {
	case KindInt:
		return arrow.PrimitiveTypes.Int64
	case KindFloat:
		return arrow.PrimitiveTypes.Float64
	case KindBool:
		return arrow.FixedWidthTypes.Boolean
	case KindTime:
		return &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	}
	return arrow.BinaryTypes.String
}
