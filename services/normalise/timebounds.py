"""Plausible times per source: a reading outside them is a dead letter, not data.

A clock that sends epoch seconds in a milliseconds field lands in January 1970,
an unset field reads as year 0001 or 9999, and a time before year 1 cannot even
be shown as a date: none of them is a real reading, and each would open or
close windows downstream. A source declares what it finds plausible in its
mapping (defaults below)::

    mapping:
      plausible_time: {not_before: "2000-01-01", ahead: P1D}

``not_before`` is a UTC date; ``ahead`` how far after the record's reception
(``received_at``, set by ingest) a reading may lie: deterministic on a replay,
unlike the wall clock of the normalise process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

US = 1_000_000
DAY_US = 86_400 * US
DEFAULT_NOT_BEFORE = date(2000, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REASON = "time-implausible"


def _date_us(day: date) -> int:
    return (day.toordinal() - date(1970, 1, 1).toordinal()) * DAY_US


@dataclass(frozen=True)
class TimeBounds:
    """Readings must lie in ``[earliest_us, received_at + ahead_us]``."""

    earliest_us: int = _date_us(DEFAULT_NOT_BEFORE)
    ahead_us: int = DAY_US

    def implausible(self, times: Sequence[int | None], received_at: int | None) -> list[int]:
        """Positions of the times outside the bounds (None times are someone else's)."""
        # a reception time that is itself implausible (0 in hand-made records) says nothing
        known = received_at is not None and received_at >= self.earliest_us
        latest = received_at + self.ahead_us if known else None
        low = self.earliest_us
        present = times if times and None not in times else None  # the usual case, in C
        if present and min(present) >= low and (latest is None or max(present) <= latest):
            return []
        return _outside(times, low, latest)

    def describe(self) -> str:
        """The bounds in words, for dead letters and ``citeplus normalise check``."""
        first = datetime.fromtimestamp(self.earliest_us / US, UTC).date().isoformat()
        return (
            f"not before {first} UTC and at most {self.ahead_us / 3_600_000_000:g} h "
            "after the record was received"
        )


def _outside(times: Sequence[int | None], low: int, latest: int | None) -> list[int]:
    """Positions of the times before ``low`` or after ``latest`` (None: no upper
    bound known), the None ones aside."""
    if latest is None:
        return [i for i, t in enumerate(times) if t is not None and t < low]
    return [i for i, t in enumerate(times) if t is not None and not low <= t <= latest]


def bounds_from_config(
    raw: Any, parse_seconds: Callable[[str], int | None], fail: Callable[[str, str], Exception]
) -> TimeBounds:
    """A ``plausible_time:`` block; ``fail(key, message)`` builds the ConfigError."""
    if raw is None:
        return TimeBounds()
    if not isinstance(raw, dict) or set(raw) - {"not_before", "ahead"}:
        raise fail("plausible_time", 'expected {not_before: "YYYY-MM-DD", ahead: P1D}')
    earliest = TimeBounds.earliest_us
    if "not_before" in raw:
        text = raw["not_before"]
        try:
            day = text if isinstance(text, date) else date.fromisoformat(str(text))
        except ValueError:
            raise fail("plausible_time.not_before", "expected a date YYYY-MM-DD") from None
        if day.year < 1970:
            raise fail("plausible_time.not_before", "expected a date from 1970 on")
        earliest = _date_us(day)
    ahead = TimeBounds.ahead_us
    if "ahead" in raw:
        seconds = parse_seconds(str(raw["ahead"]))
        if seconds is None:
            raise fail("plausible_time.ahead", "expected an ISO 8601 duration such as P1D or PT6H")
        ahead = seconds * US
    return TimeBounds(earliest, ahead)


__all__ = ["REASON", "TimeBounds", "bounds_from_config"]
