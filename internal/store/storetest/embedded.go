package storetest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/lastmile-qoe/lastmile/internal/chdb"
	"github.com/lastmile-qoe/lastmile/internal/store"
	"github.com/lastmile-qoe/lastmile/schemas"
)

// The embedded store a test binary shares: chDB boots one engine per process
// with one data directory. It is opened on first use, so tests that need no
// store do not pay for it.
var shared struct {
	once sync.Once
	dir  string
	st   *store.Embedded
	err  error
}

// Embedded returns the test binary's embedded store, in a temporary
// directory, migrated. It fails (not skips) when libchdb is missing: `make
// libchdb` fetches it. Call Cleanup from TestMain after the tests.
func Embedded(tb testing.TB) *store.Embedded {
	tb.Helper()
	shared.once.Do(func() {
		if _, err := os.Stat(chdb.DefaultLibPath()); err != nil {
			shared.err = fmt.Errorf("libchdb missing (run `make libchdb`): %w", err)
			return
		}
		if shared.dir, shared.err = os.MkdirTemp("", "lastmile-test-store"); shared.err != nil {
			return
		}
		if shared.st, shared.err = store.OpenEmbedded("", shared.dir); shared.err != nil {
			return
		}
		_, shared.err = schemas.Migrate(context.Background(), shared.st, 30)
	})
	if shared.err != nil {
		tb.Fatalf("embedded store: %v", shared.err)
	}
	return shared.st
}

// Cleanup closes the store Embedded opened, if it did, and removes its
// directory.
func Cleanup() {
	if shared.st != nil {
		shared.st.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// Main runs a test binary's tests and then Cleanup: `func TestMain(m
// *testing.M) { storetest.Main(m) }`.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
