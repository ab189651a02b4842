package chdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// conn is shared by all tests: chDB runs one engine (one data dir) per
// process, and booting it is the slow part.
var (
	conn    *Conn
	connErr error
	connDir string
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "chdb-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		connDir = dir
		conn, connErr = Open("", dir)
		if connErr == nil {
			defer conn.Close()
		}
		return m.Run()
	}()
	os.Exit(code)
}

func need(t *testing.T) *Conn {
	t.Helper()
	if connErr != nil {
		t.Fatalf("chdb unavailable (run `make libchdb`): %v", connErr)
	}
	return conn
}

func TestQuery(t *testing.T) {
	c := need(t)
	if err := c.Exec("CREATE TABLE t (id UInt32, s String) ENGINE = MergeTree ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec("INSERT INTO t VALUES (2, 'b'), (1, 'a/\"')"); err != nil {
		t.Fatal(err)
	}
	out, err := c.Query("SELECT * FROM t ORDER BY id", "JSONEachRow")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"s":"a\/\""}` + "\n" + `{"id":2,"s":"b"}` + "\n"
	if string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	// Empty result is empty, not nil-vs-error confusion.
	out, err = c.Query("SELECT * FROM t WHERE id > 10", "JSONEachRow")
	if err != nil || len(out) != 0 {
		t.Errorf("empty result = %q, %v", out, err)
	}
	// Long query text: chdb_query_n takes an explicit length.
	long := strings.Repeat("x", 200_000) // under max_query_size (256 KiB)
	out, err = c.Query("SELECT length('"+long+"')", "TabSeparated")
	if err != nil || string(out) != "200000\n" {
		t.Errorf("long query = %q, %v", out, err)
	}
}

func TestQueryError(t *testing.T) {
	c := need(t)
	_, err := c.Query("SELECT nope(", "JSONEachRow")
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "SYNTAX_ERROR") {
		t.Fatalf("err = %v, want a *chdb.Error with the engine's text", err)
	}
	if err := c.Exec("SELECT * FROM missing_table"); err == nil || !strings.Contains(err.Error(), "UNKNOWN_TABLE") {
		t.Errorf("Exec on missing table: %v", err)
	}
}

func TestConcurrentQueries(t *testing.T) {
	c := need(t)
	// A second connection to the same path is allowed and runs in parallel.
	c2, err := Open("", connDir)
	if err != nil {
		t.Fatalf("second connection to the same path: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		cc := c
		if i%2 == 1 {
			cc = c2
		}
		wg.Go(func() {
			out, err := cc.Query(fmt.Sprintf("SELECT sum(number) FROM numbers(%d)", 1000+i), "TabSeparated")
			n := 1000 + i
			if want := fmt.Sprintf("%d\n", n*(n-1)/2); err != nil || string(out) != want {
				t.Errorf("query %d = %q, %v; want %q", i, out, err, want)
			}
		})
	}
	wg.Wait()
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Query("SELECT 1", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("query on closed conn: %v", err)
	}
	if out, err := c.Query("SELECT 1", "TabSeparated"); err != nil || string(out) != "1\n" {
		t.Errorf("first conn after closing the second: %q, %v", out, err)
	}
}

func TestOneDataDirPerProcess(t *testing.T) {
	need(t)
	_, err := Open("", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "one data dir per process") {
		t.Fatalf("opening a second data dir: %v", err)
	}
}

func TestMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libchdb.so")
	_, err := Open(missing, t.TempDir())
	if err == nil {
		t.Fatal("no error")
	}
	want := "library not found at " + missing + ": run `make libchdb` to fetch it"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}

func TestDefaultLibPath(t *testing.T) {
	t.Setenv(EnvLib, "/opt/x/libchdb.so")
	if got := DefaultLibPath(); got != "/opt/x/libchdb.so" {
		t.Errorf("with %s: %s", EnvLib, got)
	}
	t.Setenv(EnvLib, "")
	t.Setenv("XDG_CACHE_HOME", "/c")
	if got, want := DefaultLibPath(), "/c/lastmile/chdb/"+Version+"/libchdb.so"; got != want {
		t.Errorf("with XDG_CACHE_HOME: %s, want %s", got, want)
	}
}

// The engine must leave Go's signal handling alone: a nil dereference after
// it booted is still an ordinary, recoverable panic, not a crash report.
func TestGoSignalsStillWork(t *testing.T) {
	need(t)
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	var p *int
	_ = *p //nolint:govet // deliberate nil dereference
}
