package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lastmile-qoe/lastmile/internal/chdb"
)

// ReadOptions configure a Reader: connections of its own, apart from the
// ones the processor inserts on, so that no read can hold ingest back, and
// the engine's own read-only mode with limits the query text cannot lift.
type ReadOptions struct {
	// Conns is how many connections the reader keeps (default 2). Queries
	// beyond that wait for a free one, or until their context ends.
	Conns int
	// Strict is ClickHouse readonly=1: no writes, no DDL, only the table
	// functions the engine marks safe, and no setting may be changed by the
	// query (SETTINGS, SET), so the limits below hold against the query
	// text. Without Strict the reader runs readonly=2 (the same, except
	// that the query may change settings other than readonly): for the
	// product's own SQL, which tunes its settings.
	Strict bool
	// MaxExecutionTime stops a query that runs longer (0: no limit).
	MaxExecutionTime time.Duration
	// MaxResultRows and MaxResultBytes fail a query whose result is larger
	// (0: no limit). Bytes are the engine's in-memory size of the result.
	MaxResultRows, MaxResultBytes int64
	// MaxMemoryUsage fails a query that needs more memory (0: engine default).
	MaxMemoryUsage int64
}

// ErrReadersBusy: every connection of a Reader stayed busy for as long as
// a query may run.
var ErrReadersBusy = errors.New("all read connections busy")

// Reader runs read-only queries on connections of its own.
type Reader interface {
	// QueryJSON runs a query and returns its rows as JSONEachRow.
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
	// Close releases the reader's connections.
	Close() error
}

// setting is one ClickHouse setting a reader's session carries.
type setting struct{ name, value string }

// settings lists what a reader's session is opened with, readonly last:
// once it is set, nothing else can be.
func (o ReadOptions) settings() []setting {
	var s []setting
	if o.MaxExecutionTime > 0 {
		// Whole seconds round up: a limit of 1.5 s must not become 1 s.
		secs := int64((o.MaxExecutionTime + time.Second - 1) / time.Second)
		s = append(s, setting{"max_execution_time", strconv.FormatInt(secs, 10)},
			setting{"timeout_overflow_mode", "'throw'"})
	}
	if o.MaxResultRows > 0 || o.MaxResultBytes > 0 {
		s = append(s, setting{"max_result_rows", strconv.FormatInt(o.MaxResultRows, 10)},
			setting{"max_result_bytes", strconv.FormatInt(o.MaxResultBytes, 10)},
			setting{"result_overflow_mode", "'throw'"})
	}
	if o.MaxMemoryUsage > 0 {
		s = append(s, setting{"max_memory_usage", strconv.FormatInt(o.MaxMemoryUsage, 10)})
	}
	ro := "2"
	if o.Strict {
		ro = "1"
	}
	return append(s, setting{"readonly", ro})
}

func (o ReadOptions) conns() int {
	if o.Conns <= 0 {
		return 2
	}
	return o.Conns
}

// OpenReader opens a Reader on st: separate connections for the embedded
// store, a separate connection pool with per-query settings for a
// ClickHouse server.
func OpenReader(ctx context.Context, st Store, o ReadOptions) (Reader, error) {
	switch s := st.(type) {
	case *Embedded:
		return s.OpenReader(o)
	case *ClickHouse:
		return s.OpenReader(ctx, o)
	}
	return nil, fmt.Errorf("store: %T cannot open a separate reader", st)
}

// EmbeddedReader is a Reader on chDB connections of its own. Each
// connection's session is set up once with the limits and then readonly; a
// chDB session keeps its settings for the connection's life, and readonly=1
// refuses any later change, so the query text cannot lift them.
//
// A running chDB statement cannot be interrupted: a query whose client went
// away runs on until it ends or hits MaxExecutionTime, but it holds only a
// reader's connection, never an inserter's.
type EmbeddedReader struct {
	pool *connPool
	wait time.Duration // longest a query waits for a connection (0: its context)
}

// OpenReader opens o.Conns new connections to e's engine (see Reader).
func (e *Embedded) OpenReader(o ReadOptions) (*EmbeddedReader, error) {
	n := o.conns()
	// A query waits for a connection at most as long as one may run: a
	// queue longer than that would only be answered after its client gave up.
	r := &EmbeddedReader{pool: newConnPool(n), wait: o.MaxExecutionTime}
	for range n {
		c, err := chdb.Open(e.libPath, e.dataDir)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("store: open reader: %w", err)
		}
		r.pool.add(c)
		if err := setupSession(c, o); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// setupSession applies o's settings to c's session and checks that they
// took: a chDB release whose sessions did not keep settings must fail here,
// not run the read API unprotected.
func setupSession(c *chdb.Conn, o ReadOptions) error {
	want := o.settings()
	for _, s := range want {
		if err := c.Exec("SET " + s.name + " = " + s.value); err != nil {
			return fmt.Errorf("store: reader session: SET %s: %w", s.name, err)
		}
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, s := range want {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "toString(getSetting('%s'))", s.name)
	}
	out, err := c.Query(q.String(), "TabSeparated")
	if err != nil {
		return fmt.Errorf("store: reader session: check settings: %w", err)
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\t")
	for i, s := range want {
		if i >= len(got) || got[i] != strings.Trim(s.value, "'") {
			return fmt.Errorf("store: reader session: %s did not hold (want %s, got %q): this chDB does not keep session settings", s.name, s.value, got)
		}
	}
	return nil
}

// QueryJSON implements Reader.
func (r *EmbeddedReader) QueryJSON(ctx context.Context, sql string) ([]byte, error) {
	c, err := r.pool.acquire(ctx, r.wait)
	switch {
	case errors.Is(err, errPoolWait):
		return nil, fmt.Errorf("store: %w: %d queries have run for all of the last %s", ErrReadersBusy, len(r.pool.conns), r.wait)
	case err != nil:
		return nil, fmt.Errorf("store: waiting for a read connection: %w", err)
	}
	defer r.pool.release(c)
	out, err := c.Query(sql, "JSONEachRow")
	if err != nil {
		return nil, fmt.Errorf("store: query: %w", err)
	}
	return out, nil
}

// Close implements Reader. It waits for queries in flight to end.
func (r *EmbeddedReader) Close() error { return r.pool.close() }

// ClickHouseReader is a Reader on a connection pool of its own to the
// server; every query carries the limits and readonly as its settings, which
// the server applies before the query text's SETTINGS (readonly=1 then
// refuses those), and a cancelled context cancels the query on the server.
type ClickHouseReader struct {
	conn     driver.Conn
	settings clickhouse.Settings
}

// OpenReader opens a second pool of o.Conns connections with c's options.
func (c *ClickHouse) OpenReader(ctx context.Context, o ReadOptions) (*ClickHouseReader, error) {
	opts := *c.opts
	opts.MaxOpenConns = o.conns()
	opts.MaxIdleConns = o.conns()
	conn, err := clickhouse.Open(&opts)
	if err != nil {
		return nil, fmt.Errorf("store: open reader: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: open reader: ping: %w", err)
	}
	set := clickhouse.Settings{}
	for _, s := range o.settings() {
		if n, err := strconv.ParseInt(s.value, 10, 64); err == nil {
			set[s.name] = n
		} else {
			set[s.name] = strings.Trim(s.value, "'")
		}
	}
	return &ClickHouseReader{conn: conn, settings: set}, nil
}

// QueryJSON implements Reader.
func (r *ClickHouseReader) QueryJSON(ctx context.Context, sql string) ([]byte, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(r.settings))
	return queryJSON(ctx, r.conn, sql)
}

// Close implements Reader.
func (r *ClickHouseReader) Close() error { return r.conn.Close() }
