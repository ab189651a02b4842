-- 0005_trace_sessions: an index of play sessions by device and by user (docs/trace.md).
--
-- A trace lookup by device or user reads here which sessions it has and when, then fetches each
-- session's events as ranges of the events table's sort key, (trace_key, ts): the store opens only
-- the parts its sessions are in, not every part of the window, and the three fetches (client, edge,
-- stream events) run side by side. Replaces 0004's trace_user_devices and its materialized view.
--
-- The processor writes the rows, not a materialized view: a view writes a row per event (two, by
-- device and by user), and at 100k events/s that cost the ingest path its latency target (measured,
-- docs/storage.md). The processor writes a session's rows when it first sees the session, when an
-- event comes before its first_ts, when one comes more than 5 minutes (TraceSessionQuantum) after
-- the last_ts it wrote, and when one brings a user_id the session did not have: first_ts is exact,
-- and every event of the session is at most 5 minutes after its last_ts. An AggregatingMergeTree
-- folds the rows as parts merge; readers group.

DROP VIEW IF EXISTS trace_user_devices_mv;

DROP TABLE IF EXISTS trace_user_devices;

CREATE TABLE IF NOT EXISTS trace_sessions
(
    lookup LowCardinality(String),
    lookup_id String,
    day Date DEFAULT toDate(first_ts),
    app_id LowCardinality(String),
    session_id String,
    trace_key String,
    stream_id String,
    rendition LowCardinality(String),
    first_ts SimpleAggregateFunction(min, DateTime64(3)),
    last_ts SimpleAggregateFunction(max, DateTime64(3))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (lookup, lookup_id, day, app_id, session_id, trace_key, stream_id, rendition)
TTL day + INTERVAL {ttl_days} DAY
SETTINGS index_granularity = 256, min_rows_for_wide_part = 1000000000000, min_bytes_for_wide_part = 1000000000000000,
    min_compress_block_size = 4096, max_compress_block_size = 65536, non_replicated_deduplication_window = 10000;

-- The sessions of the events stored before this migration (exact spans). As the processor does,
-- a session's user row spans all of it, also its events from before the user_id came.
INSERT INTO trace_sessions (lookup, lookup_id, day, app_id, session_id, trace_key, stream_id, rendition, first_ts, last_ts)
SELECT lk.1 AS lookup, lk.2 AS lookup_id, day, app_id, session_id, trace_key, stream_id, rendition, first_ts, last_ts
FROM
(
    SELECT toDate(ts) AS day, app_id, session_id, trace_key, device_id, stream_id, rendition,
        min(ts) AS first_ts, max(ts) AS last_ts, groupUniqArrayIf(user_id, user_id != '') AS users
    FROM events
    WHERE log_type IN ('play_start', 'first_frame', 'stall', 'render_stall', 'play_stop', 'heartbeat')
        AND session_id != '' AND (SELECT count() FROM trace_sessions) = 0
    GROUP BY day, app_id, session_id, trace_key, device_id, stream_id, rendition
)
ARRAY JOIN arrayConcat([('device_id', device_id)], arrayMap(u -> ('user_id', u), users)) AS lk
WHERE lk.2 != ''
SETTINGS max_bytes_before_external_group_by = 1000000000
