-- One row per reading: the sink expands every Observation series.
-- Ordered for the common filters (city, domain, metric, zone, time); low-cardinality
-- dimensions; codecs for time series. _topic/_partition/_offset record where each
-- row came from: the sink resumes after the highest offset already landed, and
-- the deduplication window absorbs an insert retried after a crash.
CREATE TABLE IF NOT EXISTS observations
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (city, domain, metric, zone, ts, entity)
SETTINGS non_replicated_deduplication_window = 10000;
