"""The sink's insert spacing: short at low load, longer while rows come fast."""

from __future__ import annotations

import pytest

from services.publish.insert_pacing import InsertPacing, busy_spacing
from services.runtime.config import load_node_config


class Clock:
    def __init__(self) -> None:
        self.now = 64.0

    def __call__(self) -> float:
        return self.now


def pacing(clock: Clock) -> InsertPacing:
    return InsertPacing(0.2, 0.6, 10_000, clock=clock)


def test_the_first_batch_keeps_the_short_spacing_whatever_its_rows() -> None:
    clock = Clock()
    assert pacing(clock).after_batch(1_000_000) == 0.2


def test_fast_batches_space_the_next_insert_longer_and_a_slow_one_shortens_it_again() -> None:
    clock = Clock()
    pace = pacing(clock)
    pace.after_batch(10)
    clock.now += 0.2
    assert pace.after_batch(3_000) == 0.2  # 15,000 rows/s, once: maybe a burst
    assert not pace.busy
    clock.now += 0.2
    assert pace.after_batch(3_000) == 0.6  # 15,000 rows/s again: a load
    assert pace.busy and pace.busy_batches == 1
    clock.now += 0.6
    # 3,000 rows again, but over the longer spacing: 5,000 rows/s is not busy, even
    # though the rows alone are what made the sink busy before.
    assert pace.after_batch(3_000) == 0.2
    assert not pace.busy and pace.busy_batches == 1


def test_the_threshold_is_a_rate_not_a_size() -> None:
    clock = Clock()
    pace = pacing(clock)
    pace.after_batch(1)
    clock.now += 0.25
    assert pace.after_batch(2_499) == 0.2  # 9,996 rows/s
    clock.now += 0.25
    assert pace.after_batch(2_500) == 0.2  # 10,000 rows/s, the first batch at it
    clock.now += 0.25
    assert pace.after_batch(2_500) == 0.6  # 10,000 rows/s, the second
    clock.now += 5.0
    assert pace.after_batch(20_000) == 0.2  # 4,000 rows/s, after a quiet spell


def test_a_clock_that_did_not_move_gives_the_short_spacing() -> None:
    clock = Clock()
    pace = pacing(clock)
    pace.after_batch(1)
    assert pace.after_batch(50_000) == 0.2


@pytest.mark.parametrize(("spacing", "busy", "rate"), [(0.5, 0.2, 1), (0.2, 0.6, 0)])
def test_a_busy_spacing_below_the_spacing_or_a_rate_of_zero_is_refused(
    spacing: float, busy: float, rate: float
) -> None:
    with pytest.raises(ValueError):
        InsertPacing(spacing, busy, rate)


def test_one_spacing_when_the_busy_spacing_is_no_longer() -> None:
    clock = Clock()
    pace = InsertPacing(0.2, 0.2, 10_000, clock=clock)
    pace.after_batch(1)
    clock.now += 0.25
    assert pace.after_batch(1_000_000) == 0.2 and not pace.busy


def test_one_burst_among_slow_batches_keeps_the_short_spacing() -> None:
    # Live readings at 200/s, and once a payload of curves (20 meters of 144 values:
    # 2,880 rows) or a day's released aggregates in a single batch: 14,600 rows/s for
    # one batch is no load. Spacing the next insert longer would save nothing and
    # make the readings behind the burst wait up to busy_flush_ms (600 ms), past the
    # p99 goal of 500 ms at 200 readings/s.
    clock = Clock()
    pace = pacing(clock)
    pace.after_batch(40)
    clock.now += 0.2
    assert pace.after_batch(40) == 0.2
    clock.now += 0.2
    assert pace.after_batch(40 + 2_880) == 0.2
    assert not pace.busy and pace.busy_batches == 0
    clock.now += 0.2
    assert pace.after_batch(40) == 0.2


def test_bursts_that_never_follow_one_another_never_turn_the_sink_busy() -> None:
    # 5,000 readings/s whose upstream batches sometimes bunch up: one batch in three
    # holds twice the rows and more (10,500 rows/s), the others the usual 1,000.
    clock = Clock()
    pace = pacing(clock)
    pace.after_batch(1_000)
    for rows in [2_100, 1_000, 1_000] * 5:
        clock.now += 0.2
        assert pace.after_batch(rows) == 0.2
    assert pace.busy_batches == 0


def test_the_sink_busy_spacing_is_never_shorter_and_none_without_flush_ms() -> None:
    node = load_node_config(env={})  # busy_flush_ms 600
    assert busy_spacing(0.2, node) == 0.6
    assert busy_spacing(1.0, node) == 1.0  # flush_ms raised past it: one spacing
    assert busy_spacing(0.0, node) == 0.0  # one insert per cycle, kept under load
