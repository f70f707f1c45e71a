"""Figures an energy team asks first, as pure functions over EnergyAggregate records.

- :func:`load_profile`: the average day of a zone, energy per local hour of day;
- :func:`peak_hours`: for each local day, the hour that drew the most, and its peak power;
- :func:`day_changes`: energy per local day (the P1D windows, the city's days) with its
  change on the same weekday a week before and a year (52 weeks) before, when that
  history exists. A partial day (the data covers it in part) is marked, never
  compared as if whole.

Withheld (suppressed) values are left out, never guessed. ``citeplus energy
report`` prints them from the aggregates topic; the publish stage can compute the
same from ClickHouse (``energy_aggregates FINAL``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

WEEK = dt.timedelta(days=7)
YEAR = dt.timedelta(days=364)  # 52 weeks: the same weekday a year before


def latest(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The highest version of each window key (what an upsert reader keeps)."""
    best: dict[tuple, Mapping[str, Any]] = {}
    for r in records:
        key = (r["city"], r["zone"], r["carrier"], r["sector"], r["granularity"], r["window_start"])
        if key not in best or r["version"] > best[key]["version"]:
            best[key] = r
    return list(best.values())


def _select(
    records: Iterable[Mapping[str, Any]], granularity: str, zone: str, sector: str
) -> list[Mapping[str, Any]]:
    return [
        r
        for r in records
        if r["granularity"] == granularity
        and r["zone"] == zone
        and r["sector"] == sector
        and not r["suppressed"]
    ]


def _local(t_us: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_us / 1e6, tz=dt.UTC).astimezone(tz)


def load_profile(
    records: Iterable[Mapping[str, Any]], *, zone: str = "*", sector: str = "*", tz: str
) -> list[float | None]:
    """Average energy (kWh) per local hour of day, over the days that have it."""
    zone_info = ZoneInfo(tz)
    sums: dict[int, list[float]] = defaultdict(list)
    for r in _select(records, "PT1H", zone, sector):
        sums[_local(r["window_start"], zone_info).hour].append(r["energy_kwh"])
    return [sum(sums[h]) / len(sums[h]) if sums[h] else None for h in range(24)]


@dataclass(frozen=True)
class PeakHour:
    day: dt.date
    hour: int  # local hour of day
    energy_kwh: float
    peak_kw: float | None  # None: derived from longer (daily) readings, no measured peak


def peak_hours(
    records: Iterable[Mapping[str, Any]], *, zone: str = "*", sector: str = "*", tz: str
) -> list[PeakHour]:
    """For each local day, the hour with the most energy (first one on ties)."""
    zone_info = ZoneInfo(tz)
    best: dict[dt.date, PeakHour] = {}
    for r in sorted(_select(records, "PT1H", zone, sector), key=lambda r: r["window_start"]):
        when = _local(r["window_start"], zone_info)
        current = best.get(when.date())
        if current is None or r["energy_kwh"] > current.energy_kwh:
            best[when.date()] = PeakHour(when.date(), when.hour, r["energy_kwh"], r["peak_kw"])
    return [best[d] for d in sorted(best)]


@dataclass(frozen=True)
class DayChange:
    day: dt.date
    energy_kwh: float
    week_on_week: float | None  # relative change, 0.1 = +10 %
    year_on_year: float | None
    partial: bool = False  # the city's data covers the day in part


def day_changes(
    records: Iterable[Mapping[str, Any]],
    *,
    zone: str = "*",
    sector: str = "*",
    tz: str = "Europe/Paris",
) -> list[DayChange]:
    """Energy per local day, compared with the same weekday 1 and 52 weeks before
    (changes from or to a partial day are not computed: they compare part of a day)."""
    zone_info = ZoneInfo(tz)
    selected = {
        _local(r["window_start"], zone_info).date(): r
        for r in _select(records, "P1D", zone, sector)
    }
    energy = {day: r["energy_kwh"] for day, r in selected.items()}
    partial = {day for day, r in selected.items() if r.get("partial")}

    def change(day: dt.date, back: dt.timedelta) -> float | None:
        before = energy.get(day - back)
        if not before or day in partial or day - back in partial:
            return None
        return (energy[day] - before) / before

    return [
        DayChange(d, energy[d], change(d, WEEK), change(d, YEAR), d in partial)
        for d in sorted(energy)
    ]


def render(
    records: list[Mapping[str, Any]], *, city: str, zone: str, sector: str, carrier: str, tz: str
) -> str:
    """The three figures as plain text."""
    lines = [f"{city} zone {zone} sector {sector} carrier {carrier} (hours in {tz})"]
    withheld = sum(1 for r in records if r["suppressed"])
    lines.append(f"{len(records)} windows, {withheld} withheld by statistical secrecy")
    lines.append("\naverage day, kWh per local hour:")
    for hour, value in enumerate(load_profile(records, zone=zone, sector=sector, tz=tz)):
        shown = "-" if value is None else f"{value:12.3f}"
        lines.append(f"  {hour:02d}h {shown}")
    lines.append("\npeak hour per day:")
    for p in peak_hours(records, zone=zone, sector=sector, tz=tz):
        peak = "- (derived)" if p.peak_kw is None else f"{p.peak_kw:.3f} kW"
        lines.append(f"  {p.day}  {p.hour:02d}h  {p.energy_kwh:12.3f} kWh  peak {peak}")
    lines.append(f"\nenergy per local day ({tz}), change on a week and a year before:")
    for c in day_changes(records, zone=zone, sector=sector, tz=tz):
        week = "-" if c.week_on_week is None else f"{c.week_on_week:+.1%}"
        year = "-" if c.year_on_year is None else f"{c.year_on_year:+.1%}"
        mark = "  (partial: data for part of the day)" if c.partial else ""
        lines.append(f"  {c.day}  {c.energy_kwh:14.3f} kWh  week {week:>8}  year {year:>8}{mark}")
    return "\n".join(lines)
