"""Figures for energy teams, from aggregates: load profile, peak hour, changes."""

from __future__ import annotations

import datetime as dt

from services.energy.report import day_changes, latest, load_profile, peak_hours

T0 = 1_763_769_600_000_000  # 2025-11-22T00:00:00Z, 01:00 in Paris
HOUR = 3_600_000_000
DAY = 24 * HOUR


def record(granularity: str, start: int, kwh: float | None, version: int = 1, **extra) -> dict:
    return {
        "city": "lyon",
        "zone": "*",
        "carrier": "electricity",
        "sector": "*",
        "granularity": granularity,
        "window_start": start,
        "version": version,
        "energy_kwh": kwh,
        "peak_kw": None if kwh is None else kwh * 1.5,
        "suppressed": kwh is None,
        **extra,
    }


def test_latest_keeps_the_highest_version() -> None:
    old, new = record("P1D", T0, 1.0, version=3), record("P1D", T0, 2.0, version=7)
    assert latest([new, old]) == [new]


def test_load_profile_and_peak_hour_in_local_time() -> None:
    hours = [record("PT1H", T0 + d * DAY + h * HOUR, 10.0 + h + d) for d in (0, 1) for h in (0, 18)]
    hours.append(record("PT1H", T0 + 5 * HOUR, None))  # withheld: left out
    profile = load_profile(hours, tz="Europe/Paris")
    assert profile[1] == 10.5 and profile[19] == 28.5  # UTC 00h is 01h in Paris (winter)
    assert profile[6] is None and sum(v is not None for v in profile) == 2
    peaks = peak_hours(hours, tz="Europe/Paris")
    assert [(p.day, p.hour, p.energy_kwh) for p in peaks] == [
        (dt.date(2025, 11, 22), 19, 28.0),
        (dt.date(2025, 11, 23), 19, 29.0),
    ]


def test_week_on_week_and_year_on_year_when_history_exists() -> None:
    days = [record("P1D", T0 - 364 * DAY, 100.0), record("P1D", T0 - 7 * DAY, 200.0)]
    days.append(record("P1D", T0, 150.0))
    [year_ago, week_ago, today] = day_changes(days)
    assert year_ago.week_on_week is None and week_ago.year_on_year is None
    assert today.week_on_week == -0.25 and today.year_on_year == 0.5


def test_days_are_the_city_local_days_and_partial_ones_are_not_compared() -> None:
    """A Paris P1D starts at 23:00 UTC the evening before: it is reported under its own
    local date (it was under the UTC date, the day before). A partial day is marked
    and no change is computed from or to it (half a day is not a 50 % drop)."""
    paris_day = T0 - HOUR  # 2025-11-22 00:00 in Paris
    days = [
        record("P1D", paris_day - 7 * DAY, 200.0),
        record("P1D", paris_day, 150.0),
        record("P1D", paris_day + 7 * DAY, 40.0, partial=True),
    ]
    _, today, partial = day_changes(days, tz="Europe/Paris")
    assert today.day == dt.date(2025, 11, 22) and today.week_on_week == -0.25
    assert partial.partial and partial.week_on_week is None
    noumea = day_changes([record("P1D", T0 - 11 * HOUR, 1.0)], tz="Pacific/Noumea")
    assert [c.day for c in noumea] == [dt.date(2025, 11, 22)]
