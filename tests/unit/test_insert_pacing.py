"""The sink's insert spacing: short at low load, longer while rows come fast."""

from __future__ import annotations

import pytest

from services.publish.insert_pacing import InsertPacing


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


def test_a_fast_batch_spaces_the_next_insert_longer_and_a_slow_one_shortens_it_again() -> None:
    clock = Clock()
    pace = pacing(clock)
    pace.after_batch(10)
    clock.now += 0.2
    assert pace.after_batch(3_000) == 0.6  # 15,000 rows/s
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
    assert pace.after_batch(2_500) == 0.6  # 10,000 rows/s
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
