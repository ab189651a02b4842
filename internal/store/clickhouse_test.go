package store_test

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// EnvClickHouseAddr names the server the integration test runs against,
// e.g. "localhost:9000" or "clickhouse://default:@localhost:9000/default".
const EnvClickHouseAddr = "LASTMILE_CLICKHOUSE_ADDR"

// TestClickHouseConformance runs the shared suite against a real server.
//
//	docker run -d -p 9000:9000 -e CLICKHOUSE_SKIP_USER_SETUP=1 clickhouse/clickhouse-server
//	LASTMILE_CLICKHOUSE_ADDR=localhost:9000 go test -run ClickHouse ./internal/store/
func TestClickHouseConformance(t *testing.T) {
	addr := os.Getenv(EnvClickHouseAddr)
	if addr == "" {
		t.Skipf("SKIPPED: no ClickHouse server; set %s=host:9000 (or clickhouse://user:pass@host:9000/db) to run the conformance suite against one", EnvClickHouseAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenClickHouse(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.Run(t, s)
}

func TestParseClickHouseAddr(t *testing.T) {
	o, err := store.ParseClickHouseAddr("clickhouse://u:p%40ss@ch1:9440/analytics")
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth.Username != "u" || o.Auth.Password != "p@ss" || o.Auth.Database != "analytics" || len(o.Addr) != 1 || o.Addr[0] != "ch1:9440" {
		t.Errorf("DSN parsed as %+v %v", o.Auth, o.Addr)
	}
	o, err = store.ParseClickHouseAddr("a:9000,b:9000")
	if err != nil || !reflect.DeepEqual(o.Addr, []string{"a:9000", "b:9000"}) {
		t.Errorf("plain list = %v, %v", o, err)
	}
	if _, err := store.ParseClickHouseAddr(""); err == nil {
		t.Error("empty address accepted")
	}
}

// TestClickHouseColumnsOffline checks without a server what the server test
// checks with one: every Arrow column of the conformance batch converts to a
// value clickhouse-go's own column type accepts, and reading those columns
// back through QueryJSON's encoder gives the bytes chDB prints.
func TestClickHouseColumnsOffline(t *testing.T) {
	types := map[string]string{}
	for line := range strings.SplitSeq(storetest.Columns, "\n") {
		line = strings.TrimSuffix(strings.TrimSpace(line), ",")
		name, typ, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		typ, _, _ = strings.Cut(strings.TrimSpace(typ), " DEFAULT ")
		types[name] = typ
	}

	rec := storetest.Batch(0)
	defer rec.Release()
	sc := &column.ServerContext{Timezone: time.UTC}
	cols := make([]column.Interface, rec.NumCols())
	for i, f := range rec.Schema().Fields() {
		typ := types[f.Name]
		col, err := column.Type(typ).Column(f.Name, sc)
		if err != nil {
			t.Fatalf("%s %s: %v", f.Name, typ, err)
		}
		v, err := store.ArrowToColumn(rec.Column(i), typ)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if _, err := col.Append(v); err != nil {
			t.Fatalf("%s: driver refused %T for %s: %v", f.Name, v, typ, err)
		}
		if col.Rows() != int(rec.NumRows()) {
			t.Fatalf("%s: %d rows appended, want %d", f.Name, col.Rows(), rec.NumRows())
		}
		// Through the wire encoding and back, as a server round trip would.
		var buf proto.Buffer
		cs, custom := col.(column.CustomSerialization)
		if custom {
			if err := cs.WriteStatePrefix(&buf); err != nil {
				t.Fatal(err)
			}
		}
		col.Encode(&buf)
		back, _ := column.Type(typ).Column(f.Name, sc)
		r := proto.NewReader(bytes.NewReader(buf.Buf))
		if custom {
			if err := back.(column.CustomSerialization).ReadStatePrefix(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := back.Decode(r, int(rec.NumRows())); err != nil {
			t.Fatalf("%s: decode: %v", f.Name, err)
		}
		cols[i] = back
	}

	for row := range int(rec.NumRows()) {
		var b []byte
		for i, col := range cols {
			if i == 0 {
				b = append(b, '{')
			} else {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, col.Name()...)
			b = append(b, `":`...)
			dest := reflect.New(col.ScanType())
			if err := col.ScanRow(dest.Interface(), row); err != nil {
				t.Fatalf("%s row %d: %v", col.Name(), row, err)
			}
			b = store.AppendJSONValue(b, string(col.Type()), dest.Elem())
		}
		b = append(b, `,"extra":"dflt"}`...) // the server fills the default
		if want := storetest.WantRows[row]; string(b) != want {
			t.Errorf("row %d:\n got %s\nwant %s", row, b, want)
		}
	}
}

func TestAppendJSONValueFloats(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0.1, "0.1"}, {1e20, "100000000000000000000"}, {1e-7, "1e-7"}, {-2.5e22, "-2.5e22"}, {0, "0"}} {
		if got := string(store.AppendJSONValue(nil, "Float64", reflect.ValueOf(c.v))); got != c.want {
			t.Errorf("%g: got %s, want %s (ClickHouse's text)", c.v, got, c.want)
		}
	}
}

// TestClickHouseSimpleAggregateColumns: trace_sessions' min/max columns are
// SimpleAggregateFunction(f, DateTime64(3)); an Arrow batch's timestamps go
// into them through the same conversion as into DateTime64, to the ms.
func TestClickHouseSimpleAggregateColumns(t *testing.T) {
	for _, typ := range []string{"SimpleAggregateFunction(min, DateTime64(3))", "SimpleAggregateFunction(max, DateTime64(3))"} {
		b := array.NewTimestampBuilder(memory.DefaultAllocator, &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"})
		b.Append(arrow.Timestamp(1795300000123))
		arr := b.NewArray()
		v, err := store.ArrowToColumn(arr, typ)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		col, err := column.Type(typ).Column("first_ts", &column.ServerContext{Timezone: time.UTC})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if _, err := col.Append(v); err != nil {
			t.Fatalf("%s: driver refused %T: %v", typ, v, err)
		}
		var got time.Time
		if err := col.ScanRow(&got, 0); err != nil || got.UnixMilli() != 1795300000123 {
			t.Errorf("%s: %v, %v", typ, got, err)
		}
		arr.Release()
	}
}
