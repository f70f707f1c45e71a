"""A regrouped message of short series aggregated together (many_meters.py,
``EnergyStage._aggregate_together``) gives exactly what its members taken one by one
give: state, upserts, releases and dead letters; and it gives way to them whenever
order could matter (a day closing, a late or future reading, a reading across local
midnight, a long series).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy.many_meters import OneDayMembers, watermark_path
from services.energy.stage import EnergyTopics
from testkit.energy import EnergyHarness, energy_observation

US = 1_000_000
DAY = 86_400 * US
START = 1_763_766_000_000_000  # 2025-11-22 00:00 in Paris
TOPICS = EnergyTopics(observation_batches="observations.v2")
together_taken: list[int] = []  # messages aggregated together, per example


def _counting(harness: EnergyHarness) -> list[int]:
    """How many regrouped messages the harness's stage aggregated together."""
    taken = [0]
    together = harness.stage._aggregate_together

    def counted(batch: dict[str, Any], meta: Any) -> Any:
        emits = together(batch, meta)
        taken[0] += emits is not None
        return emits

    harness.stage._aggregate_together = counted
    return taken


@st.composite
def reading(draw: Any) -> dict[str, Any]:
    """A meter's short series: mostly one reading in the first days, now and then a
    late one, a future one, one across midnight, a long one or a repeat."""
    meter = draw(st.integers(0, 30))
    step = draw(st.sampled_from([600, 600, 900, 3600]))
    day = draw(st.integers(0, 4))
    slot = draw(st.integers(0, 95))
    count = draw(st.sampled_from([1, 1, 1, 2, 3, 9]))
    start = START + day * DAY + slot * 900 * US
    kind = draw(st.sampled_from(["plain"] * 8 + ["late", "future", "midnight"]))
    if kind == "late":
        start -= 6 * DAY
    elif kind == "future":
        start += 20 * DAY
    elif kind == "midnight":
        start = START + day * DAY - 300 * US
    values = draw(st.lists(st.floats(0, 3, allow_nan=False), min_size=count, max_size=count))
    return energy_observation(
        f"m{meter}", f"Z{meter % 3}", start, values, step_seconds=step, sector="tertiary"
    )


def _run(harness: EnergyHarness, transactions: list[list[list[dict]]]) -> tuple:
    for messages in transactions:
        harness.messages(*messages)
    return (
        dict(harness.stage.store._committed),
        harness.latest,
        harness.released,
        Counter(harness.dead),
        harness.stage.readings_aggregated,
    )


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(st.lists(reading(), min_size=1, max_size=30), max_size=3), max_size=5))
def test_messages_aggregated_together_give_what_their_members_one_by_one_give(transactions):
    now = START + 3 * DAY
    together = EnergyHarness(now_us=now, topics=TOPICS)
    taken = _counting(together)
    got = _run(together, transactions)
    together_taken.append(taken[0])
    one_by_one = EnergyHarness(now_us=now, topics=TOPICS, regrouped_fast=False)
    assert got == _run(one_by_one, transactions)


def test_the_property_above_aggregated_messages_together() -> None:
    assert sum(together_taken) > 0


def _singles(meters: range, start: int) -> list[dict[str, Any]]:
    return [energy_observation(f"m{k}", f"Z{k % 4}", start, [0.5]) for k in meters]


def test_a_message_of_fresh_single_readings_is_aggregated_together() -> None:
    now = START + 3 * DAY
    harness = EnergyHarness(now_us=now, topics=TOPICS)
    taken = _counting(harness)
    transactions = [[_singles(range(200), START)], [_singles(range(100, 300), START + 600 * US)]]
    got = _run(harness, transactions)
    assert taken[0] == 2
    assert got == _run(EnergyHarness(now_us=now, topics=TOPICS, regrouped_fast=False), transactions)
    group_day = got[0][f"gd|lyon|electricity|{START}"]
    assert group_day["version"] == 400  # one version per meter change, as one by one


def test_a_message_whose_readings_close_a_day_is_taken_member_by_member() -> None:
    """The first day's readings, then readings three days later: the second message
    moves the watermark past the first day's lateness, which closes it mid-message."""
    now = START + 5 * DAY
    harness = EnergyHarness(now_us=now, topics=TOPICS)
    taken = _counting(harness)
    transactions = [[_singles(range(50), START)], [_singles(range(50), START + 3 * DAY)]]
    got = _run(harness, transactions)
    assert taken[0] == 1
    assert got[2], "the first day was released"
    assert got == _run(EnergyHarness(now_us=now, topics=TOPICS, regrouped_fast=False), transactions)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from("0123"), st.integers(0, 100), max_size=4),
    st.integers(0, 100),
    st.sampled_from("0123"),
    st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)), min_size=1, max_size=12),
)
def test_the_watermark_path_holds_every_watermark_the_members_see_in_turn(
    partitions, earliest, source, spans
) -> None:
    """Taken one by one (as ``_aggregate``), the members move the marks and see the
    watermarks in between; a partition catching up from past the skew can lower the
    watermark, so the path must hold those in between, not only the last."""
    stage = EnergyHarness(now_us=START, topics=TOPICS, partitions=4, source_skew_us=20).stage
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([s + n for s, n in spans], dtype=np.int64)
    members = OneDayMembers("electricity", [], [], [], starts, ends, [], [])
    path = watermark_path(partitions, earliest, source, members, stage._watermark)
    marks, seen, changed = dict(partitions), [], False  # seen: checked or made
    low = earliest
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        newest, low_now = max(end, marks.get(source, 0)), min(low, start)
        if marks:  # what _aggregate checks the member against: its own start counted
            seen.append(stage._watermark(marks, low_now))
        if newest > marks.get(source, 0) or low_now < low or source not in marks:
            marks[source], low, changed = newest, low_now, True
            seen.append(stage._watermark(marks, low))
    assert max(seen) <= path.highest
    assert (path.partitions, path.earliest, path.changed) == (marks, low, changed)
