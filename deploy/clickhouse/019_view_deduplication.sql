-- A retried insert counts once in the rollups too. The sink gives each insert a
-- deduplication token (its topic, partitions and offset ranges): an insert retried as
-- is (its answer lost) is dropped by `observations` (non_replicated_deduplication_window,
-- 001), but the materialised views still wrote their blocks again, so the hourly and
-- daily totals and the latest values counted it twice (measured, chDB 26.9), although
-- deduplication in dependent views (deduplicate_blocks_in_dependent_materialized_views)
-- is on by default there: a non-replicated table honours it only with a deduplication
-- window of its own, given here to every view's table. The adapters also send that
-- setting with every token, for servers where it is off.
ALTER TABLE observations_hourly MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE observations_daily MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE observations_latest MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE readings_by_entity MODIFY SETTING non_replicated_deduplication_window = 10000;
