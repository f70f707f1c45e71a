"""Day tables kept between batches, recomputed only in the windows that changed.

Why: a batch of single readings changes one or two quarters of each cell's day, yet
:func:`services.energy.aggregate.day_table` computes every window of every cell and
total again (some 130 windows per cell, each rounded into Figures), so a reading cost
as much table as a whole load curve. Here each cell's and total's last series is
kept with the inputs it was computed from; the next table recomputes only the
windows whose inputs differ, compared bit for bit, with the very functions
``day_table`` uses: the table is the one ``day_table`` gives (a property test holds
them together), at the cost of what changed.

The quarters' peaks are recomputed whole from the power sweep every time (cheap, and
float sums along a sweep can move a level outside the span that changed). Nothing
here is state: the memo may be dropped at any time without changing any output, and
it is, when a day closes or the stage's partitions change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.energy.aggregate import (
    DayTable,
    Entry,
    Window,
    assemble,
    cell_series,
    day_entry,
    day_table,
    hour_entry,
    quarter_entry,
    total_entry,
    totals_of,
    window_peaks,
)
from services.energy.day_index import GroupDayKey
from services.energy.secrecy import Cell
from services.energy.windows import QUARTERS_PER_HOUR, hours_of, quarter_peaks
from services.runtime.stage import StageStore

ALL = None  # every window changed (a first computation)


def _bits(values: list[float]) -> np.ndarray:
    """Floats as their bit patterns: equal only when the very same value (-0.0 too)."""
    return np.asarray(values, dtype=np.float64).view(np.int64)


@dataclass(frozen=True)
class _Inputs:
    """What a cell's windows are computed from, per quarter and per hour."""

    quarters: np.ndarray  # (5, quarters): e and x bits, n, derived, peak bits
    hours: np.ndarray  # (3, hours): hn, hx bits, derived

    @classmethod
    def of(cls, state: Mapping[str, Any], peaks: list[float]) -> _Inputs | None:
        """None when the state's counts are not whole numbers (then nothing is reused)."""
        quarters, hours = len(state["e"]), hours_of(len(state["e"]))
        n, hn = np.asarray(state["n"]), np.asarray(state["hn"])
        if n.dtype.kind != "i" or hn.dtype.kind != "i" or len(peaks) != quarters:
            return None
        rows = (
            _bits(state["e"]),
            _bits(state["x"]),
            n,
            _flags(state.get("dq"), quarters),
            _bits(peaks),
        )
        hourly = (hn, _bits(state["hx"]), _flags(state.get("dh"), hours))
        if any(len(r) != quarters for r in rows) or any(len(r) != hours for r in hourly):
            return None
        return cls(np.stack(rows), np.stack(hourly))

    def changed(self, before: _Inputs) -> tuple[list[int], list[int]] | None:
        """(quarters, hours) whose inputs differ from ``before``; None: another shape."""
        if self.quarters.shape != before.quarters.shape:
            return None
        by_quarter = (self.quarters != before.quarters).any(0)
        quarters = len(by_quarter)
        pad = hours_of(quarters) * QUARTERS_PER_HOUR - quarters
        if pad:
            by_quarter = np.pad(by_quarter, (0, pad))
        in_hour = by_quarter.reshape(-1, QUARTERS_PER_HOUR).any(1)
        by_hour = in_hour | (self.hours != before.hours).any(0)
        return np.flatnonzero(by_quarter[:quarters]).tolist(), np.flatnonzero(by_hour).tolist()


def _flags(counts: list[int] | None, size: int) -> np.ndarray:
    """Whether each window is derived (a count > 0), as aggregate reads ``dq``/``dh``."""
    out = np.zeros(size, np.int64)
    if counts:
        kept = min(size, len(counts))
        out[:kept] = np.asarray(counts[:kept]) != 0
    return out


@dataclass(frozen=True)
class _CellMemo:
    inputs: _Inputs | None
    series: dict[Window, Entry]


@dataclass(frozen=True)
class _TotalMemo:
    parts: tuple[Cell, ...]
    peaks: np.ndarray  # bits of every window's peak, in window order
    series: dict[Window, Entry]
    derived: dict[Window, frozenset[Cell]]


@dataclass
class _DayMemo:
    quarters: int
    cells: dict[Cell, _CellMemo]
    totals: dict[Cell, _TotalMemo]


def _cell(
    state: Mapping[str, Any], peaks: list[float], before: _CellMemo | None
) -> tuple[_CellMemo, set[Window] | None]:
    """A cell's series, and the windows recomputed (ALL: every one)."""
    inputs = _Inputs.of(state, peaks)
    changed = None
    if inputs is not None and before is not None and before.inputs is not None:
        changed = inputs.changed(before.inputs)
    if changed is None or before is None:
        return _CellMemo(inputs, cell_series(state, peaks)), ALL
    quarters, hours = changed
    series = dict(before.series)
    windows: set[Window] = {("P1D", 0)}
    for q in quarters:
        series[("PT15M", q)] = quarter_entry(state, peaks, q)
        windows.add(("PT15M", q))
    for h in hours:
        series[("PT1H", h)] = hour_entry(state, peaks, h)
        windows.add(("PT1H", h))
    series[("P1D", 0)] = day_entry(state, peaks)
    return _CellMemo(inputs, series), windows


def _total(
    parts: list[Cell],
    per_cell: Mapping[Cell, Mapping[Window, Entry]],
    peaks: dict[Window, float],
    changed: set[Window] | None,
    before: _TotalMemo | None,
) -> _TotalMemo:
    """A total's series, recomputed in the windows where a part or its peak changed
    (all of them when its parts or its shape changed)."""
    bits = _bits(list(peaks.values()))
    series: dict[Window, Entry] = {}
    derived: dict[Window, frozenset[Cell]] = {}
    redo: Iterable[Window] = peaks
    if (
        before is not None
        and changed is not ALL
        and before.parts == tuple(parts)
        and before.peaks.shape == bits.shape
    ):
        windows = list(peaks)
        moved = (windows[i] for i in np.flatnonzero(before.peaks != bits).tolist())
        redo = changed.union(moved)
        series, derived = dict(before.series), dict(before.derived)
    for window in redo:
        series[window], cells = total_entry(parts, per_cell, window, peaks[window])
        if cells:
            derived[window] = cells
        else:
            derived.pop(window, None)
    # in window order, as day_table gives them
    return _TotalMemo(
        tuple(parts),
        bits,
        {w: series[w] for w in peaks},
        {w: derived[w] for w in peaks if w in derived},
    )


def _union(changed: Mapping[Cell, set[Window] | None], parts: list[Cell]) -> set[Window] | None:
    """The windows recomputed in any of ``parts`` (ALL when one was recomputed whole)."""
    out: set[Window] = set()
    for cell in parts:
        windows = changed[cell]
        if windows is ALL:
            return ALL
        out |= windows
    return out


class DayTables(StageStore):
    """The last table of every open day, recomputed where it changed (see the module)."""

    def __init__(self) -> None:
        self._days: dict[GroupDayKey, _DayMemo] = {}

    def table(
        self, key: GroupDayKey, day: int, states: Mapping[Cell, Mapping[str, Any]]
    ) -> DayTable:
        """:func:`services.energy.aggregate.day_table` of ``states``, reusing what
        did not change since the day's last table."""
        if not states:
            return day_table(day, states)
        quarters = len(next(iter(states.values()))["e"])
        memo = self._days.get(key)
        if memo is None or memo.quarters != quarters:
            memo = _DayMemo(quarters, {}, {})
        # a new memo, put in place only once whole: one left half-made by an error
        # would pair a cell's new series with a total made from its old one
        fresh = _DayMemo(quarters, dict(memo.cells), {})
        per_cell: dict[Cell, dict[Window, Entry]] = {}
        changed: dict[Cell, set[Window] | None] = {}
        for cell, state in states.items():
            peaks = quarter_peaks([state["p"]], quarters)
            kept, changed[cell] = _cell(state, peaks, memo.cells.get(cell))
            fresh.cells[cell] = kept
            per_cell[cell] = kept.series
        derived_parts: dict[tuple[Window, Cell], frozenset[Cell]] = {}
        for total, parts in totals_of(states).items():
            peaks = window_peaks(quarter_peaks((states[c]["p"] for c in parts), quarters))
            kept_total = _total(
                parts, per_cell, peaks, _union(changed, parts), memo.totals.get(total)
            )
            fresh.totals[total] = kept_total
            per_cell[total] = kept_total.series
            derived_parts.update(((w, total), c) for w, c in kept_total.derived.items())
        self._days[key] = fresh
        return assemble(day, quarters, per_cell, derived_parts)

    def drop(self, key: GroupDayKey) -> None:
        """A closed day: its table is never asked for again."""
        self._days.pop(key, None)

    def restored(self, partitions: list[int]) -> None:
        self._days.clear()

    def forget(self, partitions: list[int]) -> None:
        self._days.clear()
