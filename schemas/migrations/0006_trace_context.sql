-- 0006_trace_context: the events a trace shows beside a session's own, again, in a small table
-- of their own (docs/trace.md, docs/storage.md): the stream-level events of its stream (push,
-- ingest, relay, origin, transcode) and its edge's access log (edge_access).
--
-- A trace fetches them by trace key: a stream's over each session's span, an edge's by session.
-- In the events table these rows are ~8% of the rows, spread over every part of the day.
-- A stream's rows in a part share granules with other streams': the primary key cannot use ts
-- where trace_key changes inside a granule, so each span cost a granule in every part of the
-- window that holds the stream (a user's stream query: 78 granules for ~100 rows, 49-52 ms of
-- CPU; here 19-23 granules, 24-28 ms). And each session looked up cost the key search of every
-- part (an edge query of 25 sessions: 21 ms over the events table's 11 parts, 12 ms here).
-- Measured at 50M events on 2 cores.
--
-- A materialized view writes the rows, a few per insert, in one part per insert, and only the
-- columns a trace shows of them (query/trace_query.go streamCols and edgeCols; a test checks
-- that the table has them all and that the view copies exactly those log types). The events
-- table keeps them too: it is what metrics and SQL read.

CREATE TABLE IF NOT EXISTS trace_context
(
    app_id LowCardinality(String),
    trace_key String,
    ts DateTime64(3),
    event_id String,
    log_type LowCardinality(String),
    session_id String,
    stream_id String,
    region LowCardinality(String),
    isp LowCardinality(String),
    cdn LowCardinality(String),
    node_id LowCardinality(String),
    protocol LowCardinality(String),
    rendition LowCardinality(String),
    duration_ms Nullable(Int64),
    dropped_frames Nullable(Int64),
    code Nullable(Int64),
    bytes Nullable(Int64),
    latency_ms Nullable(Int64),
    reason String,
    bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    state LowCardinality(String),
    rtt_ms Nullable(Int64),
    send_buffer_ms Nullable(Int64),
    stop_reason String,
    target String,
    retries Nullable(Int64),
    error String,
    gop_cache_ms Nullable(Int64),
    pulls Nullable(Int64),
    status LowCardinality(String),
    client_ip String,
    http_status Nullable(Int64),
    cache_hit Nullable(Bool),
    back_to_source_ms Nullable(Int64),
    first_byte_ms Nullable(Int64),
    path String,
    dropped_packets Nullable(Int64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, trace_key, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS index_granularity = 256, ttl_only_drop_parts = 1, min_rows_for_wide_part = 1000000000000,
    min_bytes_for_wide_part = 1000000000000000, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_context_mv TO trace_context AS
SELECT app_id, trace_key, ts, event_id, log_type, session_id, stream_id, region, isp, cdn, node_id, protocol,
    rendition, duration_ms, dropped_frames, code, bytes, latency_ms, reason, bitrate_kbps, fps, state, rtt_ms,
    send_buffer_ms, stop_reason, target, retries, error, gop_cache_ms, pulls, status, client_ip, http_status,
    cache_hit, back_to_source_ms, first_byte_ms, path, dropped_packets
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode', 'edge_access');

-- The events stored before this migration. After the view, so that none falls between the two;
-- a row that a writer's insert put in both (or a second copy after a crash before this
-- migration's record) is a duplicated event_id, which a trace drops anyway.
INSERT INTO trace_context
SELECT app_id, trace_key, ts, event_id, log_type, session_id, stream_id, region, isp, cdn, node_id, protocol,
    rendition, duration_ms, dropped_frames, code, bytes, latency_ms, reason, bitrate_kbps, fps, state, rtt_ms,
    send_buffer_ms, stop_reason, target, retries, error, gop_cache_ms, pulls, status, client_ip, http_status,
    cache_hit, back_to_source_ms, first_byte_ms, path, dropped_packets
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode', 'edge_access')
