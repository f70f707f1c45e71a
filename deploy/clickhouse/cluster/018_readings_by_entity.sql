-- GENERATED from deploy/clickhouse/018_readings_by_entity.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

CREATE TABLE IF NOT EXISTS readings_by_entity_local ON CLUSTER '{cluster}'
(
    city      LowCardinality(String),
    source    LowCardinality(String),
    entity    String CODEC(ZSTD(1)),
    metric    LowCardinality(String),
    unit      LowCardinality(String),
    ts        DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value     Float64 CODEC(Gorilla, ZSTD(1)),
    version   UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/readings_by_entity_local', '{replica}', version)
PARTITION BY toYYYYMM(ts)
ORDER BY (city, source, entity, metric, ts);

CREATE TABLE IF NOT EXISTS readings_by_entity ON CLUSTER '{cluster}'
AS readings_by_entity_local
ENGINE = Distributed('{cluster}', currentDatabase(), readings_by_entity_local, cityHash64(city, entity));

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_by_entity_mv ON CLUSTER '{cluster}' TO readings_by_entity_local AS
SELECT city, source, entity, metric, unit, ts, value, version
FROM observations_local;

INSERT INTO readings_by_entity
SELECT city, source, entity, metric, unit, ts, value, version
FROM observations;
