package schemas

import (
	"fmt"
	"strings"
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

// Columns every table has besides the catalog's: where the row came from in
// Kafka, so that a processor restarting after a crash skips what the store
// already holds instead of inserting it twice.
const (
	ColKafkaPartition = "kafka_partition"
	ColKafkaOffset    = "kafka_offset"
)

// TTLPlaceholder in migration SQL is replaced by the retention in days.
const TTLPlaceholder = "{ttl_days}"

// TableDDL returns the CREATE TABLE statement of a log_type's table as the
// first migration wrote it.
//
// Design: ReplacingMergeTree sorted by the lookup key of the log_type (device
// for client events, stream for stream-level server events, session for edge
// access) with event_id last, so a duplicate that slips through the
// processor's dedup collapses on merge and under FINAL. Bloom-filter skip
// indexes on the other ids make a session or user lookup read only the
// granules holding that id. Partitions are days, retention is a TTL.
func TableDDL(lt *LogType) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s\n(\n", TableOf(lt.Name))
	for _, f := range lt.Columns() {
		fmt.Fprintf(&b, "    %s %s,\n", f.Name, ColumnType(&f))
	}
	fmt.Fprintf(&b, "    %s UInt32,\n    %s Int64,\n", ColKafkaPartition, ColKafkaOffset)
	sorted := map[string]bool{}
	for _, k := range lt.SortKey {
		sorted[k] = true
	}
	var idx []string
	for _, id := range []string{"device_id", "user_id", "session_id", "stream_id", "room_id"} {
		if !sorted[id] {
			idx = append(idx, fmt.Sprintf("    INDEX idx_%s %s TYPE bloom_filter(0.01) GRANULARITY 1", id, id))
		}
	}
	b.WriteString(strings.Join(idx, ",\n"))
	b.WriteString("\n)\nENGINE = ReplacingMergeTree\n")
	b.WriteString("PARTITION BY toYYYYMMDD(ts)\n")
	fmt.Fprintf(&b, "ORDER BY (%s)\n", strings.Join(lt.SortKey, ", "))
	fmt.Fprintf(&b, "TTL toDateTime(ts) + INTERVAL %s DAY\n", TTLPlaceholder)
	b.WriteString("SETTINGS non_replicated_deduplication_window = 10000")
	return b.String()
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
	b.WriteString("-- 0001_init: one table per log_type and the rejected table.\n")
	b.WriteString("-- Generated from schemas/catalog.go by `go generate ./schemas`; later changes go in new files.\n")
	for i := range Catalog {
		b.WriteString("\n")
		b.WriteString(TableDDL(&Catalog[i]))
		b.WriteString(";\n")
	}
	b.WriteString("\n")
	b.WriteString(RejectedDDL())
	b.WriteString(";\n")
	return b.String()
}
