-- 0006_trace_streams: the stream-level events again, in a small table of their own, for trace
-- lookups (docs/trace.md, docs/storage.md).
--
-- A trace fetches the events of its sessions' streams (push, ingest, relay, origin, transcode)
-- as ranges of the sort key, (trace_key, ts), one per session. In the events table those rows are
-- ~4% of the rows, spread over every part of the day, and a stream's rows in a part share
-- granules with other streams': the primary key cannot use ts where trace_key changes inside a
-- granule, so each span costs a granule in every part of the window that holds the stream, not
-- only in the parts of its time. A user's stream query read 78 granules there for ~100 rows.
-- Here the rows of a day merge into a few parts of their own, in 256-row granules: 19-23
-- granules, 52 -> 24-28 ms of CPU for the same query (50M events, 2 cores).
--
-- A materialized view writes the rows, a few per insert (the stream-level events of the block),
-- and only the columns a trace shows of them (query/trace_query.go streamCols; a test checks
-- that the table has them all). The events table keeps them too: it is what metrics and SQL read.

CREATE TABLE IF NOT EXISTS trace_streams
(
    app_id LowCardinality(String),
    trace_key String,
    ts DateTime64(3),
    event_id String,
    log_type LowCardinality(String),
    session_id String,
    stream_id String,
    node_id LowCardinality(String),
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
    status LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, trace_key, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS index_granularity = 256, ttl_only_drop_parts = 1, min_rows_for_wide_part = 1000000000000,
    min_bytes_for_wide_part = 1000000000000000, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_streams_mv TO trace_streams AS
SELECT app_id, trace_key, ts, event_id, log_type, session_id, stream_id, node_id, rendition, duration_ms,
    dropped_frames, code, bytes, latency_ms, reason, bitrate_kbps, fps, state, rtt_ms, send_buffer_ms,
    stop_reason, target, retries, error, gop_cache_ms, pulls, status
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode');

-- The stream-level events stored before this migration. After the view, so that none falls
-- between the two; a row that a writer's insert put in both (or a second copy after a crash
-- before this migration's record) is a duplicated event_id, which a trace drops anyway.
INSERT INTO trace_streams
SELECT app_id, trace_key, ts, event_id, log_type, session_id, stream_id, node_id, rendition, duration_ms,
    dropped_frames, code, bytes, latency_ms, reason, bitrate_kbps, fps, state, rtt_ms, send_buffer_ms,
    stop_reason, target, retries, error, gop_cache_ms, pulls, status
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode')
