"""Short commit cycles: a batch closes when it is full or ``linger`` after its first message.

A stage that waits a fixed time to fill its batch adds that whole time to every
record's latency at low load, once per stage (five stages of 0.5 s: seconds end to
end). Instead a batch starts when its first message arrives and closes when it holds
``limit`` messages or when ``linger`` has passed since then, whichever comes first:
at low load a record waits one linger per stage, at high load batches fill at once.

Waiting never spins: every wait is a blocking fetch (librdkafka's ``consume`` sleeps
on its queue until messages or its timeout), the first one for as long as ``idle``
(an idle stage wakes that often to look at its stop flag and its ticks).

Spaced (``spaced=True``, what the ClickHouse sink uses): a batch closes
when full or once ``linger`` has passed since the *previous batch closed*, and no
sooner than its first message. The bound on batches per second is the same (one per
linger: ClickHouse parts), but a message after a quiet spell goes at once instead of
waiting a whole linger, and under a steady trickle a message waits what is left of
the linger, on average half of it: latency at low load is what the bound is paid in,
so it is paid only where the bound bites. The first batch after a start gathers a
whole linger after its first message, as unspaced: a sink that starts has a backlog
on several partitions whose fetches begin one by one, and one insert of all of it is
the point of the bound. The stages keep lingering after a batch's first message:
spacing their transactions measured no better on the whole node (docs/performance.md).

The fetch and the clock are passed in, so the decision is tested with a fake clock
and the runner and the ClickHouse sink share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

# fetch(at_most, timeout_s): up to ``at_most`` messages, returning as soon as it has
# them all or when ``timeout_s`` has passed (confluent-kafka's Consumer.consume).
Fetch = Callable[[int, float], Sequence[T]]

FULL = "full"  # closed because it held its limit (or its caller said it is enough)
LINGERED = "linger"  # closed because the linger since its first message ran out


@dataclass
class LingerCounts:
    """How batches closed and how often the fetch was called (for metrics and tests)."""

    batches: dict[str, int] = field(default_factory=dict)
    fetches: int = 0
    idle: int = 0  # idle waits that ended with no message


@dataclass
class Batch(Generic[T]):
    """Messages of one cycle and why the cycle closed (``""``: no message came)."""

    messages: list[T]
    closed_by: str = ""


class Linger:
    """Collects one batch per :meth:`collect` call (see the module docstring).

    ``slice_s`` and ``chunk`` cap one fetch (its wait, its messages) once the batch has
    started, so that a caller's ``enough`` (the ClickHouse sink's rows) is looked at
    that often; None: one fetch waits out the remaining linger for the whole limit."""

    def __init__(
        self,
        linger_s: float,
        idle_s: float,
        *,
        slice_s: float | None = None,
        chunk: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        spaced: bool = False,
    ):
        """``spaced``: the linger counts from the previous batch's close (see the module)."""
        if linger_s < 0 or idle_s <= 0 or (slice_s or 1) <= 0 or (chunk or 1) < 1:
            raise ValueError("linger must be >= 0, idle, slice and chunk > 0")
        self.linger_s = linger_s
        self.idle_s = idle_s
        self.slice_s = slice_s
        self.chunk = chunk
        self.clock = clock
        self.spaced = spaced
        self.counts = LingerCounts()
        self._last_close = float("-inf")

    def collect(
        self, fetch: Fetch[T], limit: int, enough: Callable[[], bool] | None = None
    ) -> Batch[T]:
        """One batch: wait up to ``idle_s`` for a first message, then until ``limit``
        messages, ``enough()`` or the linger since that first message (spaced: since
        the previous batch closed, and at least until the first message)."""
        first = self._fetch(fetch, 1, self.idle_s)
        if not first:
            self.counts.idle += 1
            return Batch([])
        now = self.clock()
        started = self._last_close > float("-inf")  # a batch closed since the start
        if self.spaced and started:
            deadline = max(now, self._last_close + self.linger_s)
        else:
            deadline = now + self.linger_s
        messages = list(first)
        while True:
            if len(messages) >= limit or (enough is not None and enough()):
                return self._closed(messages, FULL)
            room = (
                limit - len(messages)
                if self.chunk is None
                else min(self.chunk, limit - len(messages))
            )
            remaining = deadline - self.clock()
            if remaining <= 0:
                # What is already queued costs no wait: take it all before closing (in
                # chunks: a spaced batch whose deadline passed before it began, behind
                # a backlog, would otherwise close with one chunk).
                messages += self._drain(fetch, limit - len(messages), enough)
                full = len(messages) >= limit or (enough is not None and enough())
                return self._closed(messages, FULL if full else LINGERED)
            wait = remaining if self.slice_s is None else min(remaining, self.slice_s)
            messages += self._fetch(fetch, room, wait)

    def _drain(self, fetch: Fetch[T], room: int, enough: Callable[[], bool] | None) -> list[T]:
        """What is queued now, up to ``room`` messages or ``enough()``, without waiting."""
        taken: list[T] = []
        while room > 0:
            ask = room if self.chunk is None else min(self.chunk, room)
            got = self._fetch(fetch, ask, 0.0)
            taken += got
            room -= len(got)
            if len(got) < ask or (enough is not None and enough()):
                break
        return taken

    def _fetch(self, fetch: Fetch[T], at_most: int, timeout_s: float) -> list[T]:
        self.counts.fetches += 1
        return list(fetch(at_most, timeout_s))

    def _closed(self, messages: list[T], why: str) -> Batch[T]:
        self.counts.batches[why] = self.counts.batches.get(why, 0) + 1
        self._last_close = self.clock()
        return Batch(messages, why)
