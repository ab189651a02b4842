-- 0007_trace_context_docs: trace_context again (docs/trace.md, docs/storage.md), each event one
-- JSON document, keyed by 10-minute bucket.
--
-- A query pays ~0.2 ms for every column it reads, whatever the rows (chDB 26.5, 2 cores): the stream
-- query read 26 columns and the edge query 22, for a few hundred rows. Here they read one, the
-- document the trace shows, written by the view with the same names and values a query of those
-- columns printed (query/trace_query.go streamCols and edgeCols; a test checks both).
--
-- And a stream is looked up by its 10-minute buckets, as one set of (app_id, trace_key, bucket):
-- OR-ed (trace_key, ts) ranges cost planning for every term, and their key search keeps the
-- granules where one stream's rows end and the next one's start in every part, whatever the
-- time. A set of key prefixes is searched exactly. The lookup reads whole buckets and keeps the
-- rows in each session's span in Go. Measured at 50M events on 2 cores, the stream and edge
-- queries of 30 lookups by user and 30 by device: 865-952 -> 478-543 ms and 478-492 -> 374-378 ms.
-- On disk 173 MB instead of 115 MB.
--
-- Dropped and built again from the events table: the old rows have no documents.

DROP VIEW IF EXISTS trace_context_mv;

DROP TABLE IF EXISTS trace_context;

CREATE TABLE IF NOT EXISTS trace_context
(
    app_id LowCardinality(String),
    trace_key String,
    bucket UInt32,
    ts DateTime64(3),
    log_type LowCardinality(String),
    rendition LowCardinality(String),
    doc String
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, trace_key, bucket, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS index_granularity = 256, ttl_only_drop_parts = 1, min_rows_for_wide_part = 1000000000000,
    min_bytes_for_wide_part = 1000000000000000, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_context_mv TO trace_context AS
SELECT app_id, trace_key, toUInt32(intDiv(toUnixTimestamp64Milli(ts), 600000)) AS bucket, ts, log_type, rendition,
    if(log_type = 'edge_access',
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            region, isp, cdn, node_id, protocol, rendition, duration_ms, bytes, client_ip, error,
            http_status, cache_hit, back_to_source_ms, first_byte_ms, path, dropped_packets),
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            node_id, rendition, duration_ms, dropped_frames, code, bytes, latency_ms, reason,
            bitrate_kbps, fps, state, rtt_ms, send_buffer_ms, stop_reason, target, retries, error,
            gop_cache_ms, pulls, status)) AS doc
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode', 'edge_access');

-- The events stored before this migration, after the view so that none falls between the two
-- (one in both is a duplicated event_id, which a trace drops).
INSERT INTO trace_context
SELECT app_id, trace_key, toUInt32(intDiv(toUnixTimestamp64Milli(ts), 600000)) AS bucket, ts, log_type, rendition,
    if(log_type = 'edge_access',
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            region, isp, cdn, node_id, protocol, rendition, duration_ms, bytes, client_ip, error,
            http_status, cache_hit, back_to_source_ms, first_byte_ms, path, dropped_packets),
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            node_id, rendition, duration_ms, dropped_frames, code, bytes, latency_ms, reason,
            bitrate_kbps, fps, state, rtt_ms, send_buffer_ms, stop_reason, target, retries, error,
            gop_cache_ms, pulls, status)) AS doc
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode', 'edge_access')
