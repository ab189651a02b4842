-- 0001_init: one table per log_type and the rejected table.
-- Generated from schemas/catalog.go by `go generate ./schemas`; later changes go in new files.

CREATE TABLE IF NOT EXISTS play_start
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
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, device_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS first_frame
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
    total_ms Int64,
    dns_ms Nullable(Int64),
    tcp_connect_ms Nullable(Int64),
    tcp_first_packet_ms Nullable(Int64),
    video_first_packet_ms Nullable(Int64),
    first_decode_ms Nullable(Int64),
    first_render_ms Nullable(Int64),
    server_ip String,
    edge_cached Nullable(Bool),
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, device_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS stall
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
    duration_ms Int64,
    buffer_ms_before Nullable(Int64),
    cause LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, device_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS render_stall
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
    duration_ms Int64,
    buffer_ms_before Nullable(Int64),
    cause LowCardinality(String),
    dropped_frames Nullable(Int64),
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, device_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS play_stop
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
    code Int64,
    first_frame_blocked LowCardinality(String),
    play_duration_ms Nullable(Int64),
    stall_count Nullable(Int64),
    stall_total_ms Nullable(Int64),
    bytes Nullable(Int64),
    latency_ms Nullable(Int64),
    reason String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, device_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS heartbeat
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
    interval_ms Nullable(Int64),
    buffer_ms Nullable(Int64),
    bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    latency_ms Nullable(Int64),
    bytes Nullable(Int64),
    stall_count Nullable(Int64),
    stall_ms Nullable(Int64),
    state LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, device_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS push_start
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
    target_bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    width Nullable(Int64),
    height Nullable(Int64),
    connect_ms Nullable(Int64),
    server_ip String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS push_stats
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
    interval_ms Nullable(Int64),
    bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    dropped_frames Nullable(Int64),
    rtt_ms Nullable(Int64),
    send_buffer_ms Nullable(Int64),
    bytes Nullable(Int64),
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS push_stop
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
    code Int64,
    reason String,
    duration_ms Nullable(Int64),
    bytes Nullable(Int64),
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ingest_session
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
    state LowCardinality(String),
    bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    dropped_frames Nullable(Int64),
    duration_ms Nullable(Int64),
    bytes Nullable(Int64),
    client_ip String,
    stop_reason String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS relay
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
    state LowCardinality(String),
    target String,
    latency_ms Nullable(Int64),
    bytes Nullable(Int64),
    retries Nullable(Int64),
    error String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS origin_stream
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
    state LowCardinality(String),
    bitrate_kbps Nullable(Float64),
    fps Nullable(Float64),
    gop_cache_ms Nullable(Int64),
    pulls Nullable(Int64),
    error String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS transcode
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
    status LowCardinality(String),
    latency_ms Nullable(Int64),
    fps Nullable(Float64),
    bitrate_kbps Nullable(Float64),
    error String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, stream_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS edge_access
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
    status Int64,
    cache_hit Nullable(Bool),
    back_to_source_ms Nullable(Int64),
    first_byte_ms Nullable(Int64),
    bytes Nullable(Int64),
    duration_ms Nullable(Int64),
    client_ip String,
    path String,
    dropped_packets Nullable(Int64),
    error String,
    kafka_partition UInt32,
    kafka_offset Int64,
    INDEX idx_device_id device_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stream_id stream_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_room_id room_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (app_id, session_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

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
