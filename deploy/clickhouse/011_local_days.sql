-- A day is the city's own (services/runtime/localday.py), not a Paris day for every
-- city: each reading carries `local_day`, its date in its city's time zone (the city
-- file's `timezone`), computed by publish where the cities are known (ClickHouse
-- takes a time zone only as a constant). The daily rollup groups by it, and the
-- hourly rollup says which local day each hour belongs to (`day`), so "per day"
-- questions count 23- and 25-hour days and a city in another zone gets its own days.
-- Rows landed before this migration get the Paris day: every city shipped then was
-- in Europe/Paris.
ALTER TABLE observations ADD COLUMN IF NOT EXISTS local_day Date DEFAULT toDate(ts, 'Europe/Paris') AFTER ts;

DROP VIEW IF EXISTS observations_daily_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_daily_mv TO observations_daily AS
SELECT city, domain, metric, unit, zone, sector, step_seconds, local_day AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, day;

ALTER TABLE observations_hourly ADD COLUMN IF NOT EXISTS day Date DEFAULT toDate(hour, 'Europe/Paris') AFTER hour;

DROP VIEW IF EXISTS observations_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS observations_hourly_mv TO observations_hourly AS
SELECT city, domain, metric, unit, zone, sector, step_seconds,
       toDateTime64(toStartOfHour(ts), 0, 'UTC') AS hour, local_day AS day,
       sumState(value) AS total, countState() AS readings,
       minState(value) AS minimum, maxState(value) AS maximum, uniqState(entity) AS entities
FROM observations
GROUP BY city, domain, metric, unit, zone, sector, step_seconds, hour, day;

-- Windows the city's data covers in part (the first or last day of data, an outage).
ALTER TABLE energy_aggregates ADD COLUMN IF NOT EXISTS partial Bool DEFAULT false;

ALTER TABLE energy_aggregates_released ADD COLUMN IF NOT EXISTS partial Bool DEFAULT false;
