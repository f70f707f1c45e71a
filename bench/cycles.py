"""Short commit cycles, measured: a stage's latency at low load and its CPU when idle,
and the ClickHouse sink's parts created per minute at low and high load.

1. One pass-through stage (the shared runner, transactions, read_committed) fed one
   record at a time at --stage-rate records/s: latency from send to a read_committed
   reader (p50/p99), transactions per second, and the CPU the process takes while the
   stage sits idle (a blocking wait costs nothing; a spinning one a whole core).
2. The sink (chDB, a fresh warehouse) fed --rate single readings/s for --seconds
   (low load), then draining --high series of 144 readings (high load), for each
   publish.flush_ms in --flush-ms: parts created per minute (every insert makes a
   part per table partition, in ``observations`` and in each rollup a materialised
   view feeds; counted as the growth of each table's highest block number, which
   merges keep), inserts, readings/s and the landing latency (landed_at - sent).

Figures on a loaded machine are ratios between settings, not absolute figures.
Run with the broker and registry of `citeplus infra up` (or CITEPLUS_KAFKA_PORT...).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from services.publish import versions
from services.publish.rows import observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import RecordProducer, consumer_settings, make_producer
from services.runtime.processor import BaseStage, Emit, InputMeta, StageRunner
from services.runtime.provisioning import (
    connect_contracts,
    delete_scratch_topics,
    provision_topics,
)
from services.runtime.topics import TopicSpec, load_topics
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate


def now_us() -> int:
    return time.time_ns() // 1000


def reading(index: int, points: int = 1) -> dict[str, Any]:
    """A series whose start is the moment it is sent (the latency's origin)."""
    return {
        "city": "lyon",
        "domain": "environment",
        "metric": "air.no2",
        "unit": "ug/m3",
        "entity_pseudonym": f"sensor-{index % 1000:04d}",
        "entity_type": "AirQualityObserved",
        "zone": f"69381-{index % 40:03d}",
        "position": None,
        "start": now_us(),
        "step_seconds": 600,
        "times": [],
        "values": [float(index % 97 + k) for k in range(points)],
        "quality": [],
        "source": "bench",
        "dataset": "cycles",
        "lineage_id": "bench-cycles",
        "key_epoch": "2025-11",
    }


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100)
    return statistics.median(values), cuts[98]


# -- 1. one stage ----------------------------------------------------------------------


class PassThrough(BaseStage):
    def __init__(self, source: str, target: str):
        self.name = f"bench-cycles-{uuid.uuid4().hex[:6]}"
        self.input_topics = [source]
        self.target = target

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        yield Emit(self.target, meta.key, record)


def read_latencies(
    node: NodeConfig, contracts: Contracts, topic: str, stop: threading.Event, out: list[float]
) -> None:
    consumer = Consumer(consumer_settings(node, group_id=f"bench-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    codec = contracts.codec(topic)
    try:
        while not stop.is_set():
            for message in consumer.consume(100, 0.05):
                if message.error() is None:
                    out.append((now_us() - codec.decode(message.value())["start"]) / 1000)
    finally:
        consumer.close()


def idle_cpu(runner: StageRunner, seconds: float) -> float:
    """Share of one core the process takes while the stage waits for input."""
    stop = threading.Event()
    thread = threading.Thread(target=lambda: runner.run(stop), daemon=True)
    thread.start()
    time.sleep(3)  # group join
    wall, cpu = time.monotonic(), time.process_time()
    time.sleep(seconds)
    share = (time.process_time() - cpu) / (time.monotonic() - wall)
    stop.set()
    thread.join(30)
    return share


def stage_cycles(node: NodeConfig, contracts: Contracts, topics: dict[str, str], args) -> None:
    stage = PassThrough(topics["stage_in"], topics["stage_out"])
    runner = StageRunner(stage, node, contracts, dead_letter_topic=topics["dlq"])
    cpu = idle_cpu(runner, args.idle_seconds)
    latencies: list[float] = []
    stop = threading.Event()
    reader = threading.Thread(
        target=read_latencies,
        args=(node, contracts, topics["stage_out"], stop, latencies),
        daemon=True,
    )
    reader.start()
    runner = StageRunner(stage, node, contracts, dead_letter_topic=topics["dlq"])
    running = threading.Thread(target=lambda: runner.run(stop), daemon=True)
    running.start()
    time.sleep(3)
    writer = RecordProducer(make_producer(node), contracts)
    sent = int(args.stage_rate * args.stage_seconds)
    started = time.monotonic()
    for i in range(sent):
        time.sleep(max(0.0, started + i / args.stage_rate - time.monotonic()))
        writer.produce(topics["stage_in"], f"s{i}", reading(i))
        writer.producer.poll(0)
    writer.flush()
    deadline = time.monotonic() + 30
    while len(latencies) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    stop.set()
    running.join(30)
    reader.join(30)
    p50, p99 = quantiles(latencies)
    print(
        f"stage  linger_ms={node.processing.linger_ms:<5} idle CPU {100 * cpu:5.1f} % of a core   "
        f"{args.stage_rate:.0f} records/s: latency p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
        f"({len(latencies)}/{sent} seen)  {runner.summary.batches / elapsed:5.1f} transactions/s",
        flush=True,
    )


# -- 2. the sink -------------------------------------------------------------------------


class TimedWarehouse(ChdbWarehouse):
    """chDB, with the time its inserts take (each with its materialised views)."""

    insert_s = 0.0

    def insert_arrow(self, table: str, data, *, dedup_token: str | None = None) -> None:
        started = time.perf_counter()
        super().insert_arrow(table, data, dedup_token=dedup_token)
        self.insert_s += time.perf_counter() - started


def blocks(warehouse: ChdbWarehouse) -> int:
    """Parts ever made in the warehouse's tables (each new part takes a block number)."""
    found = warehouse.query_arrow(
        "SELECT toInt64(sum(b)) AS n FROM (SELECT table, max(max_block_number) AS b "
        "FROM system.parts WHERE database = currentDatabase() GROUP BY table)"
    )
    return int(found.column("n")[0].as_py() or 0)


@dataclass
class SinkFigures:
    label: str
    flush_ms: int
    readings: int
    seconds: float
    parts: int
    inserts: int
    insert_s: float
    p50_ms: float
    p99_ms: float

    def row(self) -> str:
        return (
            f"sink   {self.label:5} flush_ms={self.flush_ms:<5} {self.readings:>9,} readings "
            f"in {self.seconds:6.1f} s ({self.readings / self.seconds:>9,.0f}/s): "
            f"{self.parts:>5} parts = {60 * self.parts / self.seconds:>7,.0f} per minute, "
            f"{self.inserts:>4} inserts of {1000 * self.insert_s / max(1, self.inserts):4.0f} ms"
            + (
                f"; landed p50 {self.p50_ms:5.0f} ms p99 {self.p99_ms:5.0f} ms after sending"
                if self.label == "low"
                else ""
            )
        )


def feed(node: NodeConfig, contracts: Contracts, topic: str, rate: float, seconds: float) -> int:
    writer = RecordProducer(make_producer(node), contracts)
    count = int(rate * seconds)
    started = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        writer.produce(topic, f"e{i % 1000}", reading(i))
        writer.producer.poll(0)
    writer.flush()
    return count


def run_sink(
    node: NodeConfig,
    contracts: Contracts,
    warehouse: TimedWarehouse,
    topic: str,
    flush_ms: int,
    load: tuple[str, float, int],
) -> SinkFigures:
    """``load``: ("low", rate, seconds) fed while the sink runs, or ("high", 0, series)
    of 144 readings produced first and drained."""
    label, rate, amount = load
    sink = WarehouseSink(
        node,
        contracts,
        warehouse,
        [SinkRoute(topic, "observations", observations_table, versions.supersede)],
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        flush_s=flush_ms / 1000,
    )
    if label == "high":
        writer = RecordProducer(make_producer(node), contracts)
        for i in range(amount):
            writer.produce(topic, f"m{i}", reading(i, points=144))
        writer.flush(120)
        expected = amount * 144
    stop = threading.Event()
    thread = threading.Thread(target=lambda: sink.run(stop), daemon=True)
    before, inserting = blocks(warehouse), warehouse.insert_s
    thread.start()
    started = time.monotonic()
    if label == "low":
        time.sleep(3)  # the group join, not counted as load
        started = time.monotonic()
        expected = feed(node, contracts, topic, rate, amount)
    deadline = time.monotonic() + 600
    while sink.summary.rows < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    seconds = time.monotonic() - started
    stop.set()
    thread.join(60)
    lag = (
        warehouse.query_arrow(
            "SELECT quantiles(0.5, 0.99)(dateDiff('millisecond', ts, landed_at)) AS q "
            f"FROM observations WHERE _topic = '{topic}'"
        )
        .column("q")[0]
        .as_py()
    )
    return SinkFigures(
        label,
        flush_ms,
        sink.summary.rows,
        seconds,
        blocks(warehouse) - before,
        sink.summary.inserts,
        warehouse.insert_s - inserting,
        float(lag[0]),
        float(lag[1]),
    )


def sink_parts(node: NodeConfig, contracts: Contracts, prefix: str, args) -> None:
    work = Path(tempfile.mkdtemp(prefix="citeplus-bench-cycles-"))
    warehouse = TimedWarehouse(work / "warehouse")
    migrate(warehouse)
    try:
        for flush_ms in args.flush_ms:
            for label in ("low", "high"):
                topic = f"{prefix}sink.{flush_ms}.{label}"
                load = (label, args.rate, args.seconds) if label == "low" else (label, 0, args.high)
                figures = run_sink(node, contracts, warehouse, topic, flush_ms, load)
                print(figures.row(), flush=True)
    finally:
        warehouse.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--linger-ms", type=int, nargs="*", default=[20, 0, 100])
    parser.add_argument("--stage-rate", type=float, default=20.0, help="records/s, one at a time")
    parser.add_argument("--stage-seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--flush-ms", type=int, nargs="+", default=[0, 200, 1000])
    parser.add_argument("--rate", type=float, default=200.0, help="single readings/s (low load)")
    parser.add_argument("--seconds", type=float, default=30.0, help="low load duration")
    parser.add_argument("--high", type=int, default=5000, help="series of 144 (high load)")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)

    base = load_node_config()
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    names = {"stage_in": "observations.v1", "stage_out": "observations.v1", "dlq": "dlq.v1"}
    specs: list[TopicSpec] = [  # a topic set per linger: each run starts from empty topics
        replace(declared[kind], name=f"{prefix}l{linger}.{role}", partitions=args.partitions)
        for linger in args.linger_ms
        for role, kind in names.items()
    ]
    specs += [
        replace(declared["observations.v1"], name=f"{prefix}sink.{ms}.{label}")
        for ms in args.flush_ms
        for label in ("low", "high")
    ]
    provision_topics(base, specs)
    contracts = connect_contracts(base, specs)
    print(
        f"Commit cycles: broker {base.kafka.bootstrap}, {args.partitions} partitions, "
        f"batch_size {base.processing.batch_size}, idle wait {base.processing.batch_timeout_s} s",
        flush=True,
    )
    try:
        for linger in args.linger_ms:
            node = replace(base, processing=replace(base.processing, linger_ms=linger))
            topics = {role: f"{prefix}l{linger}.{role}" for role in names}
            stage_cycles(node, contracts, topics, args)
        sink_parts(base, contracts, prefix, args)
    finally:
        delete_scratch_topics(base, (prefix,))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
