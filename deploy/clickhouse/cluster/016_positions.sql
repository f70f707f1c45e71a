-- GENERATED from deploy/clickhouse/016_positions.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

ALTER TABLE observations_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS lat Nullable(Float64) AFTER zone,
ADD COLUMN IF NOT EXISTS lon Nullable(Float64) AFTER lat;

ALTER TABLE observations ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS lat Nullable(Float64) AFTER zone,
ADD COLUMN IF NOT EXISTS lon Nullable(Float64) AFTER lat;
