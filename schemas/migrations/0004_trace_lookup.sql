-- 0004_trace_lookup: storage for fast trace lookups (docs/storage.md, docs/trace.md).
--
-- Compact parts for the events table, with small compressed blocks. A trace lookup reads a few
-- rows of many columns (a play's events have ~50). chDB pays a fixed cost for every column file of
-- every part it opens (open, marks, buffers), whatever the rows: a compact part keeps all columns
-- in one file. Measured at 50M events on 2 cores, 8,192-row granules: a device's client events
-- 15.7 → 11.7 ms, its sessions' edge events 18.6 → 14.5 ms, their streams' events 24.6 → 19.4 ms
-- (p50), the same size on disk. And a column is decompressed a whole compressed block at a time:
-- blocks of 4-64 KiB instead of 64 KiB-1 MiB hold about one granule of one column (1,024 rows in
-- an events table created by this version's 0001), so a lookup decompresses about the rows it
-- reads, not 8-64 times more.
-- Applies to parts written and merged from now on.

ALTER TABLE events MODIFY SETTING min_rows_for_wide_part = 1000000000000, min_bytes_for_wide_part = 1000000000000000, min_compress_block_size = 4096, max_compress_block_size = 65536;

-- Which devices a user played on, per day: a lookup by user_id becomes a lookup by those devices,
-- which the primary key finds exactly, instead of a scan of the user_id bloom filter (whose false
-- positives cost more than the user's own granules).
CREATE TABLE IF NOT EXISTS trace_user_devices
(
    app_id LowCardinality(String),
    user_id String,
    day Date,
    device_id String,
    first_ts SimpleAggregateFunction(min, DateTime64(3)),
    last_ts SimpleAggregateFunction(max, DateTime64(3))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (app_id, user_id, day, device_id)
TTL day + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_user_devices_mv TO trace_user_devices AS
SELECT app_id, user_id, toDate(ts) AS day, device_id, min(ts) AS first_ts, max(ts) AS last_ts
FROM events
WHERE user_id != '' AND device_id != ''
GROUP BY app_id, user_id, day, device_id;

INSERT INTO trace_user_devices
SELECT app_id, user_id, toDate(ts) AS day, device_id, min(ts) AS first_ts, max(ts) AS last_ts
FROM events
WHERE user_id != '' AND device_id != '' AND (SELECT count() FROM trace_user_devices) = 0
GROUP BY app_id, user_id, day, device_id
