-- 0003_events_merge_policy: cheaper background merges of the events table.
-- Measured on this 2-core machine (see docs/storage.md): with ClickHouse's defaults, merging
-- 8M events inserted as 50k-row parts took 61.6 s of CPU (7.7 µs/event, a third of `lastmile run`
-- at 100k events/s); with the settings below it took 16.8 s. A wider merge base means each event is
-- rewritten fewer times, at the price of more active parts per day (about 30 instead of 6),
-- which the primary key keeps cheap to search. ttl_only_drop_parts drops expired days whole
-- instead of rewriting parts; events are partitioned by day, so no event outlives its TTL by more
-- than a day.
ALTER TABLE events MODIFY SETTING merge_selector_base = 50, max_parts_to_merge_at_once = 30, ttl_only_drop_parts = 1;
