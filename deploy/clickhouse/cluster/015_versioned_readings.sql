-- GENERATED from deploy/clickhouse/015_versioned_readings.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

ALTER TABLE observations_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS version UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER step_seconds,
ADD COLUMN IF NOT EXISTS replaced Nullable(Float64) AFTER version;

ALTER TABLE observations ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS version UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER step_seconds,
ADD COLUMN IF NOT EXISTS replaced Nullable(Float64) AFTER version;

DROP VIEW IF EXISTS observations_hourly_mv ON CLUSTER '{cluster}' SYNC;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv ON CLUSTER '{cluster}' TO observations_hourly_local AS
SELECT city, domain, metric, unit, zone, sector, step_seconds,
       toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour, local_day AS day,
       sumState(value - ifNull(replaced, 0)) AS total, countStateIf(version = 0) AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations_local
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, hour, day;

DROP VIEW IF EXISTS observations_daily_mv ON CLUSTER '{cluster}' SYNC;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv ON CLUSTER '{cluster}' TO observations_daily_local AS
SELECT city, domain, metric, unit, zone, sector, step_seconds, local_day AS day,
       sumState(value - ifNull(replaced, 0)) AS total, countStateIf(version = 0) AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations_local
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, day;
