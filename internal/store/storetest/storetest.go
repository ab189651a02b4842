// Package storetest is the conformance suite every store.Store backend runs,
// so the embedded chDB engine and a ClickHouse server are held to the same
// behaviour: DDL through Exec, typed Arrow inserts with deduplication tokens,
// and byte-identical JSONEachRow output.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

// Columns is the test table: every column type the pipeline writes.
// extra is absent from the Arrow batch and must get its default.
const Columns = `
	id     UInt64,
	name   String,
	lc     LowCardinality(String),
	u8     UInt8,
	u16    UInt16,
	u32    UInt32,
	i32    Int32,
	i64    Int64,
	f32    Float32,
	f64    Float64,
	ts     DateTime64(3, 'UTC'),
	ok     Bool,
	flag   UInt8,
	n      Nullable(Int32),
	extra  String DEFAULT 'dflt'`

// Engines the dedup semantics are checked on. Non-replicated tables only
// deduplicate with a window; the pipeline's DDL must set it.
var Engines = []string{
	"MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
	"ReplacingMergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
}

// Schema is the Arrow schema of Batch.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "name", Type: arrow.BinaryTypes.String},
	{Name: "lc", Type: arrow.BinaryTypes.String},
	{Name: "u8", Type: arrow.PrimitiveTypes.Uint8},
	{Name: "u16", Type: arrow.PrimitiveTypes.Uint16},
	{Name: "u32", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32},
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64},
	{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "ok", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "flag", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
}, nil)

// Batch builds the 3-row test batch: ids base+1, base+2 and MaxUint64-base.
func Batch(base uint64) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, Schema)
	defer b.Release()
	b.Field(0).(*array.Uint64Builder).AppendValues([]uint64{base + 1, base + 2, 18446744073709551615 - base}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"plain", "quote \" slash / back \\ tab\t nl\n", "unicode é ✓ 'x'"}, nil)
	b.Field(2).(*array.StringBuilder).AppendValues([]string{"a", "b", "a"}, nil)
	b.Field(3).(*array.Uint8Builder).AppendValues([]uint8{0, 255, 7}, nil)
	b.Field(4).(*array.Uint16Builder).AppendValues([]uint16{0, 65535, 8}, nil)
	b.Field(5).(*array.Uint32Builder).AppendValues([]uint32{0, 4294967295, 9}, nil)
	b.Field(6).(*array.Int32Builder).AppendValues([]int32{-2147483648, 2147483647, 0}, nil)
	b.Field(7).(*array.Int64Builder).AppendValues([]int64{-9223372036854775808, 9223372036854775807, -1}, nil)
	b.Field(8).(*array.Float32Builder).AppendValues([]float32{1.5, -0.25, 0}, nil)
	b.Field(9).(*array.Float64Builder).AppendValues([]float64{0.1, -2.5, 12345.678}, nil)
	b.Field(10).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1700000000123, 0, 1700000000999}, nil)
	b.Field(11).(*array.BooleanBuilder).AppendValues([]bool{true, false, true}, nil)
	b.Field(12).(*array.BooleanBuilder).AppendValues([]bool{true, false, true}, nil)
	b.Field(13).(*array.Int32Builder).AppendValues([]int32{5, 0, -5}, []bool{true, false, true})
	return b.NewRecordBatch()
}

// WantRows is the JSONEachRow ClickHouse 26.x prints for
// SELECT * after inserting Batch(0), with default settings (64-bit integers
// unquoted, forward slashes escaped).
var WantRows = []string{
	`{"id":1,"name":"plain","lc":"a","u8":0,"u16":0,"u32":0,"i32":-2147483648,"i64":-9223372036854775808,"f32":1.5,"f64":0.1,"ts":"2023-11-14 22:13:20.123","ok":true,"flag":1,"n":5,"extra":"dflt"}`,
	`{"id":2,"name":"quote \" slash \/ back \\ tab\t nl\n","lc":"b","u8":255,"u16":65535,"u32":4294967295,"i32":2147483647,"i64":9223372036854775807,"f32":-0.25,"f64":-2.5,"ts":"1970-01-01 00:00:00.000","ok":false,"flag":0,"n":null,"extra":"dflt"}`,
	`{"id":18446744073709551615,"name":"unicode é ✓ 'x'","lc":"a","u8":7,"u16":8,"u32":9,"i32":0,"i64":-1,"f32":0,"f64":12345.678,"ts":"2023-11-14 22:13:20.999","ok":true,"flag":1,"n":-5,"extra":"dflt"}`,
}

// Run checks s against the contract of store.Store. It creates and drops its
// own uniquely named tables, so it can run against a shared server.
func Run(t *testing.T, s store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("storetest_%d", time.Now().UnixNano())

	t.Run("ExecErrors", func(t *testing.T) {
		if err := s.Exec(ctx, "CREATE TABLE ((("); err == nil {
			t.Fatal("Exec of invalid SQL returned no error")
		}
		_, err := s.QueryJSON(ctx, "SELECT * FROM "+prefix+"_missing")
		if err == nil {
			t.Fatal("QueryJSON on a missing table returned no error")
		}
		// The engine's own message names the table, whatever its wording.
		if !strings.Contains(err.Error(), prefix+"_missing") {
			t.Errorf("error lacks the engine's text: %v", err)
		}
	})

	for i, engine := range Engines {
		table := fmt.Sprintf("%s_%d", prefix, i)
		t.Run(strings.Fields(engine)[0], func(t *testing.T) {
			mustExec(ctx, t, s, "CREATE TABLE "+store.QuoteIdent(table)+" ("+Columns+") ENGINE = "+engine)
			t.Cleanup(func() { _ = s.Exec(context.Background(), "DROP TABLE IF EXISTS "+store.QuoteIdent(table)) })
			// A background merge of ReplacingMergeTree would fold the
			// deliberate duplicates and make the counts below flaky.
			mustExec(ctx, t, s, "SYSTEM STOP MERGES "+store.QuoteIdent(table))
			checkInsertDedup(ctx, t, s, table)
		})
	}

	t.Run("EmptyAndConcurrent", func(t *testing.T) {
		table := prefix + "_conc"
		mustExec(ctx, t, s, "CREATE TABLE "+store.QuoteIdent(table)+" ("+Columns+") ENGINE = "+Engines[0])
		t.Cleanup(func() { _ = s.Exec(context.Background(), "DROP TABLE IF EXISTS "+store.QuoteIdent(table)) })

		out, err := s.QueryJSON(ctx, "SELECT * FROM "+store.QuoteIdent(table))
		if err != nil || len(out) != 0 {
			t.Fatalf("empty SELECT = %q, %v; want no bytes", out, err)
		}
		empty := array.NewRecordBuilder(memory.DefaultAllocator, Schema).NewRecordBatch()
		if err := s.InsertArrow(ctx, table, empty, "empty"); err != nil {
			t.Fatalf("empty batch: %v", err)
		}

		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 8 {
			wg.Go(func() {
				rec := Batch(uint64(g) * 10)
				defer rec.Release()
				if err := s.InsertArrow(ctx, table, rec, fmt.Sprintf("conc:%d", g)); err != nil {
					errs <- err
				}
				if _, err := s.QueryJSON(ctx, "SELECT count() FROM "+store.QuoteIdent(table)); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := count(ctx, t, s, table); got != 24 {
			t.Errorf("after 8 concurrent inserts count = %d, want 24", got)
		}
	})
}

func checkInsertDedup(ctx context.Context, t *testing.T, s store.Store, table string) {
	rec := Batch(0)
	defer rec.Release()
	q := store.QuoteIdent(table)

	steps := []struct {
		token string
		want  int
	}{
		{"topic:3:100-200", 3},
		{"topic:3:100-200", 3}, // retried batch: no-op
		{"topic:3:200-300", 6}, // same rows, new token: inserted
		{`it's a \ "token" with ` + "`ticks`", 9},
		{`it's a \ "token" with ` + "`ticks`", 9},
	}
	for i, st := range steps {
		if err := s.InsertArrow(ctx, table, rec, st.token); err != nil {
			t.Fatalf("step %d InsertArrow(token %q): %v", i, st.token, err)
		}
		if got := count(ctx, t, s, table); got != st.want {
			t.Fatalf("step %d token %q: count = %d, want %d", i, st.token, got, st.want)
		}
	}

	out, err := s.QueryJSON(ctx, "SELECT * FROM "+q+" ORDER BY id LIMIT 1 BY id")
	if err != nil {
		t.Fatalf("QueryJSON: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(WantRows) {
		t.Fatalf("QueryJSON returned %d lines, want %d:\n%s", len(got), len(WantRows), out)
	}
	for i := range WantRows {
		if got[i] != WantRows[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[i], WantRows[i])
		}
	}

	// Types as stored, so a silent widening (String for LowCardinality,
	// DateTime64 with another precision) would show.
	out, err = s.QueryJSON(ctx, "SELECT toTypeName(lc) AS lc, toTypeName(ts) AS ts, toTypeName(flag) AS flag, toTypeName(n) AS n FROM "+q+" LIMIT 1")
	if err != nil {
		t.Fatalf("QueryJSON types: %v", err)
	}
	wantTypes := `{"lc":"LowCardinality(String)","ts":"DateTime64(3, 'UTC')","flag":"UInt8","n":"Nullable(Int32)"}` + "\n"
	if string(out) != wantTypes {
		t.Errorf("types = %s, want %s", out, wantTypes)
	}
}

func count(ctx context.Context, t *testing.T, s store.Store, table string) int {
	t.Helper()
	out, err := s.QueryJSON(ctx, "SELECT count() AS c FROM "+store.QuoteIdent(table))
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	var c int
	// count() is UInt64: quoted or not depending on the server's settings.
	if _, err := fmt.Sscanf(string(bytes.ReplaceAll(out, []byte(`"`), nil)), "{c:%d}", &c); err != nil {
		t.Fatalf("count: parse %q: %v", out, err)
	}
	return c
}

func mustExec(ctx context.Context, t *testing.T, s store.Store, sql string) {
	t.Helper()
	if err := s.Exec(ctx, sql); err != nil {
		t.Fatalf("Exec(%s): %v", sql, err)
	}
}
