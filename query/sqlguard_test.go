package query

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-qoe/lastmile/internal/store"
)

func TestGuardSQL(t *testing.T) {
	for _, c := range []struct{ q, want, refused string }{
		{q: "SELECT 1", want: "SELECT 1"},
		{q: "  select 1 ;  ", want: "select 1"},
		{q: "SELECT 1 -- c\n;", want: "SELECT 1"},
		{q: "/* c */ SELECT 'a;b' AS s", want: "  SELECT 'a;b' AS s"},
		{q: "SELECT 'x'' file(''/y'')'", want: "SELECT 'x'' file(''/y'')'"},
		{q: "SELECT 'a\\'b', `c``d`", want: "SELECT 'a\\'b', `c``d`"},
		{q: "SELECT format('{}', 1)", want: "SELECT format('{}', 1)"},
		{q: "SELECT URLHash('x'), profile AS p", want: "SELECT URLHash('x'), profile AS p"},
		{q: "", refused: "no statement"},
		{q: ";", refused: "no statement"},
		{q: "DROP TABLE events", refused: "only read-only statements"},
		{q: "SELECT 1; SELECT 2", refused: "one statement"},
		{q: "SELECT 1 INTO OUTFILE 'x'", refused: "INTO"},
		{q: "SELECT 1 OUTFILE", refused: "OUTFILE"},
		{q: "WITH 1 AS x INSERT INTO events VALUES (1)", refused: "INSERT"},
		{q: "SELECT 1 SETTINGS readonly=0", refused: "SETTINGS"},
		{q: "SELECT 1 FORMAT TSV", refused: "FORMAT"},
		{q: "SELECT file('/etc/passwd')", refused: "function file"},
		{q: "SELECT * FROM File('/etc/passwd')", refused: "function File"},
		{q: "SELECT file /**/ ('/x')", refused: "function file"},
		{q: "SELECT `file`('/x')", refused: "quoted function name"},
		{q: "SELECT 1file('/x')", refused: "function file"},
		{q: "SELECT * FROM icebergS3Cluster('c', 'u')", refused: "function icebergS3Cluster"},
		{q: "SELECT hasColumnInTable('h:1', 'd', 't', 'c')", refused: "function hasColumnInTable"},
		{q: "SELECT 1 /* a /* b */ c */", refused: "nested"},
		{q: "SELECT 1 /* open", refused: "unterminated"},
		{q: "SELECT 'open", refused: "unterminated"},
		{q: "SELECT 1 # c", refused: "'#'"},
		{q: "SELECT $$x$$", refused: "'$'"},
		{q: "SELECT \x00", refused: "byte 0x00"},
		{q: "SELECT é", refused: "byte 0xc3"},
		{q: "SELECT " + strings.Repeat("1+", maxSQLBytes/2) + "1", refused: "limit"},
	} {
		got, err := guardSQL(c.q)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%q: refused: %v", c.q, err)
		case c.refused == "" && got != c.want:
			t.Errorf("%q: runs as %q, want %q", c.q, got, c.want)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%q: got %q, %v; want refused with %q", c.q, got, err, c.refused)
		}
	}
}

// TestSQLGuardOnEngine is the window's defence in depth on the real engine:
// what readonly=1 refuses on its own, and what only the guard refuses
// (checked here so that a chDB release that changes either shows up).
func TestSQLGuardOnEngine(t *testing.T) {
	ctx := context.Background()
	r, err := store.OpenReader(ctx, sharedStore(t), store.ReadOptions{Conns: 1, Strict: true, MaxExecutionTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("SECRET-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	outfile := filepath.Join(dir, "out")
	for _, c := range []struct {
		q            string
		engineRefuse bool // readonly=1 alone refuses it
	}{
		{"SELECT * FROM file('" + secret + "', 'LineAsString')", true},
		{"SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')", true},
		{"SELECT * FROM remote('127.0.0.1:9', system.one)", true},
		{"SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')", true},
		{"SELECT * FROM executable('id', 'TSV', 'a String')", true},
		{"WITH 1 AS x INSERT INTO FUNCTION file('" + outfile + "', 'TSV') SELECT 1", true},
		{"SELECT 1 SETTINGS readonly = 0", true},
		{"SET readonly = 0", true},
		// Only the guard stands here.
		{"SELECT file('" + secret + "') AS s", false},
		{"SELECT 1 INTO OUTFILE '" + outfile + "'", false},
	} {
		if _, err := guardSQL(c.q); err == nil {
			t.Errorf("%q: the guard let it through", c.q)
		}
		out, err := r.QueryJSON(ctx, c.q)
		if c.engineRefuse && (err == nil || !strings.Contains(err.Error(), "READONLY")) {
			t.Errorf("%q: readonly=1 did not refuse it: %s %v", c.q, out, err)
		}
		if !c.engineRefuse && err != nil {
			t.Logf("%q: the engine now refuses it too (%v): the guard is no longer the only line", c.q, err)
		}
	}
	os.Remove(outfile)
}
