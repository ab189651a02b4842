-- 0009_qoe_rollups_fps_latency: the sums rollups with the frame-rate measures, and the latency
-- rollups keyed by room_id and stream_id too. Generated from schemas/catalog.go and schemas/rollup.go
-- by `go generate ./schemas`; see docs/metrics.md.
-- The rebuilt tables are dropped and summarised again from the events table (they hold nothing the
-- events do not, and have the same retention). A rerun after a crash drops and rebuilds again;
-- migrations run before the processor starts, so nothing else writes meanwhile.

DROP VIEW IF EXISTS qoe_1h_mv;

DROP VIEW IF EXISTS qoe_1m_mv;

DROP VIEW IF EXISTS qoe_latency_1h_mv;

DROP VIEW IF EXISTS qoe_latency_1m_mv;

DROP TABLE IF EXISTS qoe_1m;

DROP TABLE IF EXISTS qoe_1h;

DROP TABLE IF EXISTS qoe_latency_1m;

DROP TABLE IF EXISTS qoe_latency_1h;

CREATE TABLE IF NOT EXISTS qoe_1m
(
    kind LowCardinality(String),
    minute DateTime('UTC'),
    source LowCardinality(String),
    app_id LowCardinality(String),
    region LowCardinality(String),
    isp LowCardinality(String),
    cdn LowCardinality(String),
    node_id LowCardinality(String),
    protocol LowCardinality(String),
    rendition LowCardinality(String),
    codec LowCardinality(String),
    app_version LowCardinality(String),
    os LowCardinality(String),
    network LowCardinality(String),
    room_id LowCardinality(String),
    stream_id LowCardinality(String),
    code LowCardinality(String),
    first_frame_blocked LowCardinality(String),
    rows SimpleAggregateFunction(sum, UInt64),
    w SimpleAggregateFunction(sum, Float64),
    w_started SimpleAggregateFunction(sum, Float64),
    w_start_failed SimpleAggregateFunction(sum, Float64),
    w_ebvs SimpleAggregateFunction(sum, Float64),
    w_ebvs_1s SimpleAggregateFunction(sum, Float64),
    w_play_failed SimpleAggregateFunction(sum, Float64),
    w_rebuffered SimpleAggregateFunction(sum, Float64),
    w_view_ms SimpleAggregateFunction(sum, Float64),
    w_play_ms SimpleAggregateFunction(sum, Float64),
    w_stall_ms SimpleAggregateFunction(sum, Float64),
    w_stalls SimpleAggregateFunction(sum, Float64),
    w_render_stall_ms SimpleAggregateFunction(sum, Float64),
    w_render_stalls SimpleAggregateFunction(sum, Float64),
    w_render_stalled SimpleAggregateFunction(sum, Float64),
    w_frames_ms SimpleAggregateFunction(sum, Float64),
    w_fps_ms SimpleAggregateFunction(sum, Float64),
    w_view_end SimpleAggregateFunction(sum, Float64),
    w_view_started SimpleAggregateFunction(sum, Float64),
    w_view_start_failed SimpleAggregateFunction(sum, Float64),
    w_view_play_failed SimpleAggregateFunction(sum, Float64),
    w_edge_error SimpleAggregateFunction(sum, Float64),
    w_cache_known SimpleAggregateFunction(sum, Float64),
    w_cache_miss SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (kind, app_id, minute, source, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, room_id, stream_id, code, first_frame_blocked)
TTL minute + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS qoe_1h
(
    kind LowCardinality(String),
    hour DateTime('UTC'),
    source LowCardinality(String),
    app_id LowCardinality(String),
    region LowCardinality(String),
    isp LowCardinality(String),
    cdn LowCardinality(String),
    node_id LowCardinality(String),
    protocol LowCardinality(String),
    rendition LowCardinality(String),
    codec LowCardinality(String),
    app_version LowCardinality(String),
    os LowCardinality(String),
    network LowCardinality(String),
    room_id LowCardinality(String),
    stream_id LowCardinality(String),
    code LowCardinality(String),
    first_frame_blocked LowCardinality(String),
    rows SimpleAggregateFunction(sum, UInt64),
    w SimpleAggregateFunction(sum, Float64),
    w_started SimpleAggregateFunction(sum, Float64),
    w_start_failed SimpleAggregateFunction(sum, Float64),
    w_ebvs SimpleAggregateFunction(sum, Float64),
    w_ebvs_1s SimpleAggregateFunction(sum, Float64),
    w_play_failed SimpleAggregateFunction(sum, Float64),
    w_rebuffered SimpleAggregateFunction(sum, Float64),
    w_view_ms SimpleAggregateFunction(sum, Float64),
    w_play_ms SimpleAggregateFunction(sum, Float64),
    w_stall_ms SimpleAggregateFunction(sum, Float64),
    w_stalls SimpleAggregateFunction(sum, Float64),
    w_render_stall_ms SimpleAggregateFunction(sum, Float64),
    w_render_stalls SimpleAggregateFunction(sum, Float64),
    w_render_stalled SimpleAggregateFunction(sum, Float64),
    w_frames_ms SimpleAggregateFunction(sum, Float64),
    w_fps_ms SimpleAggregateFunction(sum, Float64),
    w_view_end SimpleAggregateFunction(sum, Float64),
    w_view_started SimpleAggregateFunction(sum, Float64),
    w_view_start_failed SimpleAggregateFunction(sum, Float64),
    w_view_play_failed SimpleAggregateFunction(sum, Float64),
    w_edge_error SimpleAggregateFunction(sum, Float64),
    w_cache_known SimpleAggregateFunction(sum, Float64),
    w_cache_miss SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (kind, app_id, hour, source, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, room_id, stream_id, code, first_frame_blocked)
TTL hour + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS qoe_1h_mv TO qoe_1h AS
SELECT
    kind,
    toStartOfHour(minute) AS hour,
    source,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    rendition,
    codec,
    app_version,
    os,
    network,
    room_id,
    stream_id,
    code,
    first_frame_blocked,
    sum(rows) AS rows,
    sum(w) AS w,
    sum(w_started) AS w_started,
    sum(w_start_failed) AS w_start_failed,
    sum(w_ebvs) AS w_ebvs,
    sum(w_ebvs_1s) AS w_ebvs_1s,
    sum(w_play_failed) AS w_play_failed,
    sum(w_rebuffered) AS w_rebuffered,
    sum(w_view_ms) AS w_view_ms,
    sum(w_play_ms) AS w_play_ms,
    sum(w_stall_ms) AS w_stall_ms,
    sum(w_stalls) AS w_stalls,
    sum(w_render_stall_ms) AS w_render_stall_ms,
    sum(w_render_stalls) AS w_render_stalls,
    sum(w_render_stalled) AS w_render_stalled,
    sum(w_frames_ms) AS w_frames_ms,
    sum(w_fps_ms) AS w_fps_ms,
    sum(w_view_end) AS w_view_end,
    sum(w_view_started) AS w_view_started,
    sum(w_view_start_failed) AS w_view_start_failed,
    sum(w_view_play_failed) AS w_view_play_failed,
    sum(w_edge_error) AS w_edge_error,
    sum(w_cache_known) AS w_cache_known,
    sum(w_cache_miss) AS w_cache_miss
FROM qoe_1m
GROUP BY kind, hour, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, room_id, stream_id, code, first_frame_blocked;

CREATE MATERIALIZED VIEW IF NOT EXISTS qoe_1m_mv TO qoe_1m AS
SELECT
    log_type AS kind,
    toStartOfMinute(ts) AS minute,
    source,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    rendition,
    codec,
    app_version,
    os,
    network,
    room_id,
    stream_id,
    ifNull(toString(events.code), '') AS code,
    first_frame_blocked,
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '')) AS w_started,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND events.code != 0)) AS w_start_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND events.code = 0)) AS w_ebvs,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND events.code = 0 AND play_duration_ms >= 1000)) AS w_ebvs_1s,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND events.code != 0)) AS w_play_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND stall_count > 0)) AS w_rebuffered,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat') AS w_view_ms,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_play_ms,
    sumIf(ifNull(stall_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stall_ms,
    sumIf(ifNull(stall_count, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stalls,
    sumIf(ifNull(render_stall_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_render_stall_ms,
    sumIf(ifNull(render_stall_count, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_render_stalls,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND render_stall_count > 0)) AS w_render_stalled,
    sumIf(ifNull(fps * interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking') AND fps IS NOT NULL)) AS w_frames_ms,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking') AND fps IS NOT NULL)) AS w_fps_ms,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false))) AS w_view_end,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false) AND first_frame_blocked = '')) AS w_view_started,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false) AND first_frame_blocked != '' AND events.code != 0)) AS w_view_start_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false) AND first_frame_blocked = '' AND events.code != 0)) AS w_view_play_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (http_status >= 400)) AS w_edge_error,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit IS NOT NULL)) AS w_cache_known,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit = false)) AS w_cache_miss
FROM events
WHERE log_type IN ('play_start', 'first_frame', 'play_stop', 'heartbeat', 'edge_access')
GROUP BY kind, minute, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, room_id, stream_id, code, first_frame_blocked;

INSERT INTO qoe_1m
SELECT
    log_type AS kind,
    toStartOfMinute(ts) AS minute,
    source,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    rendition,
    codec,
    app_version,
    os,
    network,
    room_id,
    stream_id,
    ifNull(toString(events.code), '') AS code,
    first_frame_blocked,
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '')) AS w_started,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND events.code != 0)) AS w_start_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND events.code = 0)) AS w_ebvs,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND events.code = 0 AND play_duration_ms >= 1000)) AS w_ebvs_1s,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND events.code != 0)) AS w_play_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND stall_count > 0)) AS w_rebuffered,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat') AS w_view_ms,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_play_ms,
    sumIf(ifNull(stall_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stall_ms,
    sumIf(ifNull(stall_count, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stalls,
    sumIf(ifNull(render_stall_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_render_stall_ms,
    sumIf(ifNull(render_stall_count, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_render_stalls,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND render_stall_count > 0)) AS w_render_stalled,
    sumIf(ifNull(fps * interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking') AND fps IS NOT NULL)) AS w_frames_ms,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking') AND fps IS NOT NULL)) AS w_fps_ms,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false))) AS w_view_end,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false) AND first_frame_blocked = '')) AS w_view_started,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false) AND first_frame_blocked != '' AND events.code != 0)) AS w_view_start_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (NOT ifNull(will_retry, false) AND first_frame_blocked = '' AND events.code != 0)) AS w_view_play_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (http_status >= 400)) AS w_edge_error,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit IS NOT NULL)) AS w_cache_known,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit = false)) AS w_cache_miss
FROM events
WHERE log_type IN ('play_start', 'first_frame', 'play_stop', 'heartbeat', 'edge_access') AND (SELECT count() FROM qoe_1m) = 0
GROUP BY kind, minute, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, room_id, stream_id, code, first_frame_blocked;

CREATE TABLE IF NOT EXISTS qoe_latency_1m
(
    minute DateTime('UTC'),
    app_id LowCardinality(String),
    region LowCardinality(String),
    isp LowCardinality(String),
    cdn LowCardinality(String),
    node_id LowCardinality(String),
    protocol LowCardinality(String),
    room_id LowCardinality(String),
    stream_id LowCardinality(String),
    rows SimpleAggregateFunction(sum, UInt64),
    w SimpleAggregateFunction(sum, Float64),
    q AggregateFunction(quantileExactWeighted, Int64, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (app_id, minute, region, isp, cdn, node_id, protocol, room_id, stream_id)
TTL minute + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS qoe_latency_1h
(
    hour DateTime('UTC'),
    app_id LowCardinality(String),
    region LowCardinality(String),
    isp LowCardinality(String),
    cdn LowCardinality(String),
    node_id LowCardinality(String),
    protocol LowCardinality(String),
    room_id LowCardinality(String),
    stream_id LowCardinality(String),
    rows SimpleAggregateFunction(sum, UInt64),
    w SimpleAggregateFunction(sum, Float64),
    q AggregateFunction(quantileExactWeighted, Int64, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, hour, region, isp, cdn, node_id, protocol, room_id, stream_id)
TTL hour + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS qoe_latency_1h_mv TO qoe_latency_1h AS
SELECT
    toStartOfHour(minute) AS hour,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    room_id,
    stream_id,
    sum(rows) AS rows,
    sum(w) AS w,
    quantileExactWeightedMergeState(q) AS q
FROM qoe_latency_1m
GROUP BY hour, app_id, region, isp, cdn, node_id, protocol, room_id, stream_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS qoe_latency_1m_mv TO qoe_latency_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    room_id,
    stream_id,
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    quantileExactWeightedState(multiIf(assumeNotNull(latency_ms) < 1000, assumeNotNull(latency_ms), assumeNotNull(latency_ms) < 10000, intDiv(assumeNotNull(latency_ms) + 5, 10) * 10, assumeNotNull(latency_ms) < 100000, intDiv(assumeNotNull(latency_ms) + 50, 100) * 100, assumeNotNull(latency_ms) < 1000000, intDiv(assumeNotNull(latency_ms) + 500, 1000) * 1000, intDiv(assumeNotNull(latency_ms) + 5000, 10000) * 10000), toUInt64(round(1000 / if(sample_rate > 0, sample_rate, 1)))) AS q
FROM events
WHERE log_type = 'heartbeat' AND latency_ms IS NOT NULL
GROUP BY minute, app_id, region, isp, cdn, node_id, protocol, room_id, stream_id;

INSERT INTO qoe_latency_1m
SELECT
    toStartOfMinute(ts) AS minute,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    room_id,
    stream_id,
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    quantileExactWeightedState(multiIf(assumeNotNull(latency_ms) < 1000, assumeNotNull(latency_ms), assumeNotNull(latency_ms) < 10000, intDiv(assumeNotNull(latency_ms) + 5, 10) * 10, assumeNotNull(latency_ms) < 100000, intDiv(assumeNotNull(latency_ms) + 50, 100) * 100, assumeNotNull(latency_ms) < 1000000, intDiv(assumeNotNull(latency_ms) + 500, 1000) * 1000, intDiv(assumeNotNull(latency_ms) + 5000, 10000) * 10000), toUInt64(round(1000 / if(sample_rate > 0, sample_rate, 1)))) AS q
FROM events
WHERE log_type = 'heartbeat' AND latency_ms IS NOT NULL AND (SELECT count() FROM qoe_latency_1m) = 0
GROUP BY minute, app_id, region, isp, cdn, node_id, protocol, room_id, stream_id;
