"""The ClickHouse sink's offsets when a partition is sought back in the middle of a
batch (reassigned while the batch gathers, now that a batch is several fetches): the
commit and the landed mark follow the highest offset landed, not the last message to
arrive. Committing the last to arrive (found by review: 120 of 100..149) landed
120..149 again in the next batch under another dedup token. Fakes for Kafka and the
warehouse: this is the sink's bookkeeping; the broker tests are test_publish_sink*.py."""

from __future__ import annotations

import pyarrow as pa

from services.publish.insert_pacing import InsertPacing
from services.publish.sink import SinkRoute, SinkSummary, WarehouseSink
from services.runtime.linger import Linger
from services.runtime.metrics import ServiceMetrics


class Msg:
    def __init__(self, o):
        self.o = o

    def topic(self):
        return "t"

    def partition(self):
        return 0

    def offset(self):
        return self.o

    def value(self):
        return b""

    def error(self):
        return None


class Codec:
    batching = None

    def decode(self, v):
        return {"x": 1}


class Contracts:
    def codec(self, t):
        return Codec()


class WH:
    def __init__(self):
        self.rows = []
        self.tokens = set()

    def insert_arrow(self, table, data, dedup_token=None):
        if dedup_token in self.tokens:
            return
        self.tokens.add(dedup_token)
        self.rows += data.column("off").to_pylist()


class Consumer:
    def __init__(self):
        self.pos = 100
        self.committed = 100
        self.calls = 0

    def consume(self, n, t):
        self.calls += 1
        if self.calls == 3:  # reassigned mid-gather; _assigned seeks to landed+1 = 100
            self.pos = 100
        end = (
            150 if (self.calls <= 2 or getattr(self, "second", False)) else 120
        )  # after the seek only 100..119 arrive before flush
        out = [Msg(o) for o in range(self.pos, min(self.pos + n, end))]
        if out:
            self.pos = out[-1].offset() + 1
        return out

    def commit(self, offsets, asynchronous=False):
        self.committed = offsets[0].offset


def fake_sink(pacing: tuple[float, float]) -> WarehouseSink:
    """The sink on fakes, its clock moving a millisecond a reading; ``pacing``: the
    busy spacing and rows a second."""
    s = WarehouseSink.__new__(WarehouseSink)
    clock = [0.0]

    def tick():
        clock[0] += 0.001
        return clock[0]

    s.contracts = Contracts()
    s.warehouse = WH()
    s.summary = SinkSummary()
    s.routes = {
        "t": SinkRoute("t", "tbl", lambda landed: pa.table({"off": [row.offset for row in landed]}))
    }
    s.max_messages = 10_000
    s.flush_rows = 10**9
    s._landed = {("t", 0): 99}
    s._ahead_of_commits = []
    s._on_undecodable = None
    s.metrics = ServiceMetrics("publish-demo")
    s.linger = Linger(0.02, 1.0, slice_s=0.002, chunk=100, clock=tick)
    s.pacing = InsertPacing(0.02, *pacing, clock=tick)
    return s


def test_a_partition_sought_back_mid_batch_lands_once_and_commits_its_highest() -> None:
    s = fake_sink((0.02, 10_000))
    s.consumer = Consumer()
    s.run_once()
    assert s.consumer.committed == 150 and s._landed == {("t", 0): 149}
    s.consumer.pos = s.consumer.committed
    s.consumer.second = True  # the next batch, from the commit
    s.run_once()
    assert sorted(s.warehouse.rows) == list(range(100, 150))


class Stream(Consumer):
    """Offsets from 100 up to ``end``, which the test moves between batches."""

    end = 150

    def consume(self, n, t):
        out = [Msg(o) for o in range(self.pos, min(self.pos + n, self.end))]
        self.pos += len(out)
        return out


def test_a_sink_whose_batches_come_fast_spaces_its_next_insert_longer() -> None:
    s = fake_sink((0.5, 100))  # busy above 100 rows a second
    s.consumer = Stream()
    s.run_once()
    assert s.linger.linger_s == 0.02  # the first batch: no rate yet
    s.consumer.end = 200
    s.run_once()  # 50 rows in a few fake milliseconds: fast, but once may be a burst
    assert s.linger.linger_s == 0.02
    s.consumer.end = 250
    s.run_once()  # fast again
    assert s.linger.linger_s == 0.5 and s.pacing.busy_batches == 1
    assert sorted(s.warehouse.rows) == list(range(100, 250))
