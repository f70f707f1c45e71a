-- Hourly and daily rollups of every metric, kept up to date by materialised views
-- as readings land (AggregatingMergeTree: query with sumMerge/countMerge/...).
CREATE TABLE IF NOT EXISTS observations_hourly
(
    city     LowCardinality(String),
    domain   LowCardinality(String),
    metric   LowCardinality(String),
    unit     LowCardinality(String),
    zone     LowCardinality(String),
    sector   LowCardinality(String),
    hour     DateTime64(0, 'UTC'),
    total    AggregateFunction(sum, Float64),
    readings AggregateFunction(count),
    minimum  AggregateFunction(min, Float64),
    maximum  AggregateFunction(max, Float64),
    entities AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (city, domain, metric, zone, sector, unit, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv TO observations_hourly AS
SELECT city, domain, metric, unit, zone, sector, toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, hour;

CREATE TABLE IF NOT EXISTS observations_daily
(
    city     LowCardinality(String),
    domain   LowCardinality(String),
    metric   LowCardinality(String),
    unit     LowCardinality(String),
    zone     LowCardinality(String),
    sector   LowCardinality(String),
    day      Date,
    total    AggregateFunction(sum, Float64),
    readings AggregateFunction(count),
    minimum  AggregateFunction(min, Float64),
    maximum  AggregateFunction(max, Float64),
    entities AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (city, domain, metric, zone, sector, unit, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv TO observations_daily AS
SELECT city, domain, metric, unit, zone, sector, toDate(ts, 'Europe/Paris') AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, day;
