-- GENERATED from deploy/clickhouse/017_latest_values.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

CREATE TABLE IF NOT EXISTS observations_latest_local ON CLUSTER '{cluster}'
(
    city         LowCardinality(String),
    source       LowCardinality(String),
    entity       String CODEC(ZSTD(1)),
    metric       LowCardinality(String),
    entity_type  LowCardinality(String),
    zone         LowCardinality(String),
    lat          Nullable(Float64),
    lon          Nullable(Float64),
    unit         LowCardinality(String),
    value        Float64,
    quality      UInt16,
    last_ts      DateTime64(3, 'UTC'),
    rank         UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/observations_latest_local', '{replica}', rank)
ORDER BY (city, source, entity, metric);

CREATE TABLE IF NOT EXISTS observations_latest ON CLUSTER '{cluster}'
AS observations_latest_local
ENGINE = Distributed('{cluster}', currentDatabase(), observations_latest_local, cityHash64(city, entity));

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_latest_mv ON CLUSTER '{cluster}' TO observations_latest_local AS
SELECT city, source, entity, metric,
       argMax(entity_type, (ts, version)) AS entity_type, argMax(zone, (ts, version)) AS zone,
       argMax(lat, (ts, version)) AS lat, argMax(lon, (ts, version)) AS lon,
       any(unit) AS unit, argMax(value, (ts, version)) AS value,
       argMax(quality, (ts, version)) AS quality, max(ts) AS last_ts,
       max(toUInt64(toUnixTimestamp64Milli(ts)) * 1024 + version) AS rank
FROM observations_local
GROUP BY city, source, entity, metric;

INSERT INTO observations_latest
SELECT city, source, entity, metric,
       argMax(entity_type, (ts, version)) AS entity_type, argMax(zone, (ts, version)) AS zone,
       argMax(lat, (ts, version)) AS lat, argMax(lon, (ts, version)) AS lon,
       any(unit) AS unit, argMax(value, (ts, version)) AS value,
       argMax(quality, (ts, version)) AS quality, max(ts) AS last_ts,
       max(toUInt64(toUnixTimestamp64Milli(ts)) * 1024 + version) AS rank
FROM observations
GROUP BY city, source, entity, metric;
