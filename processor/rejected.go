package processor

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/internal/textclip"
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

// Bounds of a rejected row's strings. The dead-letter topic is written by the
// collector and the processor, which bound what they write, but anyone who
// can reach the broker can write to it too.
const (
	maxRejectedRaw    = 16 << 10 // as the collector's DefaultMaxRawRejected
	maxRejectedReason = 4 << 10
	maxRejectedString = schemas.DefaultMaxLen // ids, codes, field names
	// A received_at outside [now-rejectedMaxAge, now+rejectedMaxAhead] is
	// replaced by now: the table is partitioned by day, and an insert
	// spanning over 100 partitions fails, which would stall every later
	// batch. Records older than the table's TTL are dropped anyway.
	rejectedMaxAge   = 60 * 24 * time.Hour
	rejectedMaxAhead = 24 * time.Hour
)

// rejectedBuilder turns dead-letter records into rows of the rejected table.
// The volume is low (malformed input), so encoding/json is fine here.
type rejectedBuilder struct {
	b   *array.RecordBuilder
	now func() time.Time
}

func newRejectedBuilder() *rejectedBuilder {
	return &rejectedBuilder{b: array.NewRecordBuilder(memory.DefaultAllocator, rejectedSchema), now: time.Now}
}

// rejectedRow is one row of the rejected table, as it will be stored.
type rejectedRow struct {
	receivedAt int64
	// app_id, log_type, device_id, user_id, session_id, stage, code,
	// field, reason, raw
	vals               [10]string
	eventIndex         int32
	requestID, eventID string
}

func (r *rejectedRow) appID() string { return r.vals[0] }

// Append adds one record; see parse and add.
func (rb *rejectedBuilder) Append(value []byte, partition int, offset int64) bool {
	r, ok := rb.parse(value)
	rb.add(&r, partition, offset)
	return ok
}

// parse reads one dead-letter record into the row it will be stored as; a
// record that is not valid (false) keeps its raw text with the reason, so
// nothing sent to the dead-letter topic disappears. Every string is valid
// UTF-8 and bounded (see the constants above).
func (rb *rejectedBuilder) parse(value []byte) (rejectedRow, bool) {
	var r schemas.RejectedRecord
	ok := true
	if err := json.Unmarshal(value, &r); err != nil {
		ok = false
		r = schemas.RejectedRecord{Stage: "processor", Code: schemas.ReasonInvalidJSON,
			Reason: "dead-letter record is not valid: " + err.Error(), Raw: string(value), EventIndex: -1}
	}
	now := rb.now()
	if t := time.UnixMilli(r.ReceivedAt); t.Before(now.Add(-rejectedMaxAge)) || t.After(now.Add(rejectedMaxAhead)) {
		r.ReceivedAt = now.UnixMilli()
	}
	if r.EventIndex < math.MinInt32 || r.EventIndex > math.MaxInt32 {
		r.EventIndex = -1
	}
	str := func(s string, max int) string { return textclip.Clip(s, max, "…[truncated]") }
	return rejectedRow{
		receivedAt: r.ReceivedAt,
		vals: [...]string{
			str(r.AppID, maxRejectedString), str(r.LogType, maxRejectedString), str(r.DeviceID, maxRejectedString),
			str(r.UserID, maxRejectedString), str(r.SessionID, maxRejectedString), str(r.Stage, maxRejectedString),
			str(r.Code, maxRejectedString), str(r.Field, maxRejectedString), str(r.Reason, maxRejectedReason),
			str(r.Raw, maxRejectedRaw),
		},
		eventIndex: int32(r.EventIndex),
		requestID:  str(r.RequestID, maxRejectedString),
		eventID:    str(r.EventID, maxRejectedString),
	}, ok
}

// add appends a parsed row. Every value is computed before the first
// column is appended, so a row is appended whole or not at all.
func (rb *rejectedBuilder) add(r *rejectedRow, partition int, offset int64) {
	rb.b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.receivedAt))
	for i, v := range r.vals {
		rb.b.Field(1 + i).(*array.StringBuilder).Append(v)
	}
	rb.b.Field(11).(*array.Int32Builder).Append(r.eventIndex)
	rb.b.Field(12).(*array.StringBuilder).Append(r.requestID)
	rb.b.Field(13).(*array.StringBuilder).Append(r.eventID)
	rb.b.Field(14).(*array.Uint32Builder).Append(uint32(partition))
	rb.b.Field(15).(*array.Int64Builder).Append(offset)
}

// consistent checks that every column holds the same rows.
func (rb *rejectedBuilder) consistent() error {
	n := rb.b.Field(0).Len()
	for i := 1; i < rejectedSchema.NumFields(); i++ {
		if m := rb.b.Field(i).Len(); m != n {
			return fmt.Errorf("rejected column %s holds %d values, want %d", rejectedSchema.Field(i).Name, m, n)
		}
	}
	return nil
}

func (rb *rejectedBuilder) Build() arrow.RecordBatch { return rb.b.NewRecordBatch() }
