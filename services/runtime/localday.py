"""The city's day: one definition, used wherever a day or a month is counted.

A day is the calendar day in the city's time zone (its city file's ``timezone``,
IANA name, default Europe/Paris): in Paris it runs 00:00-24:00 local time, that is
22:00 or 23:00 UTC the evening before to the same the next evening, and it lasts
23 hours on the spring DST day and 25 on the autumn one. energy-analytics' P1D
windows and their close, the warehouse's daily rollups, the federation API's P1D,
the energy report and the README questions all use these functions, and the
pseudonym key epochs use :func:`month_of` (a local month is a whole number of
local days, so no day sees a meter under two pseudonyms).

Times are epoch microseconds (UTC). Day bounds are exact integers, cached per
(zone, local date): a caller walking a series asks once per day, not per reading.
A local midnight that does not exist (a zone whose DST starts at 00:00) starts
the day at the first instant that does; a repeated one starts it at the first.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

US = 1_000_000
QUARTER_US = 900 * US
HOUR_US = 3600 * US
DAY_US = 86_400 * US
DEFAULT_TIMEZONE = "Europe/Paris"


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(t_us: int, timezone: str) -> dt.date:
    """The city's calendar date at ``t_us``."""
    return dt.datetime.fromtimestamp(t_us // US, _zone(timezone)).date()


@lru_cache(maxsize=65_536)
def date_start(date: dt.date, timezone: str) -> int:
    """The first instant (UTC µs) of a local date."""
    zone = _zone(timezone)
    midnight = dt.datetime.combine(date, dt.time(), tzinfo=zone)
    start = int(midnight.timestamp()) * US
    if local_date(start, timezone) != date:  # a midnight in a gap: mapped past the gap
        start -= HOUR_US
        while local_date(start, timezone) != date:
            start += QUARTER_US
    return start


def date_bounds(date: dt.date, timezone: str) -> tuple[int, int]:
    """[start, end) of a local date in UTC µs: 23, 24 or 25 hours long on DST days."""
    return date_start(date, timezone), date_start(date + dt.timedelta(days=1), timezone)


def day_bounds(t_us: int, timezone: str) -> tuple[int, int]:
    """[start, end) of the local day holding ``t_us``."""
    return date_bounds(local_date(t_us, timezone), timezone)


def day_start(t_us: int, timezone: str) -> int:
    """Start (UTC µs) of the local day holding ``t_us``."""
    return day_bounds(t_us, timezone)[0]


def day_end(start_us: int, timezone: str) -> int:
    """End of the local day that starts at ``start_us`` (its next day's start)."""
    return day_bounds(start_us, timezone)[1]


@lru_cache(maxsize=65_536)
def _month_of_quarter(quarter: int, timezone: str) -> str:
    local = dt.datetime.fromtimestamp(quarter * 900, _zone(timezone))
    return f"{local.year:04d}-{local.month:02d}"


def month_of(t_us: int, timezone: str) -> str:
    """The city's calendar month (``YYYY-MM``) at ``t_us``.

    Cached per UTC quarter hour: every zone's offset is a whole number of quarter
    hours, so a local midnight (and a month's start) never falls inside one.
    """
    return _month_of_quarter(t_us // QUARTER_US, timezone)


__all__ = [
    "DEFAULT_TIMEZONE",
    "date_bounds",
    "date_start",
    "day_bounds",
    "day_end",
    "day_start",
    "local_date",
    "month_of",
]
