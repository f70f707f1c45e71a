-- GENERATED from deploy/clickhouse/011_local_days.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

ALTER TABLE observations_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS local_day Date DEFAULT toDate(ts, 'Europe/Paris') AFTER ts;

ALTER TABLE observations ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS local_day Date DEFAULT toDate(ts, 'Europe/Paris') AFTER ts;

DROP VIEW IF EXISTS observations_daily_mv ON CLUSTER '{cluster}' SYNC;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv ON CLUSTER '{cluster}' TO observations_daily_local AS
SELECT city, domain, metric, unit, zone, sector, step_seconds, local_day AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations_local
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, day;

ALTER TABLE observations_hourly_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS day Date DEFAULT toDate(hour, 'Europe/Paris') AFTER hour;

ALTER TABLE observations_hourly ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS day Date DEFAULT toDate(hour, 'Europe/Paris') AFTER hour;

DROP VIEW IF EXISTS observations_hourly_mv ON CLUSTER '{cluster}' SYNC;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv ON CLUSTER '{cluster}' TO observations_hourly_local AS
SELECT city, domain, metric, unit, zone, sector, step_seconds,
       toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour, local_day AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations_local
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, hour, day;

ALTER TABLE energy_aggregates_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS partial Bool DEFAULT false;

ALTER TABLE energy_aggregates ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS partial Bool DEFAULT false;

ALTER TABLE energy_aggregates_released_local ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS partial Bool DEFAULT false;

ALTER TABLE energy_aggregates_released ON CLUSTER '{cluster}'
ADD COLUMN IF NOT EXISTS partial Bool DEFAULT false;
