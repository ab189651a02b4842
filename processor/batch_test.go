package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/lastmile-qoe/lastmile/internal/flatjson"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// Rows of different log_types interleave in one record: each row has its own
// values, nulls (numbers) or empty strings where its log_type lacks a column.
func TestRowBuilderMixesLogTypes(t *testing.T) {
	now := time.Now().UnixMilli()
	events := []string{
		fmt.Sprintf(`{"log_type":"first_frame","ts":%d,"device_id":"d1","session_id":"s1","total_ms":800,"server_ip":"1.2.3.4"}`, now),
		fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d2","session_id":"s2","buffer_ms":300}`, now),
		fmt.Sprintf(`{"log_type":"heartbeat","ts":%d,"device_id":"d3","session_id":"s3"}`, now),
		fmt.Sprintf(`{"log_type":"transcode","ts":%d,"stream_id":"live/x","status":"ok"}`, now),
		fmt.Sprintf(`{"log_type":"first_frame","ts":%d,"device_id":"d5","session_id":"s5","total_ms":900,"sample_rate":0.5}`, now),
	}
	rb := NewRowBuilder()
	var c schemas.Cleaner
	for i, js := range events {
		fs, _ := flatjson.ParseObject(nil, []byte(js))
		var ev schemas.Event
		if r := c.Clean(fs, &ev); r != nil {
			t.Fatal(r)
		}
		rb.Append(&ev, 1, int64(i))
	}
	rec := rb.Build()
	defer rec.Release()
	if rec.NumRows() != 5 {
		t.Fatalf("%d rows", rec.NumRows())
	}
	col := func(name string) any { return rec.Column(schemas.EventColumnIndex[name]) }
	total := col("total_ms").(*array.Int64)
	buf := col("buffer_ms").(*array.Int64)
	ip := col("server_ip").(*array.String)
	status := col("status").(*array.String)
	rate := col("sample_rate").(*array.Float64)
	trace := rec.Column(len(schemas.EventColumns)).(*array.String)
	checks := []struct {
		ok   bool
		what string
	}{
		{total.Value(0) == 800 && total.IsNull(1) && total.IsNull(2) && total.IsNull(3) && total.Value(4) == 900, "total_ms"},
		{buf.IsNull(0) && buf.Value(1) == 300 && buf.IsNull(2) && buf.IsNull(3) && buf.IsNull(4), "buffer_ms"},
		{ip.Value(0) == "1.2.3.4" && ip.Value(1) == "" && !ip.IsNull(1) && ip.Value(4) == "", "server_ip"},
		{status.Value(3) == "ok" && status.Value(0) == "" && status.Value(4) == "", "status"},
		{rate.Value(0) == 1 && rate.Value(4) == 0.5, "sample_rate"},
		{trace.Value(0) == "d1" && trace.Value(3) == "live/x", "trace_key"},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("column %s wrong", ch.what)
		}
	}
	for i := 0; i < int(rec.NumCols()); i++ {
		if rec.Column(i).Len() != 5 {
			t.Errorf("column %s has %d rows", rec.ColumnName(i), rec.Column(i).Len())
		}
	}
	// The builder is reusable after Build.
	fs, _ := flatjson.ParseObject(nil, []byte(events[1]))
	var ev schemas.Event
	c.Clean(fs, &ev)
	rb.Append(&ev, 0, 9)
	rec2 := rb.Build()
	defer rec2.Release()
	if rec2.NumRows() != 1 || rec2.Column(schemas.EventColumnIndex["total_ms"]).Len() != 1 {
		t.Fatalf("second record: %d rows", rec2.NumRows())
	}
}
