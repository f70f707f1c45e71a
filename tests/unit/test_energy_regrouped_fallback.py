"""energy-analytics' regrouped.v2 fast path (``_aggregate_batch``) when a member is
refused: the runner undoes the message's state writes and takes the members one by
one. What the first try did to the stage's day index is not undone with them, so
the members taken again must still give what the member-by-member path gives: the
same state, and a closed day's meter readings all dropped from it."""

from __future__ import annotations

from typing import Any

from services.energy.stage import EnergyTopics
from testkit.energy import EnergyHarness, energy_observation

US = 1_000_000
DAY = 86_400 * US
D = 1_763_766_000_000_000  # 2025-11-22 00:00 in Paris: the day that closes
NOW = D + 4 * DAY  # the records' Kafka timestamp
TOPICS = EnergyTopics(observation_batches="observations.v2")


def _reading(meter: str, start: int) -> dict[str, Any]:
    return energy_observation(meter, "Z1", start, [0.25])


def _run(regrouped_fast: bool, second: list[dict[str, Any]]) -> EnergyHarness:
    """Day D gets m1 in a first transaction; then one observations.v2 message (one
    regrouped message: same city, carrier and source partition) with ``second``."""
    harness = EnergyHarness(now_us=NOW, topics=TOPICS, regrouped_fast=regrouped_fast)
    harness.messages([_reading("m1", D)])
    harness.messages(second)
    return harness


def _meter_days_of(harness: EnergyHarness, day: int) -> list[str]:
    return sorted(
        k for k in harness.stage.store._committed if k.startswith(f"md|lyon|electricity|{day}|")
    )


def test_a_refused_member_after_a_day_closed_leaves_no_meter_day_of_that_day() -> None:
    """m2 adds to day D, m3 (three days on) moves the watermark past D's lateness, so
    D closes and is released; m4 is refused (a future reading). The fast path's first
    try had already taken D out of the index of open days with m1 and m2 in it; taken
    again one by one, m2 puts D back with only m2, and the close of D then drops m2's
    readings but keeps m1's: a household's day kept after its release, forever."""
    second = [
        _reading("m2", D),
        _reading("m3", D + 3 * DAY),
        _reading("m4", NOW + 2 * DAY),  # more than a day past the Kafka timestamp
    ]
    fast = _run(True, second)
    one_by_one = _run(False, second)
    assert one_by_one.dead == fast.dead == ["future-reading"]
    assert any(key.startswith("lyon|") for key in one_by_one.released)  # D was released
    assert _meter_days_of(one_by_one, D) == []
    assert _meter_days_of(fast, D) == []


def test_a_refused_member_after_a_day_closed_gives_the_member_by_member_state() -> None:
    """m3 closes D (nothing else of D in the message), m4 is refused. The first try
    took D out of the index; taken again, m3 finds no open D to close, so the
    watermarks' record of the last closed day is not moved as the per-member path
    moves it."""
    second = [_reading("m3", D + 3 * DAY), _reading("m4", NOW + 2 * DAY)]
    fast = _run(True, second)
    one_by_one = _run(False, second)
    assert fast.dead == one_by_one.dead == ["future-reading"]
    assert fast.stage.store._committed == one_by_one.stage.store._committed
