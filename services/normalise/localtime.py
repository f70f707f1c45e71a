"""The repeated autumn hour for sources that send local times one row at a time.

:func:`services.runtime.timeparse.parse_time_column` places a local time of the
repeated hour (02:00-02:59 twice on the last Sunday of October in Europe/Paris)
by its order in the column. A source that pushes one row per request gives a
column of one row: the order is in what the entity sent before, kept in its
normalise state. A time the column could not place (``TIME_AMBIGUOUS``, read as
the first pass) is:

- the second pass when the entity already has a reading at or after that first
  pass (the meter moved on, then its clock went back an hour);
- the first pass, no longer ambiguous, when the entity's latest reading lies in
  the hour before it (the meter is coming through the night in order);
- still the first pass and flagged ``TIME_AMBIGUOUS`` otherwise (nothing to go
  by: a new entity, or a gap): never dropped.

Anywhere else, a time seen again is a correction (:mod:`services.normalise.versions`).
A source that *corrects* readings inside the repeated hour must send offsets
(``+02:00`` / ``+01:00``): without one, the correction of the first pass reads as
the second pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from services.runtime.timeparse import TIME_AMBIGUOUS

US = 1_000_000
HOUR_US = 3600 * US


def latest_time(state: dict[str, Any] | None) -> int | None:
    """The entity's latest reading time for one metric (published or register)."""
    if not state:
        return None
    found = [t for t in (state.get("hwm"), (state.get("reg") or [None])[0]) if t is not None]
    return max(found) if found else None


@lru_cache(maxsize=4096)
def _shift(t_us: int, timezone: str) -> int:
    """µs from the first pass of a repeated local time to its second pass."""
    local = datetime.fromtimestamp(t_us / US, UTC).astimezone(ZoneInfo(timezone))
    first = local.replace(fold=0).utcoffset()
    second = local.replace(fold=1).utcoffset()
    if first is None or second is None or first <= second:
        return 0
    return (first - second) // timedelta(microseconds=1)


def place_repeated_hour(
    times: list[int | None], flags: list[int], state: dict[str, Any] | None, timezone: str
) -> tuple[list[int | None], list[int]]:
    """``times`` and ``flags`` with the ambiguous first passes placed from ``state``."""
    latest = latest_time(state)
    if latest is None:
        return times, flags
    times, flags = list(times), list(flags)
    for i, (t, flag) in enumerate(zip(times, flags, strict=True)):
        if t is None or not flag & TIME_AMBIGUOUS:
            continue
        if latest >= t:
            shift = _shift(t, timezone)
            if shift:
                times[i] = t + shift
                flags[i] = flag & ~TIME_AMBIGUOUS
        elif latest >= t - HOUR_US:
            flags[i] = flag & ~TIME_AMBIGUOUS
    return times, flags
