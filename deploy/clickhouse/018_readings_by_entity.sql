-- Every reading again, ordered by entity: what one entity's history (the federation
-- API's QueryTemporal, the common API's temporal entities) reads. `observations` is
-- ordered for questions over many entities (city, domain, metric, zone, time), where
-- one entity's readings are spread over every granule of its metric: reading them
-- scanned the whole range (80 ms for one station among 2,000 over a month here);
-- here they are contiguous. A correction (version + 1, same time) replaces the
-- reading it corrects when parts merge (ReplacingMergeTree(version); read with
-- FINAL), as the sink's delete does in `observations`. Rows landed before this
-- migration are copied once (the INSERT below).
CREATE TABLE IF NOT EXISTS readings_by_entity
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
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (city, source, entity, metric, ts);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_by_entity_mv TO readings_by_entity AS
SELECT city, source, entity, metric, unit, ts, value, version
FROM observations;

INSERT INTO readings_by_entity
SELECT city, source, entity, metric, unit, ts, value, version
FROM observations
