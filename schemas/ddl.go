package schemas

import (
	"fmt"
	"strings"
	"time"
)

// ColumnType returns the ClickHouse type of a field.
func ColumnType(f *Field) string {
	var t string
	switch f.Kind {
	case KindString:
		t = "String"
	case KindDim:
		return "LowCardinality(String)"
	case KindInt:
		t = "Int64"
	case KindFloat:
		t = "Float64"
	case KindBool:
		t = "Bool"
	case KindTime:
		t = "DateTime64(3)"
	}
	if f.Nullable() {
		return "Nullable(" + t + ")"
	}
	return t
}

// Columns the events table has besides the catalog's: the trace key that
// leads the sort order, and where the row came from in Kafka, so that a
// processor restarting after a crash skips what the store already holds
// instead of inserting it twice.
const (
	ColTraceKey       = "trace_key"
	ColKafkaPartition = "kafka_partition"
	ColKafkaOffset    = "kafka_offset"
)

// EventsTable holds every event of every log_type.
const EventsTable = "events"

// TraceSessionsTable indexes play sessions by device and by user, for trace
// lookups (migration 0005). The processor writes its rows, a few per
// session: see TraceSessionQuantum.
const TraceSessionsTable = "trace_sessions"

// TraceContextTable holds, again, the events a trace shows beside a
// session's own: the stream-level events (push, ingest, relay, origin,
// transcode) and the edge's access log, each as one JSON document of the
// columns a trace shows of it, keyed by trace key and TraceContextBucket,
// written by a materialized view on events (migration 0007). A trace fetches
// them from a few small parts, one column, a set of (app_id, trace_key,
// bucket) at a time, rather than every column of every part of the events
// table.
const TraceContextTable = "trace_context"

// TraceContextBucket is the span of trace_context's bucket column: its value
// is the event's Unix time in ms divided by this many ms (migration 0007 has
// the number too).
const TraceContextBucket = 10 * time.Minute

// TraceSessionQuantum is how far a session's events may run past the
// last_ts of its trace_sessions rows. The processor writes a session's row
// when it first sees it, when an event comes before its first_ts, and when
// an event comes more than this after the last_ts it wrote: so a session
// costs a row (per device and per user) every 5 minutes, not one per event,
// and a lookup widens each span's end by this much.
const TraceSessionQuantum = 5 * time.Minute

// TTLPlaceholder in migration SQL is replaced by the retention in days.
const TTLPlaceholder = "{ttl_days}"

// EventsGranularity is the events table's index_granularity: rows per
// granule, the unit the store reads (see EventsDDL).
const EventsGranularity = 1024

// EventsDDL returns the CREATE TABLE statement of the events table.
//
// Design: one wide table for all log_types, because a MergeTree insert costs
// a fixed ~10-30 ms of CPU per part whatever its size, so one insert per
// flush instead of one per log_type is what lets one machine ingest 100k
// events/s. Columns a log_type lacks are NULL or empty and compress to
// almost nothing. The sort key (app_id, trace_key, ts, event_id) puts one
// device's (stream's, session's) events together in time order, so a trace
// lookup reads a few granules; bloom-filter skip indexes on the other ids do
// the same for lookups by user, session, stream or room. Plain MergeTree:
// ReplacingMergeTree cost 2.3 times the insert CPU here (170 vs 73 ms for
// 45k rows), and duplicates are stopped before the store instead (insert
// tokens, stored Kafka offsets, the processor's event_id window; see
// docs/storage.md). Partitions are days; retention is a TTL.
func EventsDDL() string { return eventsDDL(1) }

// inMigration reports whether a field's column exists after migration v.
func (f *Field) inMigration(v int) bool { return max(f.Since, 1) <= v }

// eventsDDL is the events table as migration v created it: the columns added
// by later migrations left out.
func eventsDDL(v int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s\n(\n", EventsTable)
	for _, f := range EventColumns {
		if !f.inMigration(v) {
			continue
		}
		fmt.Fprintf(&b, "    %s %s,\n", f.Name, ColumnType(&f))
	}
	fmt.Fprintf(&b, "    %s String,\n    %s UInt32,\n    %s Int64,\n", ColTraceKey, ColKafkaPartition, ColKafkaOffset)
	for _, d := range Derived {
		if max(d.Since, 1) <= v {
			fmt.Fprintf(&b, "    %s,\n", d.column())
		}
	}
	// Each bloom filter covers 8 granules (8,192 rows): finer ones cost more
	// to check than the rows they skip.
	var idx []string
	for _, id := range []string{"device_id", "user_id", "session_id", "stream_id", "room_id"} {
		idx = append(idx, fmt.Sprintf("    INDEX idx_%s %s TYPE bloom_filter(0.01) GRANULARITY 8", id, id))
	}
	b.WriteString(strings.Join(idx, ",\n"))
	b.WriteString("\n)\nENGINE = MergeTree\n")
	b.WriteString("PARTITION BY toYYYYMMDD(ts)\n")
	fmt.Fprintf(&b, "ORDER BY (app_id, %s, ts, event_id)\n", ColTraceKey)
	fmt.Fprintf(&b, "TTL toDateTime(ts) + INTERVAL %s DAY\n", TTLPlaceholder)
	// Granules of 1,024 rows: a trace lookup reads a few rows of ~50
	// columns, and each column is read (decompressed, deserialized) a whole
	// granule at a time: with 8,192-row granules the query for a device's
	// ~100 client events decompressed 12.7 MB (50M events). Fixed at creation (a store created before
	// keeps 8,192; see docs/storage.md). Migration 0004 makes every part
	// compact and its compressed blocks granule-sized.
	fmt.Fprintf(&b, "SETTINGS index_granularity = %d, non_replicated_deduplication_window = 10000, min_rows_for_wide_part = 1000000, min_bytes_for_wide_part = 134217728", EventsGranularity)
	return b.String()
}

// ViewDDL returns the view named after a log_type: its columns of the events
// table, its rows only, so that SQL reads `FROM first_frame`.
func ViewDDL(lt *LogType) string { return viewDDL(lt, 1, "CREATE VIEW IF NOT EXISTS") }

// viewDDL is the log_type's view with the columns that exist after
// migration v.
func viewDDL(lt *LogType, v int, create string) string {
	var cols []string
	for _, f := range lt.Columns() {
		if f.inMigration(v) {
			cols = append(cols, f.Name)
		}
	}
	for _, d := range Derived {
		if d.LogType == lt.Name && max(d.Since, 1) <= v {
			cols = append(cols, d.Name)
		}
	}
	cols = append(cols, ColKafkaPartition, ColKafkaOffset)
	return fmt.Sprintf("%s %s AS\nSELECT %s\nFROM %s\nWHERE log_type = '%s'",
		create, TableOf(lt.Name), strings.Join(cols, ", "), EventsTable, lt.Name)
}

// ColumnsMigration is the part of migration v that adds the catalog fields
// marked Since v: the events table's new columns, then each log_type view
// that shows them, replaced. "" when v adds no field.
func ColumnsMigration(v int) string {
	var b strings.Builder
	for _, f := range EventColumns {
		if f.Since == v {
			fmt.Fprintf(&b, "\nALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s;\n", EventsTable, f.Name, ColumnType(&f))
		}
	}
	for _, d := range Derived {
		if d.Since == v {
			fmt.Fprintf(&b, "\nALTER TABLE %s ADD COLUMN IF NOT EXISTS %s;\n", EventsTable, d.column())
		}
	}
	for i := range Catalog {
		if Catalog[i].addsTo(v) {
			b.WriteString("\n" + viewDDL(&Catalog[i], v, "CREATE OR REPLACE VIEW") + ";\n")
		}
	}
	return b.String()
}

// addsTo reports whether migration v creates the log_type or adds a field
// of it: its view is then (re)made by v.
func (lt *LogType) addsTo(v int) bool {
	if lt.Since >= v {
		return lt.Since == v // a later log_type's view is its own migration's
	}
	for _, f := range lt.Fields {
		if f.Since == v {
			return true
		}
	}
	return false
}

// DerivedColumn is a column of the events table the store computes from a
// catalog field when a row is inserted (MATERIALIZED): senders and the
// processor never see it, SQL reads it in its log_type's view.
type DerivedColumn struct {
	Name, Type, Expr string
	LogType          string // the view that shows it
	Since            int    // the migration that added it
}

func (d *DerivedColumn) column() string {
	return fmt.Sprintf("%s %s MATERIALIZED %s", d.Name, d.Type, d.Expr)
}

// Derived lists the derived columns. cmcd is edge_access's cmcd_rest as a
// map, so that SQL reads one key as cmcd['sta'].
var Derived = []DerivedColumn{
	{Name: "cmcd", Type: "Map(String, String)", LogType: "edge_access", Since: 11,
		Expr: `extractKeyValuePairsWithEscaping(cmcd_rest, '=', ',', '"')`},
}

// EdgeCMCDMigration renders migration 0011: edge_access's CMCD columns.
func EdgeCMCDMigration() string {
	return "-- 0011_edge_cmcd: the CMCD of each edge request, kept in edge_access: typed columns for the keys\n" +
		"-- metrics use, the rest as CMCD text (cmcd_rest) and as a map (cmcd). Generated from schemas/catalog.go\n" +
		"-- and schemas/ddl.go by `go generate ./schemas`; see docs/edge-cors.md. trace_context's view is\n" +
		"-- replaced so that a trace's edge requests show their CMCD; migrations run before the processor\n" +
		"-- starts, so no insert falls between the drop and the create.\n" + ColumnsMigration(11) + `
DROP VIEW IF EXISTS trace_context_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_context_mv TO trace_context AS
SELECT app_id, trace_key, toUInt32(intDiv(toUnixTimestamp64Milli(ts), 600000)) AS bucket, ts, log_type, rendition,
    if(log_type = 'edge_access',
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            region, isp, cdn, node_id, protocol, rendition, duration_ms, bytes, client_ip, error,
            http_status, cache_hit, back_to_source_ms, first_byte_ms, path, dropped_packets,
            cmcd_bl, cmcd_br, cmcd_mtp, cmcd_d, cmcd_rtp, cmcd_ot, cmcd_sf, cmcd_st, cmcd_su, cmcd_rest),
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            node_id, rendition, duration_ms, dropped_frames, code, bytes, latency_ms, reason,
            bitrate_kbps, fps, state, rtt_ms, send_buffer_ms, stop_reason, target, retries, error,
            gop_cache_ms, pulls, status)) AS doc
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode', 'edge_access');
`
}

// RequestMigration renders migration 0012: the request log_type (CMCD e=rr).
func RequestMigration() string {
	return "-- 0012_request: the request log_type, one media request of a play as its player timed it\n" +
		"-- (CMCD v2 event mode e=rr; docs/players.md): its new columns and its view. Generated from\n" +
		"-- schemas/catalog.go and schemas/ddl.go by `go generate ./schemas`.\n" + ColumnsMigration(12)
}

// RejectedDDL is the table of events refused by the collector or the
// processor: the answer to "why can't I find my log".
func RejectedDDL() string {
	return `CREATE TABLE IF NOT EXISTS ` + RejectedTable + `
(
    received_at DateTime64(3),
    app_id LowCardinality(String),
    log_type LowCardinality(String),
    device_id String,
    user_id String,
    session_id String,
    stage LowCardinality(String),
    code LowCardinality(String),
    field String,
    reason String,
    raw String,
    event_index Int32,
    request_id String,
    event_id String,
    ` + ColKafkaPartition + ` UInt32,
    ` + ColKafkaOffset + ` Int64,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (app_id, device_id, received_at, event_id)
TTL toDateTime(received_at) + INTERVAL ` + TTLPlaceholder + ` DAY
SETTINGS non_replicated_deduplication_window = 10000`
}

// InitialMigration renders migration 0001 from the catalog; the checked-in
// file must equal it (see TestMigrationsMatchCatalog).
func InitialMigration() string {
	var b strings.Builder
	b.WriteString("-- 0001_init: the events table, one view per log_type, and the rejected table.\n")
	b.WriteString("-- Generated from schemas/catalog.go by `go generate ./schemas`; later changes go in new files.\n\n")
	b.WriteString(EventsDDL())
	b.WriteString(";\n")
	for i := range Catalog {
		if max(Catalog[i].Since, 1) > 1 {
			continue // a later migration's
		}
		b.WriteString("\n")
		b.WriteString(ViewDDL(&Catalog[i]))
		b.WriteString(";\n")
	}
	b.WriteString("\n")
	b.WriteString(RejectedDDL())
	b.WriteString(";\n")
	return b.String()
}
