-- 0011_edge_cmcd: the CMCD of each edge request, kept in edge_access: typed columns for the keys
-- metrics use, the rest as CMCD text (cmcd_rest) and as a map (cmcd). Generated from schemas/catalog.go
-- and schemas/ddl.go by `go generate ./schemas`; see docs/edge-cors.md. trace_context's view is
-- replaced so that a trace's edge requests show their CMCD; migrations run before the processor
-- starts, so no insert falls between the drop and the create.

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_bl Nullable(Int64);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_br Nullable(Int64);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_mtp Nullable(Int64);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_d Nullable(Int64);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_rtp Nullable(Int64);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_ot LowCardinality(String);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_sf LowCardinality(String);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_st LowCardinality(String);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_su Nullable(Bool);

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd_rest String;

ALTER TABLE events ADD COLUMN IF NOT EXISTS cmcd Map(String, String) MATERIALIZED extractKeyValuePairsWithEscaping(cmcd_rest, '=', ',', '"');

CREATE OR REPLACE VIEW edge_access AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, http_status, cache_hit, back_to_source_ms, first_byte_ms, bytes, duration_ms, client_ip, path, dropped_packets, error, cmcd_bl, cmcd_br, cmcd_mtp, cmcd_d, cmcd_rtp, cmcd_ot, cmcd_sf, cmcd_st, cmcd_su, cmcd_rest, cmcd, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'edge_access';

DROP VIEW IF EXISTS trace_context_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_context_mv TO trace_context AS
SELECT app_id, trace_key, toUInt32(intDiv(toUnixTimestamp64Milli(ts), 600000)) AS bucket, ts, log_type, rendition,
    if(log_type = 'edge_access',
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            region, isp, cdn, node_id, protocol, rendition, duration_ms, bytes, client_ip, error,
            http_status, cache_hit, back_to_source_ms, first_byte_ms, path, dropped_packets,
            cmcd_bl, cmcd_br, cmcd_mtp, cmcd_d, cmcd_rtp, cmcd_ot, cmcd_sf, cmcd_st, cmcd_su, cmcd_rest),
        formatRowNoNewline('JSONEachRow',
            event_id, log_type, toUnixTimestamp64Milli(ts) AS ts_ms, app_id, session_id, stream_id,
            node_id, rendition, duration_ms, dropped_frames, code, bytes, latency_ms, reason,
            bitrate_kbps, fps, state, rtt_ms, send_buffer_ms, stop_reason, target, retries, error,
            gop_cache_ms, pulls, status)) AS doc
FROM events
WHERE log_type IN ('push_start', 'push_stats', 'push_stop', 'ingest_session', 'relay', 'origin_stream', 'transcode', 'edge_access');
