-- GENERATED from deploy/clickhouse/010_energy_aggregates_released.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

CREATE TABLE IF NOT EXISTS energy_aggregates_released_local ON CLUSTER '{cluster}'
(
    city                LowCardinality(String),
    zone                LowCardinality(String),
    carrier             LowCardinality(String),
    sector              LowCardinality(String),
    granularity         LowCardinality(String),
    window_start        DateTime64(3, 'UTC'),
    window_end          DateTime64(3, 'UTC'),
    energy_kwh          Nullable(Float64),
    meter_count         Nullable(UInt32),
    peak_kw             Nullable(Float64),
    suppressed          Bool,
    suppression_reason  LowCardinality(Nullable(String)),
    closed_by           LowCardinality(String),
    released_at         DateTime64(3, 'UTC'),
    _topic              LowCardinality(String),
    _partition          UInt16,
    _offset             UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/energy_aggregates_released_local', '{replica}')
PARTITION BY toYYYYMM(window_start)
ORDER BY (city, carrier, sector, granularity, zone, window_start)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS energy_aggregates_released ON CLUSTER '{cluster}'
AS energy_aggregates_released_local
ENGINE = Distributed('{cluster}', currentDatabase(), energy_aggregates_released_local, cityHash64(city, zone));
