// Package store is the analytics store behind one small interface: the embedded
// chDB engine on one machine, a ClickHouse server (or cluster) at scale. Both run
// the same DDL and the same SQL.
package store

import (
	"context"

	"github.com/apache/arrow-go/v18/arrow"
)

// Store is what the processor and the query service need from ClickHouse.
type Store interface {
	// Exec runs a statement that returns no rows (DDL, INSERT ... SELECT, SET).
	Exec(ctx context.Context, sql string) error
	// QueryJSON runs a SELECT and returns its rows as JSONEachRow: one JSON
	// object per line, keys in column order.
	QueryJSON(ctx context.Context, sql string) ([]byte, error)
	// InsertArrow inserts one columnar batch into table. Column names of rec
	// match the table's columns; columns the table has and rec lacks get their
	// defaults. A non-empty token is the insert deduplication token: inserting
	// the same token into the same table again is a no-op, so a retried batch
	// never shows up twice.
	InsertArrow(ctx context.Context, table string, rec arrow.RecordBatch, token string) error
	// Close releases the connection; the data stays on disk.
	Close() error
}

// maxPartitionsPerInsert goes with every insert (0: no limit). The tables are partitioned by day,
// and ClickHouse refuses an insert spanning more than 100 partitions by
// default: one batch holding events of more than 100 days (anyone who can
// write to the broker can send them, within a retention of over 100 days)
// then failed on every retry and stalled ingest for good. The days of a
// batch are bounded by the processor's window instead (retention + 2 days;
// the rejected table's, 62).
const maxPartitionsPerInsert = 0
