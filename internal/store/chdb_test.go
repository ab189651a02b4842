package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lastmile-qoe/lastmile/internal/chdb"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/internal/store/storetest"
)

// embedded is shared by every test and benchmark of this binary: chDB boots
// one engine per process with one data directory, and booting costs time.
var (
	embedded    *store.Embedded
	embeddedErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		// TestMain has no t.TempDir; this is its equivalent.
		dir, err := os.MkdirTemp("", "store-chdb-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if _, err := os.Stat(chdb.DefaultLibPath()); err == nil {
			embedded, embeddedErr = store.OpenEmbedded("", filepath.Join(dir, "db"))
			if embeddedErr == nil {
				defer embedded.Close()
			}
		} else {
			embeddedErr = err
		}
		return m.Run()
	}()
	os.Exit(code)
}

// needEmbedded fails (not skips) when the library is missing: the embedded
// store is the default backend and must be tested. `make libchdb` fetches it.
func needEmbedded(tb testing.TB) *store.Embedded {
	tb.Helper()
	if embeddedErr != nil {
		tb.Fatalf("embedded store unavailable (run `make libchdb`): %v", embeddedErr)
	}
	return embedded
}

func TestEmbeddedConformance(t *testing.T) {
	storetest.Run(t, needEmbedded(t))
}

func TestInsertJSONEachRowFile(t *testing.T) {
	s := needEmbedded(t)
	ctx := context.Background()
	if err := s.Exec(ctx, "CREATE TABLE json_in (id UInt64, lc LowCardinality(String), ts DateTime64(3, 'UTC'), d String DEFAULT 'x') ENGINE = MergeTree ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rows.ndjson")
	// Keys out of table order and a missing column: mapping is by name.
	data := `{"ts":"2023-11-14 22:13:20.123","id":2,"lc":"b"}` + "\n" + `{"id":1,"lc":"a","ts":1700000000123,"d":"y"}` + "\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertJSONEachRowFile(ctx, s, "json_in", path); err != nil {
		t.Fatal(err)
	}
	out, err := s.QueryJSON(ctx, "SELECT * FROM json_in ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"lc":"a","ts":"2023-11-14 22:13:20.123","d":"y"}` + "\n" +
		`{"id":2,"lc":"b","ts":"2023-11-14 22:13:20.123","d":"x"}` + "\n"
	if string(out) != want {
		t.Errorf("got\n%s want\n%s", out, want)
	}
}

func TestOpenEmbeddedMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope", "libchdb.so")
	_, err := store.OpenEmbedded(missing, t.TempDir())
	if err == nil {
		t.Fatal("no error for a missing library")
	}
	if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "run `make libchdb` to fetch it") {
		t.Errorf("error does not name the path and the fix: %v", err)
	}
}

func TestQuote(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{store.QuoteIdent("a`b\\c"), "`a\\`b\\\\c`"},
		{store.QuoteTable("db.t`x"), "`db`.`t\\`x`"},
		{store.QuoteTable("plain"), "`plain`"},
		{store.QuoteString("topic:3:100-200"), "'topic:3:100-200'"},
		{store.QuoteString(`it's \ x`), `'it\'s \\ x'`},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}
