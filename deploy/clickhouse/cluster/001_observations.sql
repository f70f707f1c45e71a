-- GENERATED from deploy/clickhouse/001_observations.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

CREATE TABLE IF NOT EXISTS observations_local ON CLUSTER '{cluster}'
(
    city          LowCardinality(String),
    domain        LowCardinality(String),
    metric        LowCardinality(String),
    unit          LowCardinality(String),
    entity        String CODEC(ZSTD(1)),
    entity_type   LowCardinality(String),
    zone          LowCardinality(String),
    sector        LowCardinality(String),
    carrier       LowCardinality(String),
    ts            DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value         Float64 CODEC(Gorilla, ZSTD(1)),
    quality       UInt16 CODEC(T64, ZSTD(1)),
    step_seconds  UInt32 CODEC(T64, ZSTD(1)),
    source        LowCardinality(String),
    dataset       LowCardinality(String),
    lineage_id    String CODEC(ZSTD(1)),
    _topic        LowCardinality(String),
    _partition    UInt16,
    _offset       UInt64 CODEC(Delta, ZSTD(1)),
    landed_at     DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/observations_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (city, domain, metric, zone, ts, entity)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS observations ON CLUSTER '{cluster}'
AS observations_local
ENGINE = Distributed('{cluster}', currentDatabase(), observations_local, cityHash64(city, entity));
