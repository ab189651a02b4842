package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

// TestReaderIsReadOnlyAndApart: a strict reader's session is readonly=1
// with its limits, the query text cannot lift them, and the store's own
// connections stay writable.
func TestReaderIsReadOnlyAndApart(t *testing.T) {
	if embeddedErr != nil {
		t.Fatalf("embedded store: %v", embeddedErr)
	}
	ctx := context.Background()
	r, err := store.OpenReader(ctx, embedded, store.ReadOptions{Conns: 2, Strict: true,
		MaxExecutionTime: 1500 * time.Millisecond, MaxResultRows: 10, MaxResultBytes: 1 << 20, MaxMemoryUsage: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := embedded.Exec(ctx, "CREATE TABLE IF NOT EXISTS default.reader_t (a UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	// Every connection of the pool: run more queries than it has.
	for range 4 {
		out, err := r.QueryJSON(ctx, "SELECT getSetting('readonly') AS ro, getSetting('max_execution_time') AS t, getSetting('max_result_rows') AS n")
		if err != nil || string(out) != `{"ro":1,"t":2,"n":10}`+"\n" {
			t.Fatalf("reader settings: %s %v", out, err)
		}
	}
	for _, q := range []string{
		"SET readonly = 0",
		"SELECT 1 SETTINGS max_execution_time = 0",
		"INSERT INTO default.reader_t VALUES (1)",
		"SELECT * FROM file('/etc/passwd')",
		"SELECT number FROM numbers(11)",
		"SELECT sleep(2.9) + sleep(2.8) AS z",
	} {
		if out, err := r.QueryJSON(ctx, q); err == nil {
			t.Errorf("%s: the reader ran it: %s", q, out)
		}
	}
	if err := embedded.Exec(ctx, "INSERT INTO default.reader_t VALUES (1)"); err != nil {
		t.Errorf("the store's own connection is no longer writable: %v", err)
	}
	out, err := embedded.QueryJSON(ctx, "SELECT getSetting('readonly') AS ro")
	if err != nil || strings.TrimSpace(string(out)) != `{"ro":0}` {
		t.Errorf("store session: %s %v", out, err)
	}
	// A waiting query gives up with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.QueryJSON(cctx, "SELECT 1"); err == nil {
		t.Errorf("a cancelled context still ran")
	}
}
