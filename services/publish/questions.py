"""The questions an analyst asks first, with their SQL.

One list, used by the README (a test checks it shows each query verbatim), the
warehouse tests (run on both backends) and the query benchmark, so that the
documented SQL is the SQL that is tested and measured. A day is the city's own
(``day`` in the rollups: its local date in the city file's ``timezone``), and every
question reads rows of the shape the pipeline writes: the whole-node test
(tests/integration/test_replay.py) checks each answer against the readings it came from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    slug: str
    question: str
    sql: str


QUESTIONS: tuple[Question, ...] = (
    Question(
        "consumption-per-zone-per-day",
        "How much electricity did each zone of Lyon consume per (local) day (kWh)?",
        """SELECT zone, day, round(sumMerge(total), 1) AS kwh, uniqMerge(entities) AS meters
FROM observations_daily
WHERE city = 'lyon' AND metric = 'active_energy_import'
GROUP BY zone, day
ORDER BY day, kwh DESC""",
    ),
    Question(
        "peak-hour-per-city",
        "At which hour (UTC) did each city consume most, local day by local day?",
        """SELECT city, day, argMax(hour, kwh) AS peak_hour, round(max(kwh), 1) AS peak_kwh
FROM (
    SELECT city, day, hour, sumMerge(total) AS kwh
    FROM observations_hourly
    WHERE metric = 'active_energy_import' AND step_seconds <= 3600
    GROUP BY city, day, hour
)
GROUP BY city, day
ORDER BY city, day""",
    ),
    Question(
        "no2-exceedances",
        "Which hours exceeded the EU hourly limit for NO2 (200 µg/m³), where?",
        """SELECT city, zone, hour, round(sumMerge(total) / countMerge(readings), 1) AS no2_ugm3
FROM observations_hourly
WHERE metric = 'no2'
GROUP BY city, zone, hour
HAVING no2_ugm3 > 200
ORDER BY no2_ugm3 DESC""",
    ),
    Question(
        "top-consuming-zones",
        "Which zones consumed most electricity over the period (daily aggregates, the "
        "sectors of each zone summed; withheld cells left out and counted)?",
        """SELECT city, zone, round(sum(kwh), 1) AS kwh, max(meters) AS meters,
       sum(withheld) AS withheld_cells
FROM (
    SELECT city, zone, window_start, coalesce(sumIf(energy_kwh, NOT suppressed), 0) AS kwh,
           coalesce(sumIf(meter_count, NOT suppressed), 0) AS meters,
           countIf(suppressed) AS withheld
    FROM energy_aggregates FINAL
    WHERE granularity = 'P1D' AND carrier = 'electricity' AND zone != '*' AND sector != '*'
    GROUP BY city, zone, window_start
)
GROUP BY city, zone
ORDER BY kwh DESC
LIMIT 10""",
    ),
    Question(
        "daily-load-profile",
        "What does an average day look like, hour by hour, per city (kWh per hour)?",
        """SELECT city, toHour(hour) AS hour_utc, round(avg(kwh), 1) AS avg_kwh
FROM (
    SELECT city, hour, sumMerge(total) AS kwh
    FROM observations_hourly
    WHERE metric = 'active_energy_import' AND step_seconds <= 3600
    GROUP BY city, hour
)
GROUP BY city, hour_utc
ORDER BY city, hour_utc""",
    ),
    Question(
        "dead-letters-by-reason",
        "What did the pipeline reject, at which stage and why?",
        """SELECT stage, reason, city, count() AS records, max(failed_at) AS last_seen
FROM dead_letters
GROUP BY stage, reason, city
ORDER BY records DESC""",
    ),
)


def question(slug: str) -> Question:
    return next(q for q in QUESTIONS if q.slug == slug)
