-- GENERATED from deploy/clickhouse/019_view_deduplication.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

ALTER TABLE observations_hourly_local ON CLUSTER '{cluster}'
MODIFY SETTING replicated_deduplication_window = 10000;

ALTER TABLE observations_daily_local ON CLUSTER '{cluster}'
MODIFY SETTING replicated_deduplication_window = 10000;

ALTER TABLE observations_latest_local ON CLUSTER '{cluster}'
MODIFY SETTING replicated_deduplication_window = 10000;

ALTER TABLE readings_by_entity_local ON CLUSTER '{cluster}'
MODIFY SETTING replicated_deduplication_window = 10000;
