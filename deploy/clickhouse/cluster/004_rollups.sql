-- GENERATED from deploy/clickhouse/004_rollups.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

CREATE TABLE IF NOT EXISTS observations_hourly_local ON CLUSTER '{cluster}'
(
    city     LowCardinality(String),
    domain   LowCardinality(String),
    metric   LowCardinality(String),
    unit     LowCardinality(String),
    zone     LowCardinality(String),
    sector   LowCardinality(String),
    step_seconds UInt32,
    hour     DateTime64(0, 'UTC'),
    total    AggregateFunction(sum, Float64),
    readings AggregateFunction(count),
    minimum  AggregateFunction(min, Float64),
    maximum  AggregateFunction(max, Float64),
    entities AggregateFunction(uniq, String)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/observations_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (city, domain, metric, zone, sector, unit, step_seconds, hour);

CREATE TABLE IF NOT EXISTS observations_hourly ON CLUSTER '{cluster}'
AS observations_hourly_local
ENGINE = Distributed('{cluster}', currentDatabase(), observations_hourly_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv ON CLUSTER '{cluster}' TO observations_hourly_local AS
SELECT city, domain, metric, unit, zone, sector, step_seconds,
       toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations_local
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, hour;

CREATE TABLE IF NOT EXISTS observations_daily_local ON CLUSTER '{cluster}'
(
    city     LowCardinality(String),
    domain   LowCardinality(String),
    metric   LowCardinality(String),
    unit     LowCardinality(String),
    zone     LowCardinality(String),
    sector   LowCardinality(String),
    step_seconds UInt32,
    day      Date,
    total    AggregateFunction(sum, Float64),
    readings AggregateFunction(count),
    minimum  AggregateFunction(min, Float64),
    maximum  AggregateFunction(max, Float64),
    entities AggregateFunction(uniq, String)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/observations_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (city, domain, metric, zone, sector, unit, step_seconds, day);

CREATE TABLE IF NOT EXISTS observations_daily ON CLUSTER '{cluster}'
AS observations_daily_local
ENGINE = Distributed('{cluster}', currentDatabase(), observations_daily_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv ON CLUSTER '{cluster}' TO observations_daily_local AS
SELECT city, domain, metric, unit, zone, sector, step_seconds, toDate(ts, 'Europe/Paris') AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations_local
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, day;
