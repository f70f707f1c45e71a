-- Energy aggregates are upserts: the latest version of a window key wins
-- (ReplacingMergeTree on the window key, `version` as the version column).
-- Query with FINAL (or argMax by version) to see only the latest.
CREATE TABLE IF NOT EXISTS energy_aggregates
(
    city                LowCardinality(String),
    zone                LowCardinality(String),
    carrier             LowCardinality(String),
    sector              LowCardinality(String),
    granularity         LowCardinality(String),
    window_start        DateTime64(3, 'UTC'),
    window_end          DateTime64(3, 'UTC'),
    version             UInt64,
    energy_kwh          Nullable(Float64),
    meter_count         Nullable(UInt32),
    peak_kw             Nullable(Float64),
    largest_share       Nullable(Float64),
    suppressed          Bool,
    suppression_reason  LowCardinality(Nullable(String)),
    computed_at         DateTime64(3, 'UTC'),
    _topic              LowCardinality(String),
    _partition          UInt16,
    _offset             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (city, carrier, sector, granularity, zone, window_start)
SETTINGS non_replicated_deduplication_window = 10000;
