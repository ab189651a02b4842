package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

// A QoE-like event: 25 columns, ~500 bytes of payload per row.
const benchColumns = `
	event_time      DateTime64(3, 'UTC'),
	received_at     DateTime64(3, 'UTC'),
	event_type      LowCardinality(String),
	session_id      String,
	viewer_id       String,
	stream_id       LowCardinality(String),
	cdn             LowCardinality(String),
	country         LowCardinality(String),
	device          LowCardinality(String),
	os              LowCardinality(String),
	player_version  LowCardinality(String),
	user_agent      String,
	url             String,
	error_msg       String,
	seq             UInt64,
	bitrate_kbps    UInt32,
	buffer_ms       UInt32,
	startup_ms      UInt32,
	dropped_frames  UInt16,
	width           UInt16,
	height          UInt16,
	throughput_kbps Float64,
	rtt_ms          Float32,
	error_code      Int32,
	is_live         Bool`

const benchEngine = "MergeTree ORDER BY (stream_id, event_time) SETTINGS non_replicated_deduplication_window = 1000"

const benchRows = 100_000

var benchSchema = arrow.NewSchema([]arrow.Field{
	{Name: "event_time", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "received_at", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "event_type", Type: arrow.BinaryTypes.String},
	{Name: "session_id", Type: arrow.BinaryTypes.String},
	{Name: "viewer_id", Type: arrow.BinaryTypes.String},
	{Name: "stream_id", Type: arrow.BinaryTypes.String},
	{Name: "cdn", Type: arrow.BinaryTypes.String},
	{Name: "country", Type: arrow.BinaryTypes.String},
	{Name: "device", Type: arrow.BinaryTypes.String},
	{Name: "os", Type: arrow.BinaryTypes.String},
	{Name: "player_version", Type: arrow.BinaryTypes.String},
	{Name: "user_agent", Type: arrow.BinaryTypes.String},
	{Name: "url", Type: arrow.BinaryTypes.String},
	{Name: "error_msg", Type: arrow.BinaryTypes.String},
	{Name: "seq", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "bitrate_kbps", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "buffer_ms", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "startup_ms", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "dropped_frames", Type: arrow.PrimitiveTypes.Uint16},
	{Name: "width", Type: arrow.PrimitiveTypes.Uint16},
	{Name: "height", Type: arrow.PrimitiveTypes.Uint16},
	{Name: "throughput_kbps", Type: arrow.PrimitiveTypes.Float64},
	{Name: "rtt_ms", Type: arrow.PrimitiveTypes.Float32},
	{Name: "error_code", Type: arrow.PrimitiveTypes.Int32},
	{Name: "is_live", Type: arrow.FixedWidthTypes.Boolean},
}, nil)

// benchEvent is one generated row, kept as Go values so the Arrow batch and
// the NDJSON file hold exactly the same data.
type benchEvent struct {
	eventTime, receivedAt                        int64
	eventType, session, viewer, stream, cdn      string
	country, device, os, player, ua, url, errMsg string
	seq                                          uint64
	bitrate, buffer, startup                     uint32
	dropped, width, height                       uint16
	throughput                                   float64
	rtt                                          float32
	errCode                                      int32
	live                                         bool
}

func genEvents(n int) []benchEvent {
	pick := func(i int, xs ...string) string { return xs[i%len(xs)] }
	rng := uint64(42)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	evs := make([]benchEvent, n)
	for i := range evs {
		r := next()
		ri := int(r >> 1)
		evs[i] = benchEvent{
			eventTime:  base + int64(i)*3,
			receivedAt: base + int64(i)*3 + int64(r%500),
			eventType:  pick(ri, "heartbeat", "heartbeat", "heartbeat", "bitrate_change", "rebuffer_start", "rebuffer_end", "error", "start"),
			session:    fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", r>>32, r>>16&0xffff, r>>4&0xfff, r>>20&0xfff, next()>>16),
			viewer:     fmt.Sprintf("%016x%016x", next(), r),
			stream:     "live/channel-" + strconv.Itoa(ri%40),
			cdn:        pick(ri>>3, "cloudfront", "akamai", "fastly", "self"),
			country:    pick(ri>>5, "US", "DE", "BR", "IN", "JP", "FR", "GB", "NG"),
			device:     pick(ri>>7, "desktop", "mobile", "tv", "tablet"),
			os:         pick(ri>>9, "Windows", "macOS", "Android", "iOS", "Linux", "tvOS"),
			player:     pick(ri>>11, "lastmile-web/1.4.2", "lastmile-web/1.5.0", "lastmile-ios/2.0.1"),
			ua:         "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0." + strconv.Itoa(ri%9999) + ".0 Safari/537.36",
			url:        "https://edge-" + strconv.Itoa(ri%97) + ".cdn.example.net/live/channel-" + strconv.Itoa(ri%40) + "/1080p/segment_" + strconv.Itoa(i) + ".ts?token=" + strconv.FormatUint(next(), 36),
			errMsg:     pick(ri>>13, "", "", "", "", "", "", "", "MEDIA_ERR_NETWORK: segment fetch timed out after 4000ms"),
			seq:        uint64(i),
			bitrate:    uint32(800 + r%7200),
			buffer:     uint32(r % 30000),
			startup:    uint32(200 + r%3000),
			dropped:    uint16(r % 50),
			width:      1920,
			height:     1080,
			throughput: float64(r%100000) / 7,
			rtt:        float32(r%4000) / 10,
			errCode:    int32(r % 3),
			live:       r%4 != 0,
		}
	}
	return evs
}

func arrowBatch(evs []benchEvent) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, benchSchema)
	defer b.Release()
	for _, e := range evs {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(e.eventTime))
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(e.receivedAt))
		for j, s := range []string{e.eventType, e.session, e.viewer, e.stream, e.cdn, e.country, e.device, e.os, e.player, e.ua, e.url, e.errMsg} {
			b.Field(2 + j).(*array.StringBuilder).Append(s)
		}
		b.Field(14).(*array.Uint64Builder).Append(e.seq)
		b.Field(15).(*array.Uint32Builder).Append(e.bitrate)
		b.Field(16).(*array.Uint32Builder).Append(e.buffer)
		b.Field(17).(*array.Uint32Builder).Append(e.startup)
		b.Field(18).(*array.Uint16Builder).Append(e.dropped)
		b.Field(19).(*array.Uint16Builder).Append(e.width)
		b.Field(20).(*array.Uint16Builder).Append(e.height)
		b.Field(21).(*array.Float64Builder).Append(e.throughput)
		b.Field(22).(*array.Float32Builder).Append(e.rtt)
		b.Field(23).(*array.Int32Builder).Append(e.errCode)
		b.Field(24).(*array.BooleanBuilder).Append(e.live)
	}
	return b.NewRecordBatch()
}

// writeNDJSON writes evs as JSONEachRow; timestamps as ClickHouse text, as a
// producer emitting JSON would. Generated strings need no JSON escaping.
func writeNDJSON(path string, evs []benchEvent) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	var b []byte
	ts := func(b []byte, ms int64) []byte {
		return time.UnixMilli(ms).UTC().AppendFormat(b, `"2006-01-02 15:04:05.000"`)
	}
	str := func(b []byte, k, v string) []byte {
		b = append(b, `,"`...)
		b = append(b, k...)
		b = append(b, `":"`...)
		b = append(b, v...)
		return append(b, '"')
	}
	num := func(b []byte, k string, v uint64) []byte {
		b = append(b, `,"`...)
		b = append(b, k...)
		b = append(b, `":`...)
		return strconv.AppendUint(b, v, 10)
	}
	for _, e := range evs {
		b = append(b[:0], `{"event_time":`...)
		b = ts(b, e.eventTime)
		b = append(b, `,"received_at":`...)
		b = ts(b, e.receivedAt)
		b = str(b, "event_type", e.eventType)
		b = str(b, "session_id", e.session)
		b = str(b, "viewer_id", e.viewer)
		b = str(b, "stream_id", e.stream)
		b = str(b, "cdn", e.cdn)
		b = str(b, "country", e.country)
		b = str(b, "device", e.device)
		b = str(b, "os", e.os)
		b = str(b, "player_version", e.player)
		b = str(b, "user_agent", e.ua)
		b = str(b, "url", e.url)
		b = str(b, "error_msg", e.errMsg)
		b = num(b, "seq", e.seq)
		b = num(b, "bitrate_kbps", uint64(e.bitrate))
		b = num(b, "buffer_ms", uint64(e.buffer))
		b = num(b, "startup_ms", uint64(e.startup))
		b = num(b, "dropped_frames", uint64(e.dropped))
		b = num(b, "width", uint64(e.width))
		b = num(b, "height", uint64(e.height))
		b = append(b, `,"throughput_kbps":`...)
		b = strconv.AppendFloat(b, e.throughput, 'f', -1, 64)
		b = append(b, `,"rtt_ms":`...)
		b = strconv.AppendFloat(b, float64(e.rtt), 'f', -1, 32)
		b = append(b, `,"error_code":`...)
		b = strconv.AppendInt(b, int64(e.errCode), 10)
		b = append(b, `,"is_live":`...)
		b = strconv.AppendBool(b, e.live)
		b = append(b, "}\n"...)
		w.Write(b)
		n += int64(len(b))
	}
	return n, w.Flush()
}

func benchTable(b *testing.B, s store.Store, name string) {
	b.Helper()
	ctx := context.Background()
	if err := s.Exec(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
		b.Fatal(err)
	}
	if err := s.Exec(ctx, "CREATE TABLE "+name+" ("+benchColumns+") ENGINE = "+benchEngine); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Exec(ctx, "DROP TABLE IF EXISTS "+name) })
}

func checkCount(b *testing.B, s store.Store, table string, want int) {
	b.Helper()
	out, err := s.QueryJSON(context.Background(), "SELECT count() AS c FROM "+table)
	if err != nil {
		b.Fatal(err)
	}
	if got := fmt.Sprintf(`{"c":%d}`+"\n", want); string(out) != got {
		b.Fatalf("count = %s, want %s", out, got)
	}
}

// BenchmarkInsertArrow: one 100k-row batch per op through InsertArrow
// (IPC encode + temp file + INSERT ... SELECT FROM file(ArrowStream)).
//
//	go test -run '^$' -bench Insert -benchtime 20x ./internal/store/
func BenchmarkInsertArrow(b *testing.B) {
	s := needEmbedded(b)
	benchTable(b, s, "bench_arrow")
	rec := arrowBatch(genEvents(benchRows))
	defer rec.Release()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := s.InsertArrow(ctx, "bench_arrow", rec, "bench:0:"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
	b.StopTimer()
	checkCount(b, s, "bench_arrow", b.N*benchRows)
}

// BenchmarkInsertJSONEachRow: the same rows as NDJSON through
// store.InsertJSONEachRowFile; the file is written once, outside the timer.
func BenchmarkInsertJSONEachRow(b *testing.B) {
	s := needEmbedded(b)
	benchTable(b, s, "bench_json")
	path := filepath.Join(b.TempDir(), "events.ndjson")
	size, err := writeNDJSON(path, genEvents(benchRows))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/benchRows, "json-bytes/row")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := store.InsertJSONEachRowFile(ctx, s, "bench_json", path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
	b.StopTimer()
	checkCount(b, s, "bench_json", b.N*benchRows)
}
