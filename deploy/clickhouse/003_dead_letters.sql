-- Dead letters for operators: what was rejected, where, why, from dlq.v1 only
-- (never raw.dlq.v1). Letters of ingest and anonymise are redacted: no original,
-- a message without values that points to the raw letter; original bytes are kept
-- only for stages after anonymise (never personal data in clear there).
CREATE TABLE IF NOT EXISTS dead_letters
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (failed_at, stage, reason)
TTL toDateTime(failed_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;
