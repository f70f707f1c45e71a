"""energy-analytics' time arithmetic on columns (numpy): what :mod:`windows` does one
reading at a time, done for a whole series, or for every meter of a cell at once.

Why: splitting a load curve into days and quarters, merging it with what a meter
already sent, and adding it to its cell were Python loops per reading (and per
quarter of the day for every meter that changed: a single reading cost the same
96-quarter bookkeeping as a whole day). Here each step is a handful of numpy
operations over all the readings, and a batch's changes to one cell's day are
applied together when the batch ends (:func:`apply_meter_changes`).

Bit for bit the same as :mod:`windows`: the same floating-point operations in the
same order. Sums that the per-reading code makes one reading after the other stay
sequential here (``bincount`` and ``add.at`` add in input order, ``cumsum`` left to
right; never numpy's pairwise ``sum``), so the state, the figures and the secrecy
decisions do not depend on which path computed them
(``tests/unit/test_energy_columns.py`` checks it on random series). The rare shapes
with no fast form (an irregular series out of order, a stored day that breaks the
no-overlap invariant, a span of years) go through :mod:`windows` itself.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise, repeat
from typing import Any, NamedTuple

import numpy as np

from services.energy import windows
from services.energy.windows import HOUR_US, QUARTER_US, QUARTERS_PER_HOUR, Piece, hours_of
from services.runtime import localday

US = 1_000_000
# Beyond this many local days, a series is split by windows.pieces_by_day (a walk of
# the days in Python would cost more than it saves).
MAX_DAYS = 400
# Up to this many readings, numpy's fixed cost per call outweighs the loop it saves:
# the per-reading function runs (it is the same arithmetic).
SMALL = 8
_I64_SAFE = 1 << 62
_ROW = 1 << 40  # (row, breakpoint) as one integer; a breakpoint lies within its day
NEAR_ZERO = 1e-9  # windows._swept drops a power level back to zero within this


# A meter's pieces of a day as three lists (offsets, lengths, values): a MeterDay.
Columns = tuple[Sequence[int], Sequence[int], Sequence[float]]


@dataclass(frozen=True, slots=True)
class Pieces:
    """A meter's pieces of one day as columns: offsets from the day's start (µs),
    lengths (µs, 0 for an instant) and energies (kWh); see :data:`windows.Piece`."""

    offsets: np.ndarray
    lengths: np.ndarray
    values: np.ndarray

    @classmethod
    def columns(cls, offsets: Sequence[int], lengths: Sequence[int], values: Sequence[float]):
        return cls(
            np.asarray(offsets, dtype=np.int64),
            np.asarray(lengths, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
        )

    @classmethod
    def of(cls, pieces: Sequence[Piece]) -> Pieces:
        if not pieces:
            return EMPTY
        offsets, lengths, values = zip(*pieces, strict=True)
        return cls.columns(offsets, lengths, values)

    def __len__(self) -> int:
        return len(self.offsets)

    def take(self, index: np.ndarray | slice) -> Pieces:
        return Pieces(self.offsets[index], self.lengths[index], self.values[index])

    def tolist(self) -> list[Piece]:
        return list(
            zip(self.offsets.tolist(), self.lengths.tolist(), self.values.tolist(), strict=True)
        )

    def lists(self) -> tuple[list[int], list[int], list[float]]:
        """(offsets, lengths, values) as lists, as a MeterDay keeps them."""
        return self.offsets.tolist(), self.lengths.tolist(), self.values.tolist()

    def end(self) -> int:
        """The latest instant any piece reaches (offset + length), from the day's start."""
        return int((self.offsets + self.lengths).max())


def pieces_end(pieces: Pieces | Sequence[Piece]) -> int:
    """The latest instant any of the pieces reaches, from the day's start."""
    if isinstance(pieces, Pieces):
        return pieces.end()
    return max(a + length for a, length, _ in pieces)


EMPTY = Pieces.columns([], [], [])


# -- a series into local days ----------------------------------------------------------


def split_days(record: Mapping[str, Any], timezone: str) -> dict[int, Pieces | list[Piece]]:
    """:func:`windows.pieces_by_day` on columns: the series' pieces per local day
    (a short series: windows' own lists, cheaper than arrays for a few readings)."""
    if len(record["values"]) <= SMALL:
        return windows.pieces_by_day(record, timezone)
    values = np.asarray(record["values"], dtype=np.float64)
    step = record["step_seconds"]
    if step and step > 0:
        split = _split_regular(record["start"], step * US, values, timezone)
    else:
        split = _split_irregular(record["times"], values, timezone)
    if split is not None:
        return split
    return {d: Pieces.of(p) for d, p in windows.pieces_by_day(record, timezone).items()}


def _split_regular(start: int, step_us: int, values: np.ndarray, timezone: str):
    last = start + step_us * len(values)
    if abs(start) >= _I64_SAFE or abs(last) >= _I64_SAFE:
        return None
    days = day_starts(start, last - 1, timezone)
    return None if days is None else _regular_days(start, step_us, values, days)


def _split_irregular(times: Sequence[int], values: np.ndarray, timezone: str):
    if len(times) != len(values):
        return None  # windows says what is wrong
    at = np.asarray(times, dtype=np.int64)
    days = day_starts(int(at.min()), int(at.max()), timezone)
    return None if days is None else _irregular_days(at, values, days)


def day_starts(first: int, last: int, timezone: str) -> np.ndarray | None:
    """Starts of the local days from the one holding ``first`` to the one holding
    ``last``, and the end of that last one (None: more than MAX_DAYS days)."""
    date, final = localday.local_date(first, timezone), localday.local_date(last, timezone)
    count = (final - date).days + 1
    if count > MAX_DAYS:
        return None
    one = dt.timedelta(days=1)
    return np.array(
        [localday.date_start(date + k * one, timezone) for k in range(count + 1)], dtype=np.int64
    )


def _regular_days(start: int, step_us: int, values: np.ndarray, days: np.ndarray):
    """A regular series' pieces per day; a reading across local midnight is shared
    in proportion to time (``value * part / step``, as windows does)."""
    t = start + step_us * np.arange(len(values), dtype=np.int64)
    end = t + step_us
    first = np.searchsorted(days, t, "right") - 1
    spans = np.searchsorted(days, end - 1, "right") - first
    if (spans == 1).all():
        return _group_by_day(days, first, t - days[first], np.full(len(t), step_us), values)
    row = np.repeat(np.arange(len(t)), spans)
    day = first[row] + _ranks(spans)
    a = np.maximum(t[row], days[day])
    b = np.minimum(end[row], days[day + 1])
    whole = spans[row] == 1
    lengths = np.where(whole, step_us, b - a)
    shared = np.where(whole, values[row], values[row] * (b - a) / step_us)
    return _group_by_day(days, day, a - days[day], lengths, shared)


def _irregular_days(times: np.ndarray, values: np.ndarray, days: np.ndarray):
    """An irregular series' instants per day, in the series' own order within a day."""
    day = np.searchsorted(days, times, "right") - 1
    order = np.argsort(day, kind="stable")
    day, times, values = day[order], times[order], values[order]
    return _group_by_day(days, day, times - days[day], np.zeros(len(times), np.int64), values)


def _group_by_day(days, day, offsets, lengths, values) -> dict[int, Pieces]:
    """Rows already grouped by day (non-decreasing ``day``) into one Pieces per day."""
    cuts = np.flatnonzero(np.diff(day)) + 1
    bounds = [0, *cuts.tolist(), len(day)]
    out = {}
    for lo, hi in pairwise(bounds):
        out[int(days[day[lo]])] = Pieces(offsets[lo:hi], lengths[lo:hi], values[lo:hi])
    return out


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, .. counts[i]-1 for each i, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


# -- one meter's day: replace, never add twice ----------------------------------------


def merge_columns(old: Pieces, new: Pieces) -> tuple[Pieces, Pieces, Pieces]:
    """:func:`windows.merge_pieces` on columns: (merged, removed, added)."""
    cleaned = _in_order(new)
    if not len(old):
        return cleaned, EMPTY, cleaned
    last_end = int(old.offsets[-1]) + max(int(old.lengths[-1]), 1)  # an instant holds its µs
    if len(cleaned) and int(cleaned.offsets[0]) >= last_end and _sorted_apart(old):
        return _concat(old, cleaned), EMPTY, cleaned  # the meter's next readings
    old_end = old.offsets + np.maximum(old.lengths, 1)
    if not _sorted_apart(old):
        merged, removed, added = windows.merge_pieces(old.tolist(), cleaned.tolist())
        return Pieces.of(merged), Pieces.of(removed), Pieces.of(added)
    lo = np.searchsorted(old_end, cleaned.offsets, "right")
    hi = np.searchsorted(old.offsets, cleaned.offsets + np.maximum(cleaned.lengths, 1), "left")
    marks = np.zeros(len(old) + 1, np.int64)
    np.add.at(marks, lo, 1)
    np.add.at(marks, np.maximum(hi, lo), -1)
    overlapped = np.cumsum(marks[:-1]) > 0
    unchanged = overlapped & _equal_in(old, cleaned)
    removed = overlapped & ~unchanged
    added = ~_equal_in(cleaned, old)
    kept = ~overlapped
    merged = _concat(old.take(kept), cleaned)
    order = np.argsort(merged.offsets, kind="stable")
    return merged.take(order), old.take(removed), cleaned.take(added)


def merge_day(old: Columns, new: Pieces | list[Piece]) -> tuple[Columns, Columns, Columns]:
    """(merged, removed, added) of a meter's stored day ``old`` and ``new`` pieces, as
    windows.merge_pieces gives them, in lists (what a MeterDay keeps).

    A few new pieces after everything stored (a meter's next readings: the usual case
    of single readings) are appended; other few pieces go through windows (a loop
    over few pieces); many pieces through :func:`merge_columns`. Stored days are in
    time order without overlaps (every merge leaves them so), which the append needs.
    """
    offsets, lengths, values = old
    if isinstance(new, Pieces):
        merged, removed, added = merge_columns(Pieces.columns(*old), new)
        return merged.lists(), removed.lists(), added.lists()
    fresh = windows._in_order(new)
    if not offsets:
        return to_columns(fresh), NONE, to_columns(fresh)
    if fresh and fresh[0][0] >= offsets[-1] + max(lengths[-1], 1):
        a, length, value = to_columns(fresh)
        return (offsets + a, lengths + length, values + value), NONE, (a, length, value)
    merged, removed, added = windows.merge_pieces(list(zip(*old, strict=True)), fresh)
    return to_columns(merged), to_columns(removed), to_columns(added)


def to_columns(pieces: Sequence[Piece]) -> Columns:
    """Pieces as the lists (offsets, lengths, values) a MeterDay keeps."""
    if not pieces:
        return NONE
    offsets, lengths, values = zip(*pieces, strict=True)
    return list(offsets), list(lengths), list(values)


NONE: Columns = ([], [], [])


def changed_span(removed: Columns, added: Columns) -> tuple[int, int]:
    """First and last µs (from the day's start) a merge changed: both kinds are in
    time order without overlaps, so their first and last pieces bound them."""
    if not removed[0]:  # the usual case: pieces added, none removed
        offsets, lengths, _ = added
        return offsets[0], offsets[-1] + max(lengths[-1], 1) - 1
    first = min(o[0] for o, _, _ in (removed, added) if o)
    last = max(o[-1] + max(length[-1], 1) - 1 for o, length, _ in (removed, added) if o)
    return first, last


def _sorted_apart(pieces: Pieces) -> bool:
    """Whether the pieces are in time order without overlaps (what a merge keeps)."""
    ends = pieces.offsets[:-1] + np.maximum(pieces.lengths[:-1], 1)
    return bool((pieces.offsets[1:] >= ends).all())


def _in_order(pieces: Pieces) -> Pieces:
    """The pieces as windows._in_order leaves them: already in order they stay as
    they are (the usual case); otherwise windows decides."""
    o, n = pieces.offsets, len(pieces)
    if n < 2 or ((o[:-1] + pieces.lengths[:-1] <= o[1:]) & (o[:-1] != o[1:])).all():
        return pieces
    return Pieces.of(windows._in_order(pieces.tolist()))


def _equal_in(these: Pieces, others: Pieces) -> np.ndarray:
    """Per piece of ``these``: whether ``others`` (sorted, unique offsets) holds the
    very same piece."""
    if not len(others):
        return np.zeros(len(these), bool)
    j = np.minimum(np.searchsorted(others.offsets, these.offsets), len(others) - 1)
    return (
        (others.offsets[j] == these.offsets)
        & (others.lengths[j] == these.lengths)
        & (others.values[j] == these.values)
    )


def _concat(*parts: Pieces) -> Pieces:
    return Pieces(
        np.concatenate([p.offsets for p in parts]),
        np.concatenate([p.lengths for p in parts]),
        np.concatenate([p.values for p in parts]),
    )


def quarter_rows(
    pieces: Pieces, owners: np.ndarray, rows: int, quarters: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`windows.quarter_energy` of many meters at once: energy per (row,
    quarter) and whether the row's meter reported there; ``owners`` gives each
    piece's row. Each quarter's energy is added piece after piece, as windows does."""
    a, length, value = pieces.offsets, pieces.lengths, pieces.values
    instant = length == 0
    q0 = a // QUARTER_US
    counts = (a + np.maximum(length, 1) - 1) // QUARTER_US - q0 + 1
    row = np.repeat(np.arange(len(a)), counts)
    q = q0[row] + _ranks(counts)
    seg = np.minimum(a[row] + length[row], (q + 1) * QUARTER_US) - np.maximum(
        a[row], q * QUARTER_US
    )
    share = np.where(instant[row], value[row], value[row] * seg / np.maximum(length[row], 1))
    slot = owners[row] * quarters + q
    size = rows * quarters
    energy = np.bincount(slot, weights=share, minlength=size)[:size].reshape(rows, quarters)
    present = np.bincount(slot, minlength=size)[:size].reshape(rows, quarters) > 0
    if len(slot) and int(slot.max()) >= size:
        raise IndexError("a piece lies past the end of its day")
    return energy, present


def spread_rows(
    pieces: Pieces, owners: np.ndarray, rows: int, window_us: int, count: int
) -> np.ndarray:
    """:func:`windows.spread_over` of many meters at once: (rows, count) booleans."""
    long = pieces.lengths > window_us
    a, length, who = pieces.offsets[long], pieces.lengths[long], owners[long]
    marks = np.zeros((rows, count + 1), np.int64)
    lo = np.minimum(a // window_us, count)
    hi = np.maximum(np.minimum(count, (a + length - 1) // window_us + 1), lo)
    np.add.at(marks, (who, lo), 1)
    np.add.at(marks, (who, hi), -1)
    return np.cumsum(marks[:, :-1], axis=1) > 0


# -- a cell's day: every meter change of a batch at once -------------------------------


class MeterChange(NamedTuple):
    """One meter's day going from ``old`` to ``new`` pieces (``removed`` of the old
    ones left, ``added`` new ones came): what windows.apply_meter_change takes, each
    as lists (offsets, lengths, values), the form a MeterDay keeps."""

    old: Columns
    new: Columns
    removed: Columns
    added: Columns


def _stack(parts: Sequence[Columns]) -> tuple[Pieces, np.ndarray]:
    """Every row's pieces concatenated (one pass over the lists), and each piece's row."""
    sizes = [len(offsets) for offsets, _, _ in parts]
    total = sum(sizes)
    owners = np.repeat(np.arange(len(parts)), sizes)
    stacked = (
        np.fromiter(chain.from_iterable(part[k] for part in parts), kind, total)
        for k, kind in enumerate((np.int64, np.int64, np.float64))
    )
    return Pieces(*stacked), owners


# Old pieces per change from which only those near the change are added up again
# (:func:`_before`); below it, a few numpy calls over every old piece cost less than
# finding them (measured: 30 single readings per meter of a day, and 144).
NEAR_FROM = 48


def apply_meter_changes(
    cell: Mapping[str, Any], changes: Sequence[MeterChange], near_from: int = NEAR_FROM
) -> dict[str, Any]:
    """The cell-day state after ``changes``, one after the other: equal to calling
    :func:`windows.apply_meter_change` for each in turn (whatever ``near_from``)."""
    quarters, rows = len(cell["e"]), len(changes)
    hours = hours_of(quarters)
    new, new_rows = _stack([c.new for c in changes])
    new_q, new_p = quarter_rows(new, new_rows, rows, quarters)
    now = [spread_rows(new, new_rows, rows, w, n) for w, n in _spread_windows(quarters, hours)]
    old_q, old_p, was = _before(changes, (new, new_rows), (new_q, new_p, now), quarters, near_from)
    state = {
        "e": _sequential_add(cell["e"], old_q, new_q),
        "n": (np.asarray(cell["n"]) + new_p.sum(0) - old_p.sum(0)).tolist(),
        "x": _running_max(np.asarray(cell["x"], np.float64), new_q, new_p).tolist(),
    }
    state["hn"], state["hx"] = _hour_counts(cell, old_p, new_q, new_p)
    state["dn"], state["dx"] = _day_counts(cell, old_p, new_q, new_p)
    state["p"] = swept(cell["p"], [c.removed for c in changes], [c.added for c in changes])
    state["dq"], state["dh"] = _derived(cell, was, now)
    return state


def _spread_windows(quarters: int, hours: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The windows a derived count is kept for: (window length, how many)."""
    return (QUARTER_US, quarters), (HOUR_US, hours)


def _before(
    changes: Sequence[MeterChange],
    new: tuple[Pieces, np.ndarray],
    after: tuple[np.ndarray, np.ndarray, list[np.ndarray]],
    quarters: int,
    near_from: int,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Each meter's day before its change, per quarter (energy, reported) and per
    window (spread from a longer reading), computed only from its old pieces near
    what changed.

    Why: a meter's old day is its new day but for the hours its removed and added
    pieces lie in, so only there need its old pieces be added up again; a single
    reading then costs its meter's day once (the new day, whose total the largest
    meter's day energy needs), not twice. Outside
    those hours the old figures are the new ones, the very same floats (the same
    pieces added in the same order). This needs stored days in time order without
    overlaps (what every merge leaves); new days that are not are taken whole, and
    so are old days of fewer than ``near_from`` pieces a change on average.
    """
    rows = len(changes)
    hours = hours_of(quarters)
    new_q, new_p, now = after
    many = sum(len(c.old[0]) for c in changes) >= near_from * rows
    near = _near(changes, *new) if many else None
    if near is None:
        old, old_rows = _stack([c.old for c in changes])
        old_q, old_p = quarter_rows(old, old_rows, rows, quarters)
        was = [spread_rows(old, old_rows, rows, w, n) for w, n in _spread_windows(quarters, hours)]
        return old_q, old_p, was
    pieces, owners, bounds = near
    near_q, near_p = quarter_rows(pieces, owners, rows, quarters)
    inside = _inside(bounds, QUARTER_US, quarters)
    was = [
        np.where(_inside(bounds, w, n), spread_rows(pieces, owners, rows, w, n), kept)
        for (w, n), kept in zip(_spread_windows(quarters, hours), now, strict=True)
    ]
    return np.where(inside, near_q, new_q), np.where(inside, near_p, new_p), was


def _near(
    changes: Sequence[MeterChange], new: Pieces, new_rows: np.ndarray
) -> tuple[Pieces, np.ndarray, np.ndarray] | None:
    """Per change, its old pieces that overlap the whole hours its merge changed,
    and those hours' [start, end) in µs; None when an old or a new day is not in
    time order without overlaps: the bisection below needs the old day in order (a
    merge sorts its result, so a new day in order says nothing of the old one)."""
    old, old_rows = _stack([c.old for c in changes])
    if not _rows_sorted_apart(old, old_rows) or not _rows_sorted_apart(new, new_rows):
        return None
    parts: list[Columns] = []
    bounds = np.zeros((len(changes), 2), np.int64)
    for row, (old, _, removed, added) in enumerate(changes):
        if not removed[0] and not added[0]:
            parts.append(NONE)  # nothing changed: the old day is the new one
            continue
        first, last = changed_span(removed, added)
        start, end = first // HOUR_US * HOUR_US, (last // HOUR_US + 1) * HOUR_US
        bounds[row] = start, end
        offsets, lengths, values = old
        if not offsets or offsets[-1] + max(lengths[-1], 1) <= start:
            parts.append(NONE)  # the usual next reading: nothing old in its hours
            continue
        i = bisect_left(offsets, start)
        if i and offsets[i - 1] + max(lengths[i - 1], 1) > start:
            i -= 1
        j = bisect_left(offsets, end)
        parts.append((offsets[i:j], lengths[i:j], values[i:j]))
    pieces, owners = _stack(parts)
    return pieces, owners, bounds


def _rows_sorted_apart(pieces: Pieces, rows: np.ndarray) -> bool:
    """Whether each row's pieces are in time order, none overlapping the next."""
    if len(pieces) < 2:
        return True
    ends = pieces.offsets[:-1] + np.maximum(pieces.lengths[:-1], 1)
    return bool(((rows[1:] != rows[:-1]) | (pieces.offsets[1:] >= ends)).all())


def _inside(bounds: np.ndarray, window_us: int, count: int) -> np.ndarray:
    """(rows, count): whether each window starts within its row's [start, end)."""
    starts = np.arange(count, dtype=np.int64) * window_us
    return (starts >= bounds[:, :1]) & (starts < bounds[:, 1:])


def _sequential_add(e: Sequence[float], old_q: np.ndarray, new_q: np.ndarray) -> list[float]:
    """e[q] += new - old, meter after meter, where the meter's quarter changed."""
    out = np.asarray(e, dtype=np.float64).copy()
    changed = old_q != new_q
    _, q = np.nonzero(changed)  # row-major: meter after meter
    np.add.at(out, q, (new_q - old_q)[changed])
    return out.tolist()


def _running_max(top: np.ndarray, values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The highest of ``top`` and of each column's present values."""
    if not len(values):
        return top
    best = np.where(present, values, -np.inf).max(0)
    return np.where(best > top, best, top)


def _hour_counts(cell, old_p, new_q, new_p) -> tuple[list[int], list[float]]:
    """(hn, hx): meters reporting per hour, and the largest meter's hourly energy."""
    hours = hours_of(new_q.shape[1])
    by_hour = _by_hour(new_q, hours)
    total = by_hour[:, :, 0] + by_hour[:, :, 1]  # sum(new_q[hour]), left to right
    for k in range(2, QUARTERS_PER_HOUR):
        total = total + by_hour[:, :, k]
    was = _by_hour(old_p, hours).any(2)
    now = _by_hour(new_p, hours).any(2)
    hn = np.asarray(cell["hn"]) + now.sum(0) - was.sum(0)
    hx = _running_max(np.asarray(cell["hx"], np.float64), total, now)
    return hn.tolist(), hx.tolist()


def _by_hour(per_quarter: np.ndarray, hours: int) -> np.ndarray:
    """(rows, hours, 4): a last partial hour padded with zeros. Whole hours (every
    day of a whole-hour zone) are a mere reshape: np.pad, even of nothing, cost more
    than the rest of a cell's hour counts."""
    rows, quarters = per_quarter.shape
    pad = hours * QUARTERS_PER_HOUR - quarters
    if pad:
        per_quarter = np.pad(per_quarter, ((0, 0), (0, pad)))
    return per_quarter.reshape(rows, hours, QUARTERS_PER_HOUR)


def _day_counts(cell, old_p, new_q, new_p) -> tuple[int, float]:
    """(dn, dx): meters reporting in the day, and the largest meter's day energy."""
    old_any, new_any = old_p.any(1), new_p.any(1)
    dn = cell["dn"] + int(new_any.sum()) - int(old_any.sum())
    dx = cell["dx"]
    if new_any.any():
        best = float(np.cumsum(new_q, axis=1)[new_any, -1].max())  # sum(), left to right
        if best > dx:
            dx = best
    return dn, dx


def _derived(cell, was: list[np.ndarray], now: list[np.ndarray]) -> tuple[list[int], list[int]]:
    """:func:`windows.derived_counts` over every change at once, from each change's
    spread windows before and after (per quarter, then per hour)."""
    quarters = len(cell["e"])
    hours = hours_of(quarters)
    dq = np.asarray(cell.get("dq") or [0] * quarters)
    dh = np.asarray(cell.get("dh") or [0] * hours)
    for counts, before, after in ((dq, was[0], now[0]), (dh, was[1], now[1])):
        counts += after.sum(0) - before.sum(0)
    return dq.tolist(), dh.tolist()


# -- the power sweep --------------------------------------------------------------------


def power_rows(removed: Sequence[Columns], added: Sequence[Columns]):
    """windows._power_changes of each change: (row, breakpoint, change of kW), one
    entry per (row, breakpoint), each summed in the order windows adds it."""
    gone, gone_rows = _stack(removed)
    came, came_rows = _stack(added)
    # row after row; within a row its removed pieces, then its added ones, in order
    rank = np.concatenate([gone_rows * 2, came_rows * 2 + 1])
    order = np.argsort(rank, kind="stable")
    pieces = _concat(gone, came).take(order)
    sign = np.concatenate([np.full(len(gone), -1.0), np.full(len(came), 1.0)])[order]
    row = rank[order] // 2
    timed = pieces.lengths != 0
    sign, pieces, row = sign[timed], pieces.take(timed), row[timed]
    kw = sign * pieces.values * HOUR_US / pieces.lengths
    # +kw where a piece starts, -kw where it ends, piece after piece
    at = np.stack([pieces.offsets, pieces.offsets + pieces.lengths], 1).ravel()
    change = np.stack([kw, -kw], 1).ravel()
    row = np.repeat(row, 2)
    keys, inverse = np.unique(row * _ROW + at, return_inverse=True)  # at < 2^40 µs: 12 days
    sums = np.bincount(inverse.ravel(), weights=change, minlength=len(keys))
    return keys // _ROW, keys % _ROW, sums


def swept(
    sweep: Mapping[str, float], removed: Sequence[Columns], added: Sequence[Columns]
) -> dict[str, float]:
    """The power sweep after each change in turn (windows._swept of
    windows._power_changes, change after change)."""
    rows, at, change = power_rows(removed, added)
    out = dict(sweep)
    if not len(at):
        return out
    order = np.lexsort((rows, at))  # by breakpoint, then change after change
    at, change = at[order], change[order]
    keys, starts, counts = np.unique(at, return_index=True, return_counts=True)
    names = list(map(str, keys.tolist()))
    stored = np.fromiter(map(out.get, names, repeat(0.0)), np.float64, len(names))
    table = np.zeros((len(keys), int(counts.max()) + 1))
    table[:, 0] = stored
    table[np.repeat(np.arange(len(keys)), counts), 1 + _ranks(counts)] = change
    levels = np.cumsum(table, axis=1)  # level after each change, left to right
    final = levels[np.arange(len(keys)), counts]
    near = np.abs(levels) < NEAR_ZERO
    inner = np.arange(table.shape[1])[None, :] < counts[:, None]
    inner[:, 0] = False
    replay = (near & inner).any(1)  # back to zero midway: windows restarts from 0.0
    for k in np.flatnonzero(replay).tolist():
        final[k] = _replayed(stored[k], change[starts[k] : starts[k] + counts[k]])
    dropped = np.abs(final) < NEAR_ZERO
    kept = np.flatnonzero(~dropped)
    out.update(zip(map(names.__getitem__, kept.tolist()), final[kept].tolist(), strict=True))
    for k in np.flatnonzero(dropped).tolist():
        out.pop(names[k], None)
    return out


def _replayed(level: float, changes: np.ndarray) -> float:
    """One breakpoint's level after ``changes``, dropped to 0.0 whenever it comes
    back within NEAR_ZERO (as windows._swept pops it)."""
    for change in changes.tolist():
        level += change
        if -NEAR_ZERO < level < NEAR_ZERO:
            level = 0.0
    return level
