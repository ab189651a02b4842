-- 0012_request: the request log_type, one media request of a play as its player timed it
-- (CMCD v2 event mode e=rr; docs/players.md): its new columns and its view. Generated from
-- schemas/catalog.go and schemas/ddl.go by `go generate ./schemas`.

ALTER TABLE events ADD COLUMN IF NOT EXISTS ttfb_ms Nullable(Int64);

ALTER TABLE events ADD COLUMN IF NOT EXISTS ttlb_ms Nullable(Int64);

CREATE OR REPLACE VIEW request AS
SELECT event_id, log_type, ts, source, app_id, device_id, user_id, session_id, room_id, stream_id, region, isp, cdn, node_id, protocol, rendition, codec, app_version, os, network, received_at, sample_rate, url, http_status, ttfb_ms, ttlb_ms, cmcd_ot, cmcd_br, cmcd_d, cmcd_bl, cmcd_mtp, kafka_partition, kafka_offset
FROM events
WHERE log_type = 'request';
