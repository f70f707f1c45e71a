"""Short commit cycles (services/runtime/linger.py) on a fake clock and a fake queue that
behaves like confluent-kafka's ``Consumer.consume``: it returns as soon as it holds the
messages asked for, else when its timeout has passed, and waiting moves the clock."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.linger import FULL, LINGERED, Linger


class FakeQueue:
    """Messages that arrive at given times; ``consume`` waits like librdkafka's."""

    def __init__(self, arrivals: list[float]):
        self.now = 0.0
        self.pending = sorted(arrivals)
        self.calls: list[tuple[int, float]] = []

    def clock(self) -> float:
        return self.now

    def consume(self, at_most: int, timeout_s: float) -> list[float]:
        self.calls.append((at_most, timeout_s))
        until = self.now + timeout_s
        if len(self.pending) >= at_most and self.pending[at_most - 1] <= until:
            self.now = max(self.now, self.pending[at_most - 1])  # full: back at once
        else:
            self.now = until  # a blocking wait to the timeout, never a spin
        taken = [t for t in self.pending if t <= self.now][:at_most]
        self.pending = self.pending[len(taken) :]
        return taken


def linger(queue: FakeQueue, linger_s: float = 0.02, idle_s: float = 0.5) -> Linger:
    return Linger(linger_s, idle_s, clock=queue.clock)


def test_a_lone_message_waits_one_linger_not_the_batch_timeout() -> None:
    queue = FakeQueue([0.1])
    batch = linger(queue).collect(queue.consume, 500)
    assert batch.messages == [0.1] and batch.closed_by == LINGERED
    assert round(queue.now, 6) == 0.12  # its arrival plus the linger, not 0.5 s


def test_a_full_batch_closes_at_once() -> None:
    queue = FakeQueue([0.0] * 700)
    cycles = linger(queue)
    first = cycles.collect(queue.consume, 500)
    assert len(first.messages) == 500 and first.closed_by == FULL and queue.now == 0.0
    second = cycles.collect(queue.consume, 500)
    assert len(second.messages) == 200 and second.closed_by == LINGERED
    assert cycles.counts.batches == {FULL: 1, LINGERED: 1}


def test_messages_after_the_linger_go_to_the_next_batch() -> None:
    queue = FakeQueue([0.0, 0.005, 0.01, 0.03, 0.035])
    cycles = linger(queue)
    assert cycles.collect(queue.consume, 500).messages == [0.0, 0.005, 0.01]
    assert cycles.collect(queue.consume, 500).messages == [0.03, 0.035]
    assert round(queue.now, 6) == 0.05


def test_no_linger_takes_only_what_is_queued() -> None:
    queue = FakeQueue([0.0, 0.0, 0.001])
    batch = linger(queue, linger_s=0.0).collect(queue.consume, 500)
    assert batch.messages == [0.0, 0.0] and queue.now == 0.0


def test_an_idle_stage_blocks_instead_of_spinning() -> None:
    queue = FakeQueue([])
    cycles = linger(queue, idle_s=0.5)
    for _ in range(20):
        assert cycles.collect(queue.consume, 500).messages == []
    # Ten seconds of nothing cost twenty blocking waits, one per idle timeout.
    assert queue.now == 10.0 and len(queue.calls) == 20 and cycles.counts.idle == 20


def test_enough_closes_the_batch_before_its_limit() -> None:
    queue = FakeQueue([0.0, 0.01, 0.02, 0.03, 0.04])
    held: list[float] = []

    def fetch(at_most: int, timeout_s: float) -> list[float]:
        got = queue.consume(at_most, timeout_s)
        held.extend(got)
        return got

    cycles = Linger(1.0, 0.5, slice_s=0.005, clock=queue.clock)
    batch = cycles.collect(fetch, 500, enough=lambda: len(held) >= 3)
    assert batch.closed_by == FULL and batch.messages == [0.0, 0.01, 0.02]


def test_chunks_let_enough_be_looked_at_before_the_whole_queue_is_taken() -> None:
    queue = FakeQueue([0.0] * 50)
    held: list[float] = []

    def fetch(at_most: int, timeout_s: float) -> list[float]:
        got = queue.consume(at_most, timeout_s)
        held.extend(got)
        return got

    cycles = Linger(1.0, 0.5, slice_s=0.05, chunk=10, clock=queue.clock)
    batch = cycles.collect(fetch, 500, enough=lambda: len(held) >= 15)
    assert len(batch.messages) == 21 and batch.closed_by == FULL  # 1, then 10, then 10
    assert all(at_most <= 10 for at_most, _ in queue.calls)


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(st.integers(0, 2000), max_size=60),
    limit=st.integers(1, 20),
    linger_ms=st.integers(0, 100),
)
def test_batches_close_on_size_or_linger_and_keep_every_message_in_order(
    arrivals: list[int], limit: int, linger_ms: int
) -> None:
    times = sorted(a / 1000 for a in arrivals)
    queue = FakeQueue(times)
    cycles = linger(queue, linger_s=linger_ms / 1000, idle_s=0.5)
    # Never held longer than the linger after its first message was picked up.
    seen = collect_checking_deadlines(
        queue, cycles, limit, len(times), lambda picked_up, _: picked_up + linger_ms / 1000
    )
    assert seen == times


def collect_checking_deadlines(
    queue: FakeQueue,
    cycles: Linger,
    limit: int,
    count: int,
    due: Callable[[float, float], float],
    work_s: float = 0.0,
) -> list[float]:
    """Batches until ``count`` messages came (a few idle rounds more), each at most
    ``limit`` long and closed no later than ``due(picked up, previous close)``, and
    before it only when full; the caller works ``work_s`` between batches (a stage's
    transaction). The messages seen, in order."""
    seen: list[float] = []
    last_close = float("-inf")
    for _ in range(count + 10):
        began = queue.now
        batch = cycles.collect(queue.consume, limit)
        if not batch.messages:
            continue
        seen += batch.messages
        assert len(batch.messages) <= limit
        deadline = due(max(began, batch.messages[0]), last_close)
        assert queue.now <= deadline + 1e-9
        if queue.now < deadline - 1e-9:
            assert batch.closed_by == FULL and len(batch.messages) == limit
        last_close = queue.now
        queue.now += work_s
    return seen


def spaced(queue: FakeQueue, linger_s: float = 0.02, **kwargs) -> Linger:
    return Linger(linger_s, 0.5, clock=queue.clock, spaced=True, **kwargs)


def test_spaced_a_message_after_a_quiet_spell_goes_at_once() -> None:
    queue = FakeQueue([0.0, 0.1, 0.11, 1.0])
    cycles = spaced(queue)
    # The first batch after the start gathers a whole linger (a backlog's partitions).
    assert cycles.collect(queue.consume, 500).messages == [0.0]
    assert round(queue.now, 6) == 0.02
    first = cycles.collect(queue.consume, 500)
    assert first.messages == [0.1] and round(queue.now, 6) == 0.1  # not 0.12
    # The next one arrived 10 ms after that close: it waits what is left of the linger.
    assert cycles.collect(queue.consume, 500).messages == [0.11]
    assert round(queue.now, 6) == 0.12
    assert cycles.collect(queue.consume, 500).messages == []  # an idle wait, 0.5 s
    assert cycles.collect(queue.consume, 500).messages == [1.0]
    assert round(queue.now, 6) == 1.0


def test_spaced_a_trickle_makes_at_most_one_batch_per_linger() -> None:
    """One message every 5 ms for a second: at most one batch per 20 ms linger (the
    bound on transactions or ClickHouse parts holds), none held past it."""
    times = [i * 0.005 for i in range(200)]
    queue = FakeQueue(times)
    cycles = spaced(queue)
    closes: list[float] = []
    seen: list[float] = []
    while len(seen) < len(times):
        batch = cycles.collect(queue.consume, 500)
        seen += batch.messages
        closes.append(queue.now)
    assert seen == times
    gaps = [b - a for a, b in pairwise(closes)]
    assert min(gaps) >= 0.02 - 1e-9
    assert len(closes) <= 1.0 / 0.02 + 1


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(st.integers(0, 2000), max_size=60),
    limit=st.integers(1, 20),
    linger_ms=st.integers(0, 100),
    work_ms=st.integers(0, 60),
)
def test_spaced_batches_close_on_size_or_linger_since_the_last_close(
    arrivals: list[int], limit: int, linger_ms: int, work_ms: int
) -> None:
    """Between batches the caller works ``work_ms`` (a stage's transaction); a batch
    closes no later than the linger after the previous close (or its first message
    when that came later), and before it only when full; every message once, in order."""
    times = sorted(a / 1000 for a in arrivals)
    queue = FakeQueue(times)
    cycles = spaced(queue, linger_s=linger_ms / 1000)

    def due(picked_up: float, last_close: float) -> float:
        if last_close == float("-inf"):  # the first batch after the start: a whole linger
            return picked_up + linger_ms / 1000
        return max(picked_up, last_close + linger_ms / 1000)

    seen = collect_checking_deadlines(queue, cycles, limit, len(times), due, work_ms / 1000)
    assert seen == times


class DecodingQueue(FakeQueue):
    """A backlog the caller decodes as it fetches (the sink): time passes per message."""

    def __init__(self, arrivals: list[float], per_message_s: float):
        super().__init__(arrivals)
        self.per_message_s = per_message_s

    def consume(self, at_most: int, timeout_s: float) -> list[float]:
        taken = super().consume(at_most, timeout_s)
        self.now += self.per_message_s * len(taken)
        return taken


def test_spaced_behind_a_backlog_with_slow_inserts_each_batch_takes_what_is_queued() -> None:
    """The sink's settings (flush 200 ms, slices of 50 ms, chunks of 100), a backlog of
    50,000 messages and inserts of 250 ms: each batch's deadline has passed before it
    begins, and it must still take what is queued, not one chunk (found in review: 476
    inserts of 101 messages instead of 23)."""
    queue = DecodingQueue([0.0] * 50_000, 0.0001)
    cycles = Linger(0.2, 0.5, clock=queue.clock, slice_s=0.05, chunk=100, spaced=True)
    sizes = []
    while queue.pending:
        sizes.append(len(cycles.collect(queue.consume, 20_000).messages))
        queue.now += 0.25  # the insert and the commit
    assert sum(sizes) == 50_000
    assert min(sizes[:-1]) == 20_000 and len(sizes) == 3
