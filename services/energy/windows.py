"""Event time for energy aggregates: the city's local days, and what one meter's
readings add to the windows of one day.

Everything here is pure arithmetic on integers (epoch microseconds) and floats.

- A reading is energy (kWh) over an interval ``[t, t + step)``. A reading whose
  interval straddles window boundaries is split in proportion to time (a 10-minute
  reading at 00:10 puts half its energy in the 00:00 quarter, half in 00:15).
  A reading of an irregular series (``times``, step 0) has no known length: its
  energy goes to the quarter holding its time and it takes no part in the peak.
- A day is the city's local day (:mod:`services.runtime.localday`): 00:00-24:00
  in its time zone, 23, 24 or 25 hours long. Its windows are tumbling, counted
  from the day's start: 92, 96 or 100 quarters (PT15M) and 23, 24 or 25 hours
  (PT1H) — UTC quarters and hours for a zone whose offset is whole hours (Paris),
  so the repeated autumn hour is an hour of its own — and the day (P1D).
  Hours and the day are sums of quarters, so the three granularities always agree.
- A meter's power over an interval is its energy divided by the interval's
  length in hours; a cell's summed power is piecewise constant, kept as a sweep
  of breakpoints (+p where an interval starts, -p where it ends). The peak of a
  window is the highest summed power over any instant of it, so an hour's peak
  is the highest of its quarters' and the day's the highest of all.
- A reading longer than a window (an hourly or daily reading) spread over its
  quarters (or hours) gives them *derived* energy, not measured energy, and its
  average power is no peak: such windows are counted per meter (``dq``, ``dh``)
  and published flagged ``derived``, with no peak.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any, NamedTuple

from services.runtime import localday

US = 1_000_000
QUARTER_US = 900 * US
HOUR_US = 3600 * US
DAY_US = 86_400 * US
QUARTERS = 96
HOURS = 24
QUARTERS_PER_HOUR = 4

GRANULARITIES = ("PT15M", "PT1H", "P1D")
WINDOW_US = {"PT15M": QUARTER_US, "PT1H": HOUR_US, "P1D": DAY_US}

# A piece of a reading inside one day: (offset from the day's start in µs,
# length in µs (0 for an instant), energy in kWh).
Piece = tuple[int, int, float]


@lru_cache(maxsize=4096)
def day_end(day: int, timezone: str) -> int:
    """End of the local day starting at ``day`` (asked for every record: cached)."""
    return localday.day_end(day, timezone)


def day_quarters(day: int, timezone: str) -> int:
    """How many quarters the local day starting at ``day`` has (92, 96 or 100 in Paris)."""
    return -(-(day_end(day, timezone) - day) // QUARTER_US)


def pieces_by_day(record: Mapping[str, Any], timezone: str) -> dict[int, list[Piece]]:
    """Split an Observation's readings into pieces per local day, in time order.

    The day's bounds are looked up once per day, not per reading."""
    values: Sequence[float] = record["values"]
    step = record["step_seconds"]
    out: dict[int, list[Piece]] = defaultdict(list)
    day, day_end = 0, -1  # the current day: [day, day_end)
    if step and step > 0:
        step_us = step * US
        t = record["start"]
        for value in values:
            end = t + step_us
            if not day <= t < day_end:
                day, day_end = localday.day_bounds(t, timezone)
            if end <= day_end:
                out[day].append((t - day, step_us, value))
            else:  # a reading across local midnight is shared in proportion to time
                a = t
                while a < end:
                    if not day <= a < day_end:
                        day, day_end = localday.day_bounds(a, timezone)
                    b = min(end, day_end)
                    out[day].append((a - day, b - a, value * (b - a) / step_us))
                    a = b
            t = end
    else:
        for t, value in zip(record["times"], values, strict=True):
            if not day <= t < day_end:
                day, day_end = localday.day_bounds(t, timezone)
            out[day].append((t - day, 0, value))
    return dict(out)


def reading_span(record: Mapping[str, Any]) -> tuple[int, int]:
    """(first instant, end of the last interval) of an Observation, in µs."""
    if record["step_seconds"] and record["step_seconds"] > 0:
        start = record["start"]
        return start, start + record["step_seconds"] * US * len(record["values"])
    times = record["times"]
    return min(times), max(times)


# -- one meter's day: replace, never add twice -------------------------------------------


def _overlaps(a1: int, l1: int, a2: int, l2: int) -> bool:
    if l1 == 0 and l2 == 0:
        return a1 == a2
    if l1 == 0:
        return a2 <= a1 < a2 + l2
    if l2 == 0:
        return a1 <= a2 < a1 + l1
    return a1 < a2 + l2 and a2 < a1 + l1


def merge_pieces(
    old: Sequence[Piece], new: Iterable[Piece]
) -> tuple[list[Piece], list[Piece], list[Piece]]:
    """(merged, removed, added): ``new`` pieces replace every old piece they overlap.

    A reading sent twice (a replayed batch, a corrected value) therefore replaces
    the first one instead of being counted again. Old pieces equal to a new one
    are neither removed nor added (no change at all).
    """
    cleaned = _in_order(list(new))
    if not old:
        return cleaned, [], cleaned
    removed_idx, unchanged = _overlapped(old, cleaned)
    kept_unchanged = {old[i] for i in unchanged}
    added = [p for p in cleaned if p not in kept_unchanged]
    removed = [old[i] for i in sorted(removed_idx)]
    merged = sorted([p for i, p in enumerate(old) if i not in removed_idx and i not in unchanged])
    merged = sorted(merged + cleaned)
    return merged, removed, added


def _in_order(pieces: list[Piece]) -> list[Piece]:
    """``pieces`` in time order without overlaps, as they usually already are.

    Out of order or overlapping (an irregular series): within one record, a later
    reading wins over an earlier one it overlaps."""
    if not any(a[0] + a[1] > b[0] or a[0] == b[0] for a, b in pairwise(pieces)):
        return pieces
    fresh: dict[int, Piece] = {}
    for piece in pieces:
        fresh[piece[0]] = piece
    cleaned: list[Piece] = []
    for piece in sorted(fresh.values()):
        if cleaned and _overlaps(*cleaned[-1][:2], *piece[:2]):
            cleaned[-1] = piece
        else:
            cleaned.append(piece)
    return cleaned


def _overlapped(old: Sequence[Piece], cleaned: Sequence[Piece]) -> tuple[set[int], set[int]]:
    """(replaced, unchanged): indexes of the ``old`` pieces a ``cleaned`` piece overlaps,
    split by whether the new piece differs (replaced) or is the very same (unchanged).

    ``old`` is sorted by start, so each new piece only looks at its neighbours."""
    starts = [p[0] for p in old]
    removed_idx: set[int] = set()
    unchanged: set[int] = set()
    for a, length, value in cleaned:
        j = bisect_left(starts, a)
        if j > 0 and _overlaps(*old[j - 1][:2], a, length):
            removed_idx.add(j - 1)
        k = j
        while k < len(old) and (old[k][0] < a + length or old[k][0] == a):
            if _overlaps(*old[k][:2], a, length):
                (unchanged if old[k] == (a, length, value) else removed_idx).add(k)
            k += 1
    return removed_idx - unchanged, unchanged


def quarter_energy(
    pieces: Iterable[Piece], quarters: int = QUARTERS
) -> tuple[list[float], list[bool]]:
    """Energy per quarter of the day, and in which quarters the meter reported."""
    energy = [0.0] * quarters
    present = [False] * quarters
    for a, length, value in pieces:
        if length == 0:
            q = a // QUARTER_US
            energy[q] += value
            present[q] = True
            continue
        end = a + length
        q = a // QUARTER_US
        while a < end:
            boundary = (q + 1) * QUARTER_US
            seg = min(end, boundary) - a
            energy[q] += value * seg / length
            present[q] = True
            a += seg
            q += 1
    return energy, present


def hours_of(quarters: int) -> int:
    """Hours of a day of ``quarters`` quarters (a last partial hour counts)."""
    return -(-quarters // QUARTERS_PER_HOUR)


def in_order(values: Iterable[float]) -> float:
    """The float sum added left to right, as on every Python before 3.12. From 3.12
    ``sum()`` compensates rounding, so the same readings gave last-bit different
    energies there than on 3.11 and than the columnar path (numpy ``cumsum`` and
    ``bincount`` add in order): a day's aggregates then depended on how its readings
    were split into messages. Every energy sum that both paths compute uses this."""
    total = 0.0
    for value in values:
        total += value
    return total


def hour_sums(quarters: Sequence[float]) -> list[float]:
    return [in_order(quarters[h * 4 : h * 4 + 4]) for h in range(hours_of(len(quarters)))]


def hour_any(present: Sequence[bool]) -> list[bool]:
    return [any(present[h * 4 : h * 4 + 4]) for h in range(hours_of(len(present)))]


# -- a cell's day ------------------------------------------------------------------------


def empty_cell_day(quarters: int = QUARTERS) -> dict[str, Any]:
    """State of one city x zone x carrier x sector for one local day (JSON-ready).

    e: energy per quarter; n / hn / dn: meters that reported per quarter / hour /
    day; x / hx / dx: largest single meter's energy per quarter / hour / day;
    p: power sweep, offset (µs, as text) -> change of summed power (kW);
    dq / dh: meters whose energy in the quarter / hour is derived (spread from a
    longer reading).
    """
    return {
        "e": [0.0] * quarters,
        "n": [0] * quarters,
        "x": [0.0] * quarters,
        "hn": [0] * hours_of(quarters),
        "hx": [0.0] * hours_of(quarters),
        "dn": 0,
        "dx": 0.0,
        "p": {},
        "dq": [0] * quarters,
        "dh": [0] * hours_of(quarters),
    }


def spread_over(pieces: Iterable[Piece], window_us: int, count: int) -> list[bool]:
    """Which windows (``count`` of ``window_us`` in the day) hold part of a piece
    longer than the window: their energy is spread from it, not measured in them."""
    out = [False] * count
    for a, length, _ in pieces:
        if length > window_us:
            for w in range(a // window_us, min(count, (a + length - 1) // window_us + 1)):
                out[w] = True
    return out


def derived_counts(
    cell: Mapping[str, Any], old: Sequence[Piece], new: Sequence[Piece]
) -> tuple[list[int], list[int]]:
    """Meters whose energy is derived, per quarter (``dq``) and per hour (``dh``),
    after one meter's day went from ``old`` to ``new`` (states before them: zeros)."""
    quarters = len(cell["e"])
    dq = list(cell.get("dq") or [0] * quarters)
    dh = list(cell.get("dh") or [0] * hours_of(quarters))
    for counts, window, n in ((dq, QUARTER_US, quarters), (dh, HOUR_US, hours_of(quarters))):
        was, now = spread_over(old, window, n), spread_over(new, window, n)
        for w in range(n):
            if was[w] != now[w]:
                counts[w] += 1 if now[w] else -1
    return dq, dh


class _MeterDay(NamedTuple):
    """One meter's day before and after a change, per quarter: energy (kWh) and
    whether the meter reported in it."""

    old_q: list[float]
    old_p: list[bool]
    new_q: list[float]
    new_p: list[bool]


def apply_meter_change(
    cell: Mapping[str, Any], old: Sequence[Piece], new: Sequence[Piece], removed, added
) -> dict[str, Any]:
    """A new cell-day state after one meter's day went from ``old`` to ``new`` pieces.

    Energies and meter counts are exact. The largest meter's energy only grows
    (it is the highest value any meter ever reached): a correction downwards
    leaves it high, which errs on the side of suppressing.
    """
    meter = _meter_day(old, new, len(cell["e"]))
    touched = [q for q in range(len(cell["e"])) if meter.old_p[q] or meter.new_p[q]]
    e, n, x = _quarter_counts(cell, meter, touched)
    hn, hx = _hour_counts(cell, meter, touched)
    dn, dx = _day_counts(cell, meter, bool(old))
    sweep = _swept(cell["p"], _power_changes(removed, added))
    dq, dh = derived_counts(cell, old, new)
    state = {"e": e, "n": n, "x": x, "hn": hn, "hx": hx, "dn": dn, "dx": dx, "p": sweep}
    return {**state, "dq": dq, "dh": dh}


def _meter_day(old: Sequence[Piece], new: Sequence[Piece], size: int) -> _MeterDay:
    """The meter's quarters before and after (before: nothing, in the usual case of
    the meter's first readings of the day)."""
    new_q, new_p = quarter_energy(new, size)
    if old:
        old_q, old_p = quarter_energy(old, size)
    else:
        old_q, old_p = [0.0] * size, [False] * size
    return _MeterDay(old_q, old_p, new_q, new_p)


def _quarter_counts(
    cell: Mapping[str, Any], meter: _MeterDay, touched: Sequence[int]
) -> tuple[list[float], list[int], list[float]]:
    """(e, n, x) per quarter: energy, meters that reported, largest meter's energy."""
    e, n, x = list(cell["e"]), list(cell["n"]), list(cell["x"])
    old_q, old_p, new_q, new_p = meter
    for q in touched:
        if old_q[q] != new_q[q]:
            e[q] += new_q[q] - old_q[q]
        if old_p[q] != new_p[q]:
            n[q] += 1 if new_p[q] else -1
        if new_p[q] and new_q[q] > x[q]:
            x[q] = new_q[q]
    return e, n, x


def _hour_counts(
    cell: Mapping[str, Any], meter: _MeterDay, touched: Sequence[int]
) -> tuple[list[int], list[float]]:
    """(hn, hx) per hour: meters that reported, largest meter's energy."""
    hn, hx = list(cell["hn"]), list(cell["hx"])
    old_p, new_q, new_p = meter.old_p, meter.new_q, meter.new_p
    for h in sorted({q // QUARTERS_PER_HOUR for q in touched}):
        quarters = slice(h * QUARTERS_PER_HOUR, (h + 1) * QUARTERS_PER_HOUR)
        was, now = any(old_p[quarters]), any(new_p[quarters])
        if was != now:
            hn[h] += 1 if now else -1
        total = in_order(new_q[quarters])
        if now and total > hx[h]:
            hx[h] = total
    return hn, hx


def _day_counts(cell: Mapping[str, Any], meter: _MeterDay, had_old: bool) -> tuple[int, float]:
    """(dn, dx) for the day: meters that reported, largest meter's energy."""
    dn, dx = cell["dn"], cell["dx"]
    old_any, new_any = had_old and any(meter.old_p), any(meter.new_p)
    if old_any != new_any:
        dn += 1 if new_any else -1
    day_total = in_order(meter.new_q)
    if new_any and day_total > dx:
        dx = day_total
    return dn, dx


def _power_changes(removed: Iterable[Piece], added: Iterable[Piece]) -> dict[int, float]:
    """Change of summed power (kW) at each breakpoint when ``removed`` pieces leave
    and ``added`` ones arrive (instants carry no power)."""
    changes: dict[int, float] = defaultdict(float)
    for sign, pieces in ((-1.0, removed), (1.0, added)):
        for a, length, value in pieces:
            if length:
                kw = sign * value * HOUR_US / length
                changes[a] += kw
                changes[a + length] -= kw
    return changes


def _swept(sweep: Mapping[str, float], changes: Mapping[int, float]) -> dict[str, float]:
    """The power sweep with ``changes`` applied; a level back to zero (within
    rounding) is dropped, so the sweep does not grow with corrections."""
    out = dict(sweep)
    for at, change in changes.items():
        key = str(at)
        level = out.get(key, 0.0) + change
        if -1e-9 < level < 1e-9:
            out.pop(key, None)
        else:
            out[key] = level
    return out


def quarter_peaks(sweeps: Iterable[Mapping[str, float]], quarters: int = QUARTERS) -> list[float]:
    """Highest summed power (kW) within each quarter, over the union of ``sweeps``."""
    changes: dict[int, float] = defaultdict(float)
    for sweep in sweeps:
        for at, change in sweep.items():
            changes[int(at)] += change
    points = sorted(changes.items())
    peaks = [0.0] * quarters
    level = 0.0
    for i, (at, change) in enumerate(points):
        level += change
        following = points[i + 1][0] if i + 1 < len(points) else quarters * QUARTER_US
        if following <= at or level <= 1e-9:
            continue
        for q in range(at // QUARTER_US, min(quarters, (following - 1) // QUARTER_US + 1)):
            if level > peaks[q]:
                peaks[q] = level
    return peaks


def window_starts(day: int, quarters: int = QUARTERS) -> dict[str, list[int]]:
    """Start of every window of a day of ``quarters`` quarters, per granularity."""
    return {
        "PT15M": [day + q * QUARTER_US for q in range(quarters)],
        "PT1H": [day + h * HOUR_US for h in range(hours_of(quarters))],
        "P1D": [day],
    }
