-- 0010_alerts: the alert evaluator's state and history, and its delivery log (docs/alerts.md).
-- Written by hand (not generated). One row per alert, keyed by its fingerprint (a hash of its
-- labels) and start; a state change inserts the row again with a later updated_at, and readers
-- take the latest with FINAL. A restarted evaluator reads the firing ones back, so it neither
-- loses an alert nor announces it again with a new start.

CREATE TABLE IF NOT EXISTS alerts
(
    fingerprint String,
    starts_at DateTime64(3, 'UTC'),
    rule LowCardinality(String),
    state LowCardinality(String),
    labels Map(String, String),
    annotations Map(String, String),
    value Float64,
    expected Float64,
    samples Int64,
    ends_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (fingerprint, starts_at)
TTL toDateTime(starts_at) + INTERVAL {ttl_days} DAY;

-- Per alert, receiver and event (firing or resolved): how many attempts the last delivery took,
-- whether it got through, and the last HTTP status or error.
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    fingerprint String,
    starts_at DateTime64(3, 'UTC'),
    receiver LowCardinality(String),
    event LowCardinality(String),
    attempts UInt32,
    delivered Bool,
    last_status String,
    last_error String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (fingerprint, starts_at, receiver, event)
TTL toDateTime(starts_at) + INTERVAL {ttl_days} DAY;
