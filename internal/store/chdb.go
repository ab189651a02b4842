package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/lastmile-qoe/lastmile/internal/chdb"
)

// embeddedConns is how many chDB connections an Embedded store keeps. chDB
// runs one statement at a time per connection, but connections to the same
// path run in parallel, so a query is not stuck behind a large insert.
const embeddedConns = 4

// Embedded is the Store on chDB, the in-process ClickHouse engine.
//
// Each call borrows one connection from a small pool, so session state
// (SET, USE) does not carry from one call to the next: put settings in a
// SETTINGS clause and qualify table names instead. chDB calls cannot be
// interrupted; ctx is checked before a call starts.
type Embedded struct {
	pool   *connPool
	tmpDir string
	seq    atomic.Uint64

	libPath, dataDir string // for readers' own connections
}

var _ Store = (*Embedded)(nil)

// OpenEmbedded opens (or creates) the chDB database in dataDir. libPath ""
// means chdb.DefaultLibPath(). chDB allows one data directory per process.
func OpenEmbedded(libPath, dataDir string) (*Embedded, error) {
	tmp := filepath.Join(dataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("store: embedded tmp dir: %w", err)
	}
	abs, err := filepath.Abs(tmp)
	if err != nil {
		return nil, fmt.Errorf("store: embedded tmp dir: %w", err)
	}
	// Leftovers from a crash mid-insert; nothing else lives here.
	if old, _ := filepath.Glob(filepath.Join(abs, "insert-*")); len(old) > 0 {
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	e := &Embedded{pool: newConnPool(embeddedConns), tmpDir: abs, libPath: libPath, dataDir: dataDir}
	for range embeddedConns {
		c, err := chdb.Open(libPath, dataDir)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("store: open embedded: %w", err)
		}
		e.pool.add(c)
	}
	return e, nil
}

func (e *Embedded) acquire(ctx context.Context) (*chdb.Conn, error) { return e.pool.acquire(ctx, 0) }

func (e *Embedded) release(c *chdb.Conn) { e.pool.release(c) }

// Exec implements Store.
func (e *Embedded) Exec(ctx context.Context, sql string) error {
	c, err := e.acquire(ctx)
	if err != nil {
		return err
	}
	defer e.release(c)
	if err := c.Exec(sql); err != nil {
		return fmt.Errorf("store: exec: %w", err)
	}
	return nil
}

// QueryJSON implements Store.
func (e *Embedded) QueryJSON(ctx context.Context, sql string) ([]byte, error) {
	return e.Query(ctx, sql, "JSONEachRow")
}

// Query runs sql and returns its output in any ClickHouse output format.
func (e *Embedded) Query(ctx context.Context, sql, format string) ([]byte, error) {
	c, err := e.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer e.release(c)
	out, err := c.Query(sql, format)
	if err != nil {
		return nil, fmt.Errorf("store: query: %w", err)
	}
	return out, nil
}

// bufPool recycles the 1 MiB write buffers of the temp-file encoders.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1<<20) }}

// InsertArrow implements Store.
//
// The batch goes through an Arrow IPC stream file read back with
// file(..., 'ArrowStream'). Inline binary after FORMAT is cut at 256 KiB by
// chDB 26.5.3 (even with a larger max_query_size). chdb_arrow_scan would need
// the Arrow C data interface, which arrow-go only offers with cgo; and the
// file detour is small: of ~240 ms per 100k rows, ~40 ms is writing the file
// and ~25 ms reading it, the rest is the MergeTree write itself.
func (e *Embedded) InsertArrow(ctx context.Context, table string, rec arrow.RecordBatch, token string) error {
	if rec.NumRows() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := filepath.Join(e.tmpDir, "insert-"+strconv.FormatUint(e.seq.Add(1), 10)+".arrow")
	if err := writeArrowStream(path, rec); err != nil {
		return fmt.Errorf("store: insert into %s: %w", table, err)
	}
	defer os.Remove(path)
	if err := e.Exec(ctx, insertFromFileSQL(table, rec.Schema(), token, path, "ArrowStream")); err != nil {
		return fmt.Errorf("store: insert into %s: %w", table, err)
	}
	return nil
}

func writeArrowStream(path string, rec arrow.RecordBatch) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("arrow temp file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("arrow temp file: %w", cerr)
		}
	}()
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(f)
	defer func() { bw.Reset(nil); bufPool.Put(bw) }()

	w := ipc.NewWriter(bw, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		return fmt.Errorf("arrow ipc write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("arrow ipc close: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("arrow temp file: %w", err)
	}
	return nil
}

// insertFromFileSQL builds
//
//	INSERT INTO t (`a`, `b`) SETTINGS max_partitions_per_insert_block = 0,
//	  insert_deduplication_token = '...'
//	SELECT `a`, `b` FROM file('/abs/path', 'ArrowStream')
//
// Naming the columns on both sides lets the table fill the ones rec lacks
// with defaults and makes the mapping by name, not position. See
// maxPartitionsPerInsert.
func insertFromFileSQL(table string, schema *arrow.Schema, token, path, format string) string {
	var cols strings.Builder
	for i, f := range schema.Fields() {
		if i > 0 {
			cols.WriteString(", ")
		}
		writeIdent(&cols, f.Name)
	}
	var b strings.Builder
	b.Grow(2*cols.Len() + len(table) + len(token) + len(path) + 128)
	b.WriteString("INSERT INTO ")
	writeTable(&b, table)
	b.WriteString(" (")
	b.WriteString(cols.String())
	b.WriteString(") SETTINGS max_partitions_per_insert_block = ")
	b.WriteString(strconv.Itoa(maxPartitionsPerInsert))
	if token != "" {
		b.WriteString(", insert_deduplication_token = ")
		writeString(&b, token)
	}
	b.WriteString(" SELECT ")
	b.WriteString(cols.String())
	b.WriteString(" FROM file(")
	writeString(&b, path)
	b.WriteString(", ")
	writeString(&b, format)
	b.WriteString(")")
	return b.String()
}

// InsertJSONEachRowFile inserts an NDJSON file (one JSON object per line,
// keys named like the table's columns) into table. It is the "raw store
// inserting JSONEachRow" baseline for benchmarks; the file is read with the
// table's own structure, so no schema inference is involved.
func InsertJSONEachRowFile(ctx context.Context, s *Embedded, table, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("store: insert json file: %w", err)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	writeTable(&b, table)
	b.WriteString(" SELECT * FROM file(")
	writeString(&b, abs)
	b.WriteString(", 'JSONEachRow')")
	if err := s.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("store: insert json file into %s: %w", table, err)
	}
	return nil
}

// Close implements Store. It waits for calls in flight to finish.
func (e *Embedded) Close() error { return e.pool.close() }
