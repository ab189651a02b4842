-- 0001_init: the events table, one view per log_type, and the rejected table.
-- Generated from schemas/catalog.go by `go generate ./schemas`; later changes go in new files.

CREATE TABLE IF NOT EXISTS events
(
    event_id String,
    log_type LowCardinality(String),
    ts DateTime64(3),
    source LowCardinality(String),
    app_id LowCardinality(String),
    device_id String,
    user_id String,
    session_id String,
    room_id String,
    stream_id String,
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
    received_at DateTime64(3),
    sample_rate Float64,
    url String,
    line LowCardinality(String),
    attempt Nullable(Int64),
    schedule_ms Nullable(Int64),
    total_ms Nullable(Int64),
    dns_ms Nullable(Int64),
    tcp_connect_ms Nullable(Int64),
    tcp_first_packet_ms Nullable(Int64),
    video_first_packet_ms Nullable(Int64),
    first_decode_ms Nullable(Int64),
    first_render_ms Nullable(Int64),
    server_ip String,
    edge_cached Nullable(Bool),
    duration_ms Nullable(Int64),
    buffer_ms_before Nullable(Int64),
    cause LowCardinality(String),
    dropped_frames Nullable(Int64),
    code Nullable(Int64),
    first_frame_blocked LowCardinality(String),
    play_duration_ms Nullable(Int64),
    stall_count Nullable(Int64),
    stall_total_ms Nullable(Int64),
    bytes Nullable(Int64),
    latency_ms Nullable(Int64),
    reason String,
    interval_ms Nullable(Int64),
    buffer_ms Nullable(Int64),
    bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    stall_ms Nullable(Int64),
    state LowCardinality(String),
    target_bitrate_kbps Nullable(Float64),
    width Nullable(Int64),
    height Nullable(Int64),
    connect_ms Nullable(Int64),
    rtt_ms Nullable(Int64),
    send_buffer_ms Nullable(Int64),
    client_ip String,
    stop_reason String,
    target String,
    retries Nullable(Int64),
    error String,
    gop_cache_ms Nullable(Int64),
    pulls Nullable(Int64),
    status LowCardinality(String),
    http_status Nullable(Int64),
    cache_hit Nullable(Bool),
    back_to_source_ms Nullable(Int64),
    first_byte_ms Nullable(Int64),
    path String,
    dropped_packets Nullable(Int64),
    trace_key String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 8,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 8,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 8,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 8,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 8
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, trace_key, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 10000, min_rows_for_wide_part = 1000000, min_bytes_for_wide_part = 134217728;

CREATE VIEW IF NOT EXISTS play_start AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, url, line, attempt, schedule_ms, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'play_start';

CREATE VIEW IF NOT EXISTS first_frame AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, total_ms, dns_ms, tcp_connect_ms, tcp_first_packet_ms, video_first_packet_ms, first_decode_ms, first_render_ms, server_ip, edge_cached, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'first_frame';

CREATE VIEW IF NOT EXISTS stall AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, duration_ms, buffer_ms_before, cause, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'stall';

CREATE VIEW IF NOT EXISTS render_stall AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, duration_ms, buffer_ms_before, cause, dropped_frames, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'render_stall';

CREATE VIEW IF NOT EXISTS play_stop AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, code, first_frame_blocked, play_duration_ms, stall_count, stall_total_ms, bytes, latency_ms, reason, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'play_stop';

CREATE VIEW IF NOT EXISTS heartbeat AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, interval_ms, buffer_ms, bitrate_kbps, fps, latency_ms, bytes, stall_count, stall_ms, state, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'heartbeat';

CREATE VIEW IF NOT EXISTS push_start AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, url, target_bitrate_kbps, fps, width, height, connect_ms, server_ip, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'push_start';

CREATE VIEW IF NOT EXISTS push_stats AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, interval_ms, bitrate_kbps, fps, dropped_frames, rtt_ms, send_buffer_ms, bytes, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'push_stats';

CREATE VIEW IF NOT EXISTS push_stop AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, code, reason, duration_ms, bytes, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'push_stop';

CREATE VIEW IF NOT EXISTS ingest_session AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, state, bitrate_kbps, fps, dropped_frames, duration_ms, bytes, client_ip, stop_reason, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'ingest_session';

CREATE VIEW IF NOT EXISTS relay AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, state, target, latency_ms, bytes, retries, error, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'relay';

CREATE VIEW IF NOT EXISTS origin_stream AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, state, bitrate_kbps, fps, gop_cache_ms, pulls, error, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'origin_stream';

CREATE VIEW IF NOT EXISTS transcode AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, status, latency_ms, fps, bitrate_kbps, error, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'transcode';

CREATE VIEW IF NOT EXISTS edge_access AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, http_status, cache_hit, back_to_source_ms, first_byte_ms, bytes, duration_ms, client_ip, path, dropped_packets, error, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'edge_access';

CREATE TABLE IF NOT EXISTS rejected
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
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (app_id, device_id, received_at, event_id)
TTL toDateTime(received_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
