"""The columnar (numpy) time arithmetic of energy-analytics equals the per-reading one,
bit for bit, on random series: regular and irregular times, every step from a minute
to two days, gaps, readings across local midnight, DST days, corrections (a reading
sent again, with the same or another value) and several meters changing one cell.

Equality is exact (``==`` on floats), not approximate: the state written to the
changelog and every secrecy decision must not depend on the path that computed them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy import columns, windows
from services.energy.columns import MeterChange, Pieces

US = 1_000_000
HOUR = 3600 * US
# Paris: an ordinary day, the spring DST day (23 h) and the autumn one (25 h)
STARTS = (
    1_763_766_000_000_000,  # 2025-11-21T23:00Z = 2025-11-22 00:00 Paris
    1_743_289_200_000_000,  # 2025-03-29T23:00Z = 2025-03-30 00:00 Paris (23 h)
    1_761_429_600_000_000,  # 2025-10-25T22:00Z = 2025-10-26 00:00 Paris (25 h)
)
TZ = "Europe/Paris"
STEPS = (60, 300, 420, 600, 900, 1800, 3600, 5400, 86_400, 172_800)

values = st.lists(
    st.one_of(
        st.floats(0, 5, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, 0.1, 0.2, 0.3, 1e-12, 1e6]),
    ),
    min_size=1,
    max_size=60,
)


@st.composite
def series(draw: Any, day: int | None = None) -> dict[str, Any]:
    """A regular (start, step) or irregular (times) series near a DST day."""
    base = draw(st.sampled_from(STARTS)) if day is None else day
    vals = draw(values)
    if draw(st.booleans()):
        step = draw(st.sampled_from(STEPS))
        offset = draw(st.integers(-6, 30)) * 900 * US + draw(st.sampled_from([0, 0, 7 * US]))
        return {"start": base + offset, "step_seconds": step, "times": [], "values": vals}
    times = draw(
        st.lists(
            st.integers(base - 2 * HOUR, base + 30 * HOUR), min_size=len(vals), max_size=len(vals)
        )
    )
    return {"start": min(times), "step_seconds": 0, "times": times, "values": vals}


def as_lists(split: dict[int, Pieces | list]) -> dict[int, list[tuple]]:
    return {day: p.tolist() if isinstance(p, Pieces) else p for day, p in split.items()}


@settings(max_examples=60, deadline=None)
@given(series())
def test_a_series_splits_into_the_same_pieces_per_local_day(record) -> None:
    expected = windows.pieces_by_day(record, TZ)
    got = as_lists(columns.split_days(record, TZ))
    assert got == expected
    assert list(got) == list(expected) or sorted(got) == sorted(expected)


def one_day(record: dict[str, Any]) -> tuple[int, list[tuple]]:
    """The first day of a series and its pieces."""
    day, pieces = sorted(windows.pieces_by_day(record, TZ).items())[0]
    return day, pieces


@st.composite
def corrections(draw: Any) -> tuple[list[tuple], list[tuple]]:
    """A meter's stored day, and what arrives next: the same readings again, other
    values at the same times, or other readings overlapping part of them."""
    day, old = one_day(draw(series()))
    first = draw(series(day=day))
    kind = draw(st.sampled_from(["again", "corrected", "other"]))
    if kind == "again":
        new = list(old)
    elif kind == "corrected":
        new = [
            (a, length, v * 2 + 0.5) if i % 2 else (a, length, v)
            for i, (a, length, v) in enumerate(old)
        ]
    else:
        new = windows.pieces_by_day(first, TZ).get(day, old[:1])
    stored, _, _ = windows.merge_pieces([], old)
    return stored, new


@settings(max_examples=60, deadline=None)
@given(corrections())
def test_merging_a_meters_day_gives_the_same_merged_removed_and_added(case) -> None:
    old, new = case
    expected = windows.merge_pieces(old, new)
    got = columns.merge_columns(Pieces.of(old), Pieces.of(new))
    assert tuple(p.tolist() for p in got) == expected
    for arriving in (new, Pieces.of(new)):  # a few pieces as lists, many as columns
        got = columns.merge_day(columns.to_columns(old), arriving)
        assert got == tuple(columns.to_columns(p) for p in expected)


@st.composite
def cell_changes(draw: Any) -> tuple[dict[str, Any], list[tuple[list, list, list, list]]]:
    """A cell-day state built by earlier meters, and a batch of further meter changes
    (new meters, corrections, the same meter twice) of that day."""
    day = draw(st.sampled_from(STARTS))
    quarters = windows.day_quarters(day, TZ)
    cell = windows.empty_cell_day(quarters)
    meters: dict[int, list[tuple]] = {}
    changes = []
    steps = draw(st.lists(st.tuples(st.integers(0, 4), series(day=day)), min_size=1, max_size=8))
    split = draw(st.integers(0, len(steps)))
    for position, (meter, record) in enumerate(steps):
        pieces = windows.pieces_by_day(record, TZ).get(day)
        if not pieces:
            continue
        old = meters.get(meter, [])
        merged, removed, added = windows.merge_pieces(old, pieces)
        if not removed and not added:
            continue
        if position < split:  # before the batch: already in the cell's state
            cell = windows.apply_meter_change(cell, old, merged, removed, added)
        else:
            changes.append((old, merged, removed, added))
        meters[meter] = merged
    return cell, changes


@settings(max_examples=80, deadline=None)
@given(cell_changes())
def test_a_batch_of_meter_changes_leaves_the_cell_as_one_change_after_the_other(case) -> None:
    cell, changes = case
    expected = cell
    for old, new, removed, added in changes:
        expected = windows.apply_meter_change(expected, old, new, removed, added)
    batch = [MeterChange(*(columns.to_columns(p) for p in change)) for change in changes]
    assert columns.apply_meter_changes(cell, batch) == expected
    # old pieces near each change only, however few the old days hold
    assert columns.apply_meter_changes(cell, batch, near_from=0) == expected


def test_a_level_back_to_zero_midway_restarts_from_zero_as_per_reading() -> None:
    """Two meters leave a breakpoint whose level they raised: what remains is a
    rounding residue, which the per-reading code drops; the next meter then starts
    from 0.0 there, not from the residue."""
    a, b, c = ([(0, 900 * US, kwh)] for kwh in (0.1, 0.2, 0.3))
    steps = [([], a, [], a), ([], b, [], b), (a, [], a, []), (b, [], b, []), ([], c, [], c)]
    cell = windows.empty_cell_day()
    expected = cell
    for old, new, removed, added in steps:
        expected = windows.apply_meter_change(expected, old, new, removed, added)
    got = columns.apply_meter_changes(
        cell, [MeterChange(*(columns.to_columns(p) for p in step)) for step in steps]
    )
    assert got == expected
    kw = [kwh * windows.HOUR_US / (900 * US) for kwh in (0.1, 0.2, 0.3)]
    residue = kw[0] + kw[1] - kw[0] - kw[1]
    assert residue != 0.0 and residue + kw[2] != kw[2]  # the case this test is about
    assert got["p"]["0"] == kw[2]


def test_an_old_day_out_of_order_is_added_up_whole_not_by_bisection() -> None:
    """The shortcut finds a change's old readings by bisection, which needs the old
    day in time order: a merge sorts its result, so a stored day out of order (the
    legacy format, a broken invariant) can give a new day in order. Then the old day
    is added up whole, as one change after the other gives it (before: the replaced
    reading was never subtracted, the cell counted a meter too many)."""
    from services.energy.columns import MeterChange, Pieces, merge_day, to_columns

    minute, quarter = 60 * 10**6, 15 * 60 * 10**6
    day = 1_763_766_000_000_000
    quarters = windows.day_quarters(day, "Europe/Paris")
    old = [(k * minute, minute, 0.5) for k in range(50)]
    old += [(q * quarter, quarter, v) for q, v in ((26, 3.0), (50, 4.0), (27, 5.0), (44, 6.0))]
    merged, removed, added = merge_day(to_columns(old), [(26 * quarter, quarter, 100.0)])
    assert columns._sorted_apart(Pieces.columns(*merged))  # the new day is in order
    cell = windows.apply_meter_change(
        windows.empty_cell_day(quarters), [], sorted(old), [], sorted(old)
    )
    expected = windows.apply_meter_change(
        cell,
        old,
        list(zip(*merged, strict=True)),
        list(zip(*removed, strict=True)),
        list(zip(*added, strict=True)),
    )
    change = MeterChange(to_columns(old), merged, removed, added)
    assert columns.apply_meter_changes(cell, [change], near_from=0) == expected
