"""One city x carrier x local day as a table of windows, and the records it publishes.

Pure functions over the cell-day states of :mod:`services.energy.windows`:
:func:`day_table` computes every window's figures for every cell and the city
totals, :func:`publish` applies the secrecy plan and builds EnergyAggregate
records (avro/EnergyAggregate.avsc).

Totals: ``("*", sector)`` is a sector's city total, ``("*", "*")`` the city's.
Their meter count is the sum of their cells' (a meter that moved zone within
a window counts in both), their largest meter the largest of their cells', and
their peak the peak of the summed power of all their meters (not a sum of peaks).

A window whose energy is partly derived (a reading longer than the window spread
over it, :func:`services.energy.windows.spread_over`) has no measured peak: its
peak is None, and it is published ``derived`` with ``peak_kw`` null. A total is
derived when one of its *published* cells is: a withheld cell must look the same
whatever it held, so its readings' resolution never shows through a total's flag
(the total's peak is then that of the summed power, spread readings at their average).

A window is ``partial`` when the city's meters (the city total, the same for every
cell: no cell's own coverage is told) reported in only some of its quarters: the
first or last day of data, an outage. Its figures are what arrived, not the whole
period's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from services.energy import secrecy
from services.energy.secrecy import TOTAL, Cell, Figures, SecrecyPolicy
from services.energy.windows import (
    QUARTER_US,
    QUARTERS,
    QUARTERS_PER_HOUR,
    WINDOW_US,
    hours_of,
    in_order,
    quarter_peaks,
)

Window = tuple[str, int]  # (granularity, index within the day)


@dataclass
class DayTable:
    """Figures and peak of every cell and total in every window of the day that has data."""

    day: int
    # (figures, peak): peak None when the window is derived (no measured peak)
    windows: dict[Window, dict[Cell, tuple[Figures, float | None]]] = field(default_factory=dict)
    quarters: int = QUARTERS  # 92, 96 or 100 on a Paris day
    partial: set[Window] = field(default_factory=set)  # windows the city's data covers in part
    # (window, total) -> its cells whose energy in the window is derived
    derived_parts: dict[tuple[Window, Cell], frozenset[Cell]] = field(default_factory=dict)

    def figures(self) -> dict[Window, dict[Cell, Figures]]:
        return {w: {c: f for c, (f, _) in cells.items()} for w, cells in self.windows.items()}

    def cells(self) -> set[Cell]:
        return {cell for cells in self.windows.values() for cell in cells}


def window_peaks(peaks: list[float]) -> dict[Window, float]:
    """Every window's peak from its quarters' peaks (an hour's and the day's: the
    highest of their quarters')."""
    out: dict[Window, float] = {("PT15M", q): peaks[q] for q in range(len(peaks))}
    for h in range(hours_of(len(peaks))):
        out[("PT1H", h)] = max(peaks[h * 4 : h * 4 + 4])
    out[("P1D", 0)] = max(peaks)
    return out


Entry = tuple[Figures, float | None]  # a window's figures and peak (None: derived)


def quarter_entry(state: Mapping[str, Any], peaks: list[float], q: int) -> Entry:
    """A cell's quarter ``q``: one function for the whole table and for a table
    recomputed where it changed (services.energy.day_tables), so both agree."""
    dq = state.get("dq") or ()
    peak = None if q < len(dq) and dq[q] else peaks[q]  # derived: no measured peak
    return figures_of(state["n"][q], state["e"][q], state["x"][q]), peak


def hour_entry(state: Mapping[str, Any], peaks: list[float], h: int) -> Entry:
    """A cell's hour ``h`` (see :func:`quarter_entry`)."""
    dh = state.get("dh") or ()
    peak = None if h < len(dh) and dh[h] else max(peaks[h * 4 : h * 4 + 4])
    energy = in_order(state["e"][h * 4 : h * 4 + 4])
    return figures_of(state["hn"][h], energy, state["hx"][h]), peak


def day_entry(state: Mapping[str, Any], peaks: list[float]) -> Entry:
    """A cell's day (see :func:`quarter_entry`)."""
    return figures_of(state["dn"], in_order(state["e"]), state["dx"]), max(peaks)


def cell_series(state: Mapping[str, Any], peaks: list[float]) -> dict[Window, Entry]:
    """Every window of one cell's day, from its state and its quarters' peaks."""
    quarters = len(state["e"])
    out: dict[Window, Entry] = {}
    for q in range(quarters):
        out[("PT15M", q)] = quarter_entry(state, peaks, q)
    for h in range(hours_of(quarters)):
        out[("PT1H", h)] = hour_entry(state, peaks, h)
    out[("P1D", 0)] = day_entry(state, peaks)
    return out


def figures_of(meters: int, energy: float, largest: float) -> Figures:
    """Figures rounded to the published precision (1 Wh / 1e-6 kWh): sums made in
    another order (a restart, other batches) then give the same figures and the
    same secrecy decisions, not ones a rounding error apart."""
    return Figures(meters, round(energy, 6) + 0.0, round(largest, 6) + 0.0)


def day_table(day: int, states: Mapping[Cell, Mapping[str, Any]]) -> DayTable:
    """Every window of the day where at least one meter of the group reported."""
    quarters = len(next(iter(states.values()))["e"]) if states else QUARTERS
    per_cell: dict[Cell, dict[Window, Entry]] = {}
    for cell, state in states.items():
        per_cell[cell] = cell_series(state, quarter_peaks([state["p"]], quarters))
    derived_parts: dict[tuple[Window, Cell], frozenset[Cell]] = {}
    for total, parts in totals_of(states).items():
        series, derived = _total_series(parts, states, per_cell, quarters)
        per_cell[total] = series
        derived_parts.update(((window, total), cells) for window, cells in derived.items())
    return assemble(day, quarters, per_cell, derived_parts)


def assemble(
    day: int,
    quarters: int,
    per_cell: Mapping[Cell, Mapping[Window, Entry]],
    derived_parts: dict[tuple[Window, Cell], frozenset[Cell]],
) -> DayTable:
    """The table of the windows where the city has data, from every cell's and
    total's series (cells first, then totals, as :func:`day_table` orders them)."""
    table = DayTable(day, quarters=quarters, derived_parts=derived_parts)
    everything = per_cell.get((TOTAL, TOTAL), {})
    for window, (figures, _) in everything.items():
        if figures.meters > 0:
            table.windows[window] = {cell: series[window] for cell, series in per_cell.items()}
    table.partial = partial_windows(table.windows, everything, quarters)
    return table


def totals_of(states: Mapping[Cell, Any]) -> dict[Cell, list[Cell]]:
    """Each total and its cells: every sector's city total (in sector order), then
    the city's over all cells."""
    sectors = sorted({sector for _, sector in states})
    totals: dict[Cell, list[Cell]] = {(TOTAL, s): [c for c in states if c[1] == s] for s in sectors}
    totals[(TOTAL, TOTAL)] = list(states)
    return totals


def _total_series(
    parts: list[Cell],
    states: Mapping[Cell, Mapping[str, Any]],
    per_cell: Mapping[Cell, Mapping[Window, Entry]],
    quarters: int,
) -> tuple[dict[Window, Entry], dict[Window, frozenset[Cell]]]:
    """A total's figures and peak in every window, and per window its cells whose
    energy is derived there. Its peak is that of its meters' summed power, not a sum
    of its cells' peaks."""
    peaks = quarter_peaks((states[c]["p"] for c in parts), quarters)
    series: dict[Window, Entry] = {}
    derived_parts: dict[Window, frozenset[Cell]] = {}
    for window, peak in window_peaks(peaks).items():
        series[window], derived = total_entry(parts, per_cell, window, peak)
        if derived:
            derived_parts[window] = derived
    return series, derived_parts


def total_entry(
    parts: list[Cell],
    per_cell: Mapping[Cell, Mapping[Window, Entry]],
    window: Window,
    peak: float,
) -> tuple[Entry, frozenset[Cell] | None]:
    """One window of a total: its figures from its cells', the given peak, and its
    cells whose energy is derived there (None: none is)."""
    meters = energy = largest = 0
    derived = []
    for c in parts:
        f, cell_peak = per_cell[c][window]
        meters += f.meters
        energy += f.energy
        largest = max(largest, f.largest)
        if cell_peak is None:
            derived.append(c)
    return (figures_of(meters, energy, largest), peak), frozenset(derived) if derived else None


def partial_windows(
    windows: Mapping[Window, Any], city: Mapping[Window, tuple[Figures, float]], quarters: int
) -> set[Window]:
    """Hours and the day holding a quarter where no meter of the city reported."""
    empty = {
        q for q in range(quarters) if city.get(("PT15M", q), (Figures(0, 0, 0),))[0].meters == 0
    }
    out: set[Window] = set()
    for window in windows:
        granularity, index = window
        if granularity == "PT1H":
            span = range(index * QUARTERS_PER_HOUR, min(quarters, (index + 1) * QUARTERS_PER_HOUR))
            if empty.intersection(span) or len(span) < QUARTERS_PER_HOUR:
                out.add(window)
        elif granularity == "P1D" and empty:
            out.add(window)
    return out


def window_bounds(day: int, window: Window, quarters: int = QUARTERS) -> tuple[int, int]:
    """[start, end) of a window of the day starting at ``day`` (of ``quarters`` quarters)."""
    granularity, index = window
    end = day + quarters * QUARTER_US
    if granularity == "P1D":
        return day, end
    start = day + index * WINDOW_US[granularity]
    return start, min(start + WINDOW_US[granularity], end)


@lru_cache(maxsize=65_536)
def _iso(t_us: int) -> str:
    return dt.datetime.fromtimestamp(t_us / 1e6, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def aggregate_key(city: str, cell: Cell, carrier: str, granularity: str, start: int) -> str:
    """Kafka key of a window's record: city|zone|carrier|sector|granularity|window_start."""
    zone, sector = cell
    return f"{city}|{zone}|{carrier}|{sector}|{granularity}|{_iso(start)}"


def windows_of_quarters(quarters: Iterable[int]) -> set[Window]:
    """The windows (quarters, their hours, the day) that hold these quarters."""
    out: set[Window] = set()
    for q in quarters:
        out.add(("PT15M", q))
        out.add(("PT1H", q // 4))
        out.add(("P1D", 0))
    return out


def plan_table(table: DayTable, policy: SecrecyPolicy) -> secrecy.Plan:
    """The secrecy plan of a day's table; complements ranked by their day's energy."""
    day = table.windows.get(("P1D", 0))
    sizes = {cell: f.energy for cell, (f, _) in day.items()} if day else None
    return secrecy.plan(table.figures(), policy, sizes)


def publish(
    table: DayTable,
    *,
    city: str,
    carrier: str,
    plan: secrecy.Plan,
    version: int,
    computed_at: int,
    only: set[Window] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(key, EnergyAggregate) of every cell and total in the table's windows (or ``only``).

    Every cell of the day gets a record in every window where the city has data
    (zeros where the cell has none): a withheld cell looks the same whether it
    had data or not. (The stage re-sends only changed windows, and the whole day
    when a cell appears or the withheld pattern changes, so what a day publishes
    does not depend on the order its readings arrived in.)
    """
    withheld, own = plan
    records: list[tuple[str, dict[str, Any]]] = []
    for window in sorted(table.windows):
        if only is not None and window not in only:
            continue
        start, end = window_bounds(table.day, window, table.quarters)
        granularity, partial = window[0], window in table.partial
        for cell, (f, peak) in sorted(table.windows[window].items()):
            why = secrecy.reason(withheld, own, window, cell)
            record: dict[str, Any] = {
                "city": city,
                "zone": cell[0],
                "carrier": carrier,
                "sector": cell[1],
                "granularity": granularity,
                "window_start": start,
                "window_end": end,
                "version": version,
                "energy_kwh": None,
                "meter_count": None,
                "peak_kw": None,
                "largest_share": None,  # never a value: it gave the top consumer away
                "suppressed": why is not None,
                "suppression_reason": why,
                "computed_at": computed_at,
                "derived": False,  # a withheld cell says nothing about its readings
                "partial": partial,
            }
            if why is None:
                shown = _shown_peak(table, plan, window, cell, peak)
                record["energy_kwh"] = f.energy
                record["meter_count"] = f.meters
                record["peak_kw"] = _peak(shown)
                record["derived"] = shown is None
            records.append((aggregate_key(city, cell, carrier, granularity, start), record))
    return records


def _shown_peak(
    table: DayTable, plan: secrecy.Plan, window: Window, cell: Cell, peak: float | None
) -> float | None:
    """A cell's own peak (None when derived); a total's, None when one of its published
    cells is derived (never because of a withheld one: see the module's docstring)."""
    parts = table.derived_parts.get((window, cell))
    if not parts:
        return peak
    withheld, own = plan
    return None if any(secrecy.reason(withheld, own, window, c) is None for c in parts) else peak


def _peak(peak: float | None) -> float | None:
    """The published peak: None for a derived window (an average is no peak)."""
    return None if peak is None else round(peak, 6) + 0.0


def release(
    table: DayTable,
    *,
    city: str,
    carrier: str,
    plan: secrecy.Plan,
    released_at: int,
    closed_by: str,
) -> list[tuple[str, dict[str, Any]]]:
    """(key, EnergyAggregateRelease) of every cell and total in every window of a
    closed day: the day's one and only release (docs/energy-analytics.md).

    Same cells, windows and secrecy as :func:`publish`, without a version (there
    is one record per window, ever) and without any dominance value."""
    withheld, own = plan
    records: list[tuple[str, dict[str, Any]]] = []
    for window in sorted(table.windows):
        start, end = window_bounds(table.day, window, table.quarters)
        granularity, partial = window[0], window in table.partial
        for cell, (f, peak) in sorted(table.windows[window].items()):
            why = secrecy.reason(withheld, own, window, cell)
            shown = why is None
            peak = _shown_peak(table, plan, window, cell, peak)
            record: dict[str, Any] = {
                "city": city,
                "zone": cell[0],
                "carrier": carrier,
                "sector": cell[1],
                "granularity": granularity,
                "window_start": start,
                "window_end": end,
                "energy_kwh": f.energy if shown else None,
                "meter_count": f.meters if shown else None,
                "peak_kw": _peak(peak) if shown else None,
                "derived": shown and peak is None,
                "suppressed": not shown,
                # A flag, not the rule: a per-window reason would tell the meter count's
                # class (min-meters: 1 to 9; secondary: none or at least 10).
                "suppression_reason": None if shown else secrecy.CONFIDENTIAL,
                "closed_by": closed_by,
                "released_at": released_at,
                "partial": partial,
            }
            records.append((aggregate_key(city, cell, carrier, granularity, start), record))
    return records


__all__ = [
    "DayTable",
    "aggregate_key",
    "day_table",
    "plan_table",
    "publish",
    "release",
    "window_bounds",
    "windows_of_quarters",
]
