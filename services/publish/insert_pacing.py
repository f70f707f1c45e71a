"""How long the ClickHouse sink spaces its inserts: ``flush_ms`` at low load, longer
while readings arrive faster than ``busy_rows_per_s``.

Why: an insert's cost is mostly fixed. Measured with chDB (bench/publish_batches.py
and the ninth round of docs/performance.md), an insert into ``observations`` and its
four materialised views took about 45 ms of CPU whatever its size, plus about 8 µs a
row: at 200 ms spacing and 15,000 single readings/s, half of publish's CPU. Spacing
inserts longer under heavy load makes them larger and fewer, and leaves that CPU to
the stages; at low load the short spacing keeps a reading's latency low, which is
where it is measured (200 and 5,000 readings/s stay below the default threshold).

The rate is the last batch's rows over the time since the batch before it closed, not
the rows alone: a longer spacing gathers more rows at the same rate, and judging by
rows would keep a sink busy once it had been. Close to close, not insert to insert: a
batch holds what came while the one before it was inserted, and a slow insert
followed by a quick one read as a burst (seen at 5,000 readings/s, taken for 10,000
to 24,000 rows/s).

Two fast batches in a row turn the sink busy, one slow batch turns it back: a single
fast batch is a burst, not a load (a payload of curves, a day's released aggregates,
upstream batches that bunched up), and spacing the insert after it longer saves one
insert's fixed cost while every reading behind the burst waits up to the busy spacing
(600 ms, past the p99 goal of 500 ms at 200 readings/s). A load that lasts shows on
the next batch too, so it turns busy one short spacing later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.runtime.config import NodeConfig

log = logging.getLogger(__name__)


class InsertPacing:
    """The spacing of the sink's next insert, from the rate its last batch showed."""

    def __init__(
        self,
        spacing_s: float,
        busy_spacing_s: float,
        busy_rows_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        if busy_spacing_s < spacing_s or busy_rows_per_s <= 0:
            raise ValueError("the busy spacing must be at least the spacing, the rate positive")
        self.spacing_s = spacing_s
        self.busy_spacing_s = busy_spacing_s
        self.busy_rows_per_s = busy_rows_per_s
        self.clock = clock
        self.busy = False
        self.busy_batches = 0
        self._last: float | None = None
        self._fast = False  # whether the batch before this one came fast

    def after_batch(self, rows: int) -> float:
        """The spacing before the next insert, now that a batch of ``rows`` has closed
        (called as each batch closes: the rate is rows over the time between closes;
        busy from the second fast batch in a row, see the module)."""
        now = self.clock()
        last, self._last = self._last, now
        rate = rows / (now - last) if last is not None and now > last else 0.0
        fast = self.busy_spacing_s > self.spacing_s and rate >= self.busy_rows_per_s
        sustained, self._fast = fast and self._fast, fast
        return self._set(sustained, rows, rate)

    def _set(self, busy: bool, rows: int, rate: float) -> float:
        if busy != self.busy:
            log.info(
                "sink spacing changed",
                extra={
                    "busy": busy,
                    "spacing_ms": round((self.busy_spacing_s if busy else self.spacing_s) * 1000),
                    "rows": rows,
                    "rows_per_s": round(rate),
                },
            )
        self.busy = busy
        self.busy_batches += busy
        return self.busy_spacing_s if busy else self.spacing_s


def busy_spacing(flush_s: float, node: NodeConfig) -> float:
    """The spacing of a busy sink: never shorter than ``flush_s``, and none longer when
    ``flush_s`` is 0 (one insert per sink cycle: chosen for latency, kept under load)."""
    return flush_s if flush_s == 0 else max(flush_s, node.publish.busy_flush_ms / 1000)
