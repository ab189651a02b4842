-- 0002_qoe_rollups: the tables the metrics API reads instead of raw events, filled by materialized
-- views. Generated from schemas/rollup.go by `go generate ./schemas`; see docs/metrics.md.
-- Each INSERT ... SELECT summarises the events stored before this migration, once (the hourly tables
-- fill from their minute table's view): the guard makes a rerun after a crash a no-op, and migrations
-- run before the processor starts, so nothing else writes meanwhile.

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
    w_edge_error SimpleAggregateFunction(sum, Float64),
    w_cache_known SimpleAggregateFunction(sum, Float64),
    w_cache_miss SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (kind, app_id, minute, source, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network)
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
    w_edge_error SimpleAggregateFunction(sum, Float64),
    w_cache_known SimpleAggregateFunction(sum, Float64),
    w_cache_miss SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (kind, app_id, hour, source, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network)
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
    sum(w_edge_error) AS w_edge_error,
    sum(w_cache_known) AS w_cache_known,
    sum(w_cache_miss) AS w_cache_miss
FROM qoe_1m
GROUP BY kind, hour, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network;

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
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '')) AS w_started,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND code != 0)) AS w_start_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND code = 0)) AS w_ebvs,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND code = 0 AND play_duration_ms >= 1000)) AS w_ebvs_1s,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND code != 0)) AS w_play_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND stall_count > 0)) AS w_rebuffered,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat') AS w_view_ms,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_play_ms,
    sumIf(ifNull(stall_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stall_ms,
    sumIf(ifNull(stall_count, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stalls,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (http_status >= 400)) AS w_edge_error,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit IS NOT NULL)) AS w_cache_known,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit = false)) AS w_cache_miss
FROM events
WHERE log_type IN ('play_start', 'first_frame', 'play_stop', 'heartbeat', 'edge_access')
GROUP BY kind, minute, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network;

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
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '')) AS w_started,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND code != 0)) AS w_start_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND code = 0)) AS w_ebvs,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked != '' AND code = 0 AND play_duration_ms >= 1000)) AS w_ebvs_1s,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND code != 0)) AS w_play_failed,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'play_stop' AND (first_frame_blocked = '' AND stall_count > 0)) AS w_rebuffered,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat') AS w_view_ms,
    sumIf(ifNull(interval_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_play_ms,
    sumIf(ifNull(stall_ms, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stall_ms,
    sumIf(ifNull(stall_count, 0) * (1 / if(sample_rate > 0, sample_rate, 1)), log_type = 'heartbeat' AND (state NOT IN ('paused', 'seeking'))) AS w_stalls,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (http_status >= 400)) AS w_edge_error,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit IS NOT NULL)) AS w_cache_known,
    sumIf(1 / if(sample_rate > 0, sample_rate, 1), log_type = 'edge_access' AND (cache_hit = false)) AS w_cache_miss
FROM events
WHERE log_type IN ('play_start', 'first_frame', 'play_stop', 'heartbeat', 'edge_access') AND (SELECT count() FROM qoe_1m) = 0
GROUP BY kind, minute, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network;

CREATE TABLE IF NOT EXISTS qoe_first_frame
(
    ts DateTime64(3),
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
    sample_rate Float64,
    total_ms Nullable(Int64),
    dns_ms Nullable(Int64),
    tcp_connect_ms Nullable(Int64),
    tcp_first_packet_ms Nullable(Int64),
    video_first_packet_ms Nullable(Int64),
    first_decode_ms Nullable(Int64),
    first_render_ms Nullable(Int64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, ts)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS qoe_first_frame_mv TO qoe_first_frame AS
SELECT ts, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, sample_rate, total_ms, dns_ms, tcp_connect_ms, tcp_first_packet_ms, video_first_packet_ms, first_decode_ms, first_render_ms
FROM events
WHERE log_type = 'first_frame';

INSERT INTO qoe_first_frame
SELECT ts, source, app_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, sample_rate, total_ms, dns_ms, tcp_connect_ms, tcp_first_packet_ms, video_first_packet_ms, first_decode_ms, first_render_ms
FROM events
WHERE log_type = 'first_frame' AND (SELECT count() FROM qoe_first_frame) = 0;

CREATE TABLE IF NOT EXISTS qoe_latency_1m
(
    minute DateTime('UTC'),
    app_id LowCardinality(String),
    region LowCardinality(String),
    isp LowCardinality(String),
    cdn LowCardinality(String),
    node_id LowCardinality(String),
    protocol LowCardinality(String),
    rows SimpleAggregateFunction(sum, UInt64),
    w SimpleAggregateFunction(sum, Float64),
    q AggregateFunction(quantileExactWeighted, Int64, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(minute)
ORDER BY (app_id, minute, region, isp, cdn, node_id, protocol)
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
    rows SimpleAggregateFunction(sum, UInt64),
    w SimpleAggregateFunction(sum, Float64),
    q AggregateFunction(quantileExactWeighted, Int64, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (app_id, hour, region, isp, cdn, node_id, protocol)
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
    sum(rows) AS rows,
    sum(w) AS w,
    quantileExactWeightedMergeState(q) AS q
FROM qoe_latency_1m
GROUP BY hour, app_id, region, isp, cdn, node_id, protocol;

CREATE MATERIALIZED VIEW IF NOT EXISTS qoe_latency_1m_mv TO qoe_latency_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    quantileExactWeightedState(multiIf(assumeNotNull(latency_ms) < 1000, assumeNotNull(latency_ms), assumeNotNull(latency_ms) < 10000, intDiv(assumeNotNull(latency_ms) + 5, 10) * 10, assumeNotNull(latency_ms) < 100000, intDiv(assumeNotNull(latency_ms) + 50, 100) * 100, assumeNotNull(latency_ms) < 1000000, intDiv(assumeNotNull(latency_ms) + 500, 1000) * 1000, intDiv(assumeNotNull(latency_ms) + 5000, 10000) * 10000), toUInt64(round(1000 / if(sample_rate > 0, sample_rate, 1)))) AS q
FROM events
WHERE log_type = 'heartbeat' AND latency_ms IS NOT NULL
GROUP BY minute, app_id, region, isp, cdn, node_id, protocol;

INSERT INTO qoe_latency_1m
SELECT
    toStartOfMinute(ts) AS minute,
    app_id,
    region,
    isp,
    cdn,
    node_id,
    protocol,
    count() AS rows,
    sum(1 / if(sample_rate > 0, sample_rate, 1)) AS w,
    quantileExactWeightedState(multiIf(assumeNotNull(latency_ms) < 1000, assumeNotNull(latency_ms), assumeNotNull(latency_ms) < 10000, intDiv(assumeNotNull(latency_ms) + 5, 10) * 10, assumeNotNull(latency_ms) < 100000, intDiv(assumeNotNull(latency_ms) + 50, 100) * 100, assumeNotNull(latency_ms) < 1000000, intDiv(assumeNotNull(latency_ms) + 500, 1000) * 1000, intDiv(assumeNotNull(latency_ms) + 5000, 10000) * 10000), toUInt64(round(1000 / if(sample_rate > 0, sample_rate, 1)))) AS q
FROM events
WHERE log_type = 'heartbeat' AND latency_ms IS NOT NULL AND (SELECT count() FROM qoe_latency_1m) = 0
GROUP BY minute, app_id, region, isp, cdn, node_id, protocol;
