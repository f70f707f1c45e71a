-- Hourly and daily rollups of every metric, kept up to date by materialised views
-- as readings land (AggregatingMergeTree: query with sumMerge/countMerge/...).
-- step_seconds keeps series of different resolutions apart: a daily total (a
-- source coarsened for privacy) must not be read as an hour's consumption.
CREATE TABLE IF NOT EXISTS observations_hourly
(
    city     LowCardinality(String),
    domain   LowCardinality(String),
    metric   LowCardinality(String),
    unit     LowCardinality(String),
    zone     LowCardinality(String),
    sector   LowCardinality(String),
    step_seconds UInt32,
    hour     DateTime64(0, 'UTC'),
    total    AggregateFunction(sum, Float64),
    readings AggregateFunction(count),
    minimum  AggregateFunction(min, Float64),
    maximum  AggregateFunction(max, Float64),
    entities AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (city, domain, metric, zone, sector, unit, step_seconds, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv TO observations_hourly AS
SELECT city, domain, metric, unit, zone, sector, step_seconds,
       toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, hour;

CREATE TABLE IF NOT EXISTS observations_daily
(
    city     LowCardinality(String),
    domain   LowCardinality(String),
    metric   LowCardinality(String),
    unit     LowCardinality(String),
    zone     LowCardinality(String),
    sector   LowCardinality(String),
    step_seconds UInt32,
    day      Date,
    total    AggregateFunction(sum, Float64),
    readings AggregateFunction(count),
    minimum  AggregateFunction(min, Float64),
    maximum  AggregateFunction(max, Float64),
    entities AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (city, domain, metric, zone, sector, unit, step_seconds, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv TO observations_daily AS
SELECT city, domain, metric, unit, zone, sector, step_seconds, toDate(ts, 'Europe/Paris') AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, day;
