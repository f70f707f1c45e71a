-- GENERATED from deploy/clickhouse/003_dead_letters.sql by `citeplus warehouse ddl --cluster --write`
-- (services/publish/cluster_ddl.py). Do not edit: change the single-node file and
-- regenerate; tests/unit/test_cluster_ddl.py fails while this file is stale.
-- Needs the macros {cluster}, {shard} and {replica} on every server.

CREATE TABLE IF NOT EXISTS dead_letters_local ON CLUSTER '{cluster}'
(
    stage             LowCardinality(String),
    reason            LowCardinality(String),
    message           String CODEC(ZSTD(3)),
    city              LowCardinality(String),
    source            LowCardinality(String),
    source_topic      LowCardinality(String),
    source_partition  Nullable(Int32),
    source_offset     Nullable(Int64),
    original_size     UInt32,
    original_value    String CODEC(ZSTD(3)),
    failed_at         DateTime64(3, 'UTC'),
    _topic            LowCardinality(String),
    _partition        UInt16,
    _offset           UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/dead_letters_local', '{replica}')
PARTITION BY toYYYYMM(failed_at)
ORDER BY (failed_at, stage, reason)
TTL toDateTime(failed_at) + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS dead_letters ON CLUSTER '{cluster}'
AS dead_letters_local
ENGINE = Distributed('{cluster}', currentDatabase(), dead_letters_local, cityHash64(_topic, _partition));
