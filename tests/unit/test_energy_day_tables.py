"""The day tables kept between batches (services/energy/day_tables.py) are the tables
aggregate.day_table computes from scratch, whatever the changes in between.

Random runs of meter changes (single readings, load curves, readings longer than a
quarter or an hour, instants, corrections that lower a value or bring a breakpoint
back to zero) over a few cells, with now and then an aborted batch (the states go
back to an earlier table's) or a day of another length: after every step the kept
table and a fresh ``day_table`` must be the same to the bit (their ``repr``, which
tells -0.0 from 0.0 and shows the order of windows and cells).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy.aggregate import DayTable, day_table
from services.energy.day_tables import DayTables
from services.energy.windows import (
    QUARTER_US,
    apply_meter_change,
    empty_cell_day,
    merge_pieces,
)

KEY = ("lyon", "electricity", 0)
CELLS = [("Z1", "residential"), ("Z2", "residential"), ("Z1", "tertiary"), ("Z3", "unknown")]


@st.composite
def change(draw: Any, quarters: int) -> tuple[int, int, list[tuple[int, int, float]]]:
    """(cell, meter, new pieces) of one record."""
    cell = draw(st.integers(0, len(CELLS) - 1))
    meter = draw(st.integers(0, 3))
    length = draw(st.sampled_from([0, 300, 600, 900, 3600, 7200]))
    count = draw(st.sampled_from([1, 1, 1, 3, 12]))
    start = draw(st.integers(0, quarters * 3 - 1)) * 300
    values = st.sampled_from([0.0, 0.1, 0.2, 0.3, 1e-10, 2.5]) | st.floats(0, 5, width=32)
    pieces = []
    for k in range(count):
        a = (start + k * max(length, 300)) * 1_000_000
        span = length * 1_000_000
        if a + max(span, 1) > quarters * QUARTER_US:
            break
        pieces.append((a, span, draw(values)))
    return cell, meter, pieces


@st.composite
def runs(draw: Any) -> tuple[int, list[Any]]:
    quarters = draw(st.sampled_from([92, 96, 100]))
    steps = draw(
        st.lists(
            st.one_of(
                st.lists(change(quarters), min_size=1, max_size=6),
                st.just("abort"),
                st.just("other-length"),
            ),
            min_size=1,
            max_size=12,
        )
    )
    return quarters, steps


def _same(kept: DayTable, fresh: DayTable) -> None:
    assert repr(kept.windows) == repr(fresh.windows)
    assert list(kept.windows) == list(fresh.windows)
    assert kept.partial == fresh.partial
    assert kept.quarters == fresh.quarters
    assert repr(sorted(kept.derived_parts.items())) == repr(sorted(fresh.derived_parts.items()))


@settings(max_examples=150, deadline=None)
@given(runs())
def test_a_kept_table_is_the_table_computed_from_scratch(run):
    quarters, steps = run
    tables = DayTables()
    meters: dict[tuple[int, int], list] = {}
    states: dict[tuple[str, str], dict[str, Any]] = {}
    history: list[tuple[dict, dict]] = []
    for step in steps:
        if step == "abort" and history:
            saved_meters, saved_states = history[-1]
            meters, states = dict(saved_meters), dict(saved_states)
        elif step == "other-length":  # a day of another length under the same key
            other = {(CELLS[0]): empty_cell_day(quarters + 4)}
            _same(tables.table(KEY, 0, other), day_table(0, other))
        elif step != "abort":
            history.append((dict(meters), dict(states)))
            for cell, meter, pieces in step:
                old = meters.get((cell, meter), [])
                merged, removed, added = merge_pieces(old, pieces)
                meters[(cell, meter)] = merged
                state = states.get(CELLS[cell]) or empty_cell_day(quarters)
                states[CELLS[cell]] = apply_meter_change(state, old, merged, removed, added)
        _same(tables.table(KEY, 0, states), day_table(0, states))


def test_a_changed_value_changes_only_what_it_must_and_the_table_follows():
    """A second reading in one quarter: the kept table shows it (not the last one)."""
    tables = DayTables()
    cell = empty_cell_day(96)
    first = apply_meter_change(cell, [], [(0, 600_000_000, 1.0)], [], [(0, 600_000_000, 1.0)])
    before = tables.table(KEY, 0, {CELLS[0]: first})
    old, new = [(0, 600_000_000, 1.0)], [(0, 600_000_000, 2.0)]
    second = apply_meter_change(first, old, new, old, new)
    after = tables.table(KEY, 0, {CELLS[0]: second})
    _same(after, day_table(0, {CELLS[0]: second}))
    assert before.windows[("PT15M", 0)][CELLS[0]][0].energy == 1.0
    assert after.windows[("PT15M", 0)][CELLS[0]][0].energy == 2.0
