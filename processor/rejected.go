package processor

import (
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/schemas"
)

var rejectedSchema = arrow.NewSchema([]arrow.Field{
	{Name: "received_at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
	{Name: "app_id", Type: arrow.BinaryTypes.String},
	{Name: "log_type", Type: arrow.BinaryTypes.String},
	{Name: "device_id", Type: arrow.BinaryTypes.String},
	{Name: "user_id", Type: arrow.BinaryTypes.String},
	{Name: "session_id", Type: arrow.BinaryTypes.String},
	{Name: "stage", Type: arrow.BinaryTypes.String},
	{Name: "code", Type: arrow.BinaryTypes.String},
	{Name: "field", Type: arrow.BinaryTypes.String},
	{Name: "reason", Type: arrow.BinaryTypes.String},
	{Name: "raw", Type: arrow.BinaryTypes.String},
	{Name: "event_index", Type: arrow.PrimitiveTypes.Int32},
	{Name: "request_id", Type: arrow.BinaryTypes.String},
	{Name: "event_id", Type: arrow.BinaryTypes.String},
	{Name: schemas.ColKafkaPartition, Type: arrow.PrimitiveTypes.Uint32},
	{Name: schemas.ColKafkaOffset, Type: arrow.PrimitiveTypes.Int64},
}, nil)

// rejectedBuilder turns dead-letter records into rows of the rejected table.
// The volume is low (malformed input), so encoding/json is fine here.
type rejectedBuilder struct {
	b *array.RecordBuilder
}

func newRejectedBuilder() *rejectedBuilder {
	return &rejectedBuilder{b: array.NewRecordBuilder(memory.DefaultAllocator, rejectedSchema)}
}

// Append adds one record; a record that is not valid keeps its raw text with
// the reason, so nothing sent to the dead-letter topic disappears.
func (rb *rejectedBuilder) Append(value []byte, partition int, offset int64) bool {
	var r schemas.RejectedRecord
	ok := true
	if err := json.Unmarshal(value, &r); err != nil {
		ok = false
		r = schemas.RejectedRecord{Stage: "processor", Code: schemas.ReasonInvalidJSON,
			Reason: "dead-letter record is not valid: " + err.Error(), Raw: string(value), EventIndex: -1}
	}
	str := func(i int, s string) { rb.b.Field(i).(*array.StringBuilder).Append(s) }
	rb.b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.ReceivedAt))
	str(1, r.AppID)
	str(2, r.LogType)
	str(3, r.DeviceID)
	str(4, r.UserID)
	str(5, r.SessionID)
	str(6, r.Stage)
	str(7, r.Code)
	str(8, r.Field)
	str(9, r.Reason)
	str(10, r.Raw)
	rb.b.Field(11).(*array.Int32Builder).Append(int32(r.EventIndex))
	str(12, r.RequestID)
	str(13, r.EventID)
	rb.b.Field(14).(*array.Uint32Builder).Append(uint32(partition))
	rb.b.Field(15).(*array.Int64Builder).Append(offset)
	return ok
}

func (rb *rejectedBuilder) Build() arrow.RecordBatch { return rb.b.NewRecordBatch() }
