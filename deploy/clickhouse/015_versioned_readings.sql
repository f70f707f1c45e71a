-- Versioned readings (docs/normalise.md, "Corrections"): a correction of a reading
-- lands as a new row with version > 0 and the value it replaced (kept for audit);
-- the sink then deletes the row it supersedes (same city, metric, entity and time,
-- version one lower), so `observations` holds the latest value of every reading.
-- The rollups are fed by the inserts: a correction adds (value - replaced) to the
-- total and no reading to the count, so totals and counts are those of the latest
-- values (min and max still remember the replaced value: they only widen). Days are
-- the city's local days (011_local_days.sql).
ALTER TABLE observations
    ADD COLUMN IF NOT EXISTS version UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER step_seconds,
    ADD COLUMN IF NOT EXISTS replaced Nullable(Float64) AFTER version;

DROP VIEW IF EXISTS observations_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv TO observations_hourly AS
SELECT city, domain, metric, unit, zone, sector, step_seconds,
       toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour, local_day AS day,
       sumState(value - ifNull(replaced, 0)) AS total, countStateIf(version = 0) AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, hour, day;

DROP VIEW IF EXISTS observations_daily_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv TO observations_daily AS
SELECT city, domain, metric, unit, zone, sector, step_seconds, local_day AS day,
       sumState(value - ifNull(replaced, 0)) AS total, countStateIf(version = 0) AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, day;
