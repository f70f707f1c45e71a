"""Interval grids of local days, built in UTC so that DST days come out right.

A local day in Europe/Paris lasts 23 or 25 hours twice a year; stepping in UTC
from local midnight to the next local midnight gives 138 or 150 ten-minute
intervals on those days, as real meter exports do, instead of a missing or
doubled hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_days(start: date, days: int) -> list[date]:
    """The ``days`` consecutive calendar days from ``start``."""
    return [start + timedelta(days=n) for n in range(days)]


def day_starts(day: date, zone: ZoneInfo, step: timedelta) -> list[datetime]:
    """UTC start of every ``step`` interval of a local day (midnight to midnight)."""
    begin = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return [begin + n * step for n in range((end - begin) // step)]


def utc_iso(moment: datetime) -> str:
    """``2025-01-13T07:10:00Z``: what brokers and platforms write for UTC."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())
