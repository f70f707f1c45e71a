-- GENERATED from deploy/clickhouse/012_energy_derived.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

ALTER TABLE energy_aggregates_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS derived Bool DEFAULT false;

ALTER TABLE energy_aggregates ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS derived Bool DEFAULT false;

ALTER TABLE energy_aggregates_released_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS derived Bool DEFAULT false;

ALTER TABLE energy_aggregates_released ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS derived Bool DEFAULT false;
