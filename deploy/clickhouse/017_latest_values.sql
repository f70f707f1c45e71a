-- The latest reading of every (city, source, entity, metric), kept as readings land:
-- what the federation API's QueryEntities (the common API's NGSI-LD entities) reads,
-- one row per entity and metric instead of a scan of every reading. The view keeps
-- each insert block's latest row; ReplacingMergeTree keeps the highest `rank`
-- (time in ms x 1024 + version: a correction of the latest reading replaces it, one
-- of an older reading does not). Query it with FINAL. Rows landed before this
-- migration are copied once (the INSERT below).
CREATE TABLE IF NOT EXISTS observations_latest
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
ENGINE = ReplacingMergeTree(rank)
ORDER BY (city, source, entity, metric);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_latest_mv TO observations_latest AS
SELECT city, source, entity, metric,
       argMax(entity_type, (ts, version)) AS entity_type, argMax(zone, (ts, version)) AS zone,
       argMax(lat, (ts, version)) AS lat, argMax(lon, (ts, version)) AS lon,
       any(unit) AS unit, argMax(value, (ts, version)) AS value,
       argMax(quality, (ts, version)) AS quality, max(ts) AS last_ts,
       max(toUInt64(toUnixTimestamp64Milli(ts)) * 1024 + version) AS rank
FROM observations
GROUP BY city, source, entity, metric;

INSERT INTO observations_latest
SELECT city, source, entity, metric,
       argMax(entity_type, (ts, version)) AS entity_type, argMax(zone, (ts, version)) AS zone,
       argMax(lat, (ts, version)) AS lat, argMax(lon, (ts, version)) AS lon,
       any(unit) AS unit, argMax(value, (ts, version)) AS value,
       argMax(quality, (ts, version)) AS quality, max(ts) AS last_ts,
       max(toUInt64(toUnixTimestamp64Milli(ts)) * 1024 + version) AS rank
FROM observations
GROUP BY city, source, entity, metric
