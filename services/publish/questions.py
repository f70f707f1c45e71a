"""The questions an analyst asks first, with their SQL.

One list, used by the README (a test checks it shows each query verbatim), the
warehouse tests (run on both backends) and the query benchmark, so that the
documented SQL is the SQL that is tested and measured.
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
        "How much electricity did each zone of Lyon consume per day (kWh)?",
        """SELECT zone, day, round(sumMerge(total), 1) AS kwh, uniqMerge(entities) AS meters
FROM observations_daily
WHERE city = 'lyon' AND metric = 'active_energy_import'
GROUP BY zone, day
ORDER BY day, kwh DESC""",
    ),
    Question(
        "peak-hour-per-city",
        "At which hour (UTC) did each city consume most, day by day?",
        """SELECT city, day, argMax(hour, kwh) AS peak_hour, round(max(kwh), 1) AS peak_kwh
FROM (
    SELECT city, toDate(hour) AS day, hour, sumMerge(total) AS kwh
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
        "Which zones consumed most over the period (published daily aggregates only)?",
        """SELECT city, zone, round(sum(energy_kwh), 1) AS kwh, max(meter_count) AS meters
FROM energy_aggregates FINAL
WHERE granularity = 'P1D' AND zone != '*' AND sector = '*' AND NOT suppressed
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
