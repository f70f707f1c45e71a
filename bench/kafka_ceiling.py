"""The ceiling every Cité+ service is measured against.

Produces and consumes 1,000,000 readings as Observation series of 144 points
and of one point (Confluent wire format) on the local broker, through bare
confluent-kafka (+ fastavro inline) and through the shared runtime
(RecordProducer; StageRunner with transactions and read_committed), and prints
readings/s, messages/s and the ratio runtime/bare.

Run with `make bench` (starts its own broker and registry), or directly with
CITEPLUS_KAFKA_BOOTSTRAP / CITEPLUS_REGISTRY_URL pointing at running ones.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import fastavro
from confluent_kafka import Consumer

from services.runtime import wire
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import RecordProducer, consumer_settings, make_producer
from services.runtime.processor import BaseStage, Emit, InputMeta, StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicSpec, load_topics

T0 = 1_763_769_600_000_000


@dataclass
class Result:
    path: str
    direction: str
    points: int
    messages: int
    seconds: float
    wire_bytes: int

    @property
    def readings(self) -> int:
        return self.messages * self.points

    def row(self) -> str:
        return (
            f"{self.direction:8} {self.path:8} {self.points:>6} {self.messages:>9,} "
            f"{self.readings:>10,} {self.seconds:>7.2f} {self.messages / self.seconds:>11,.0f} "
            f"{self.readings / self.seconds:>13,.0f} {self.wire_bytes / self.messages:>9,.0f}"
        )


def series(points: int, index: int) -> dict[str, Any]:
    return {
        "city": "lyon",
        "domain": "energy",
        "metric": "electricity.active_energy",
        "unit": "kWh",
        "entity_pseudonym": f"meter-{index % 5000:05d}",
        "entity_type": "ElectricityMeter",
        "zone": f"69381-{index % 40:03d}",
        "position": None,
        "start": T0 + index * 1_000_000,
        "step_seconds": 600,
        "times": [],
        "values": [0.137 * (i % 17) for i in range(points)],
        "quality": [],
        "source": "linky",
        "dataset": "load-curves",
        "lineage_id": "bench",
        "key_epoch": "2025-11",
    }


def records(points: int, messages: int) -> list[dict[str, Any]]:
    # A few distinct templates, reused: generating 1,000,000 dicts is not what we measure.
    templates = [series(points, i) for i in range(64)]
    return [templates[i % 64] for i in range(messages)]


def produce_bare(node: NodeConfig, contracts: Contracts, topic: str, data: list[dict]) -> int:
    codec = contracts.codec(topic)
    parsed, schema_id = codec._reader, codec.schema_id
    producer = make_producer(node)
    header = wire.HEADER.pack(0, schema_id)
    total = 0
    for i, record in enumerate(data):
        buffer = io.BytesIO()
        buffer.write(header)
        fastavro.schemaless_writer(buffer, parsed, record)
        value = buffer.getvalue()
        total += len(value)
        while True:
            try:
                producer.produce(topic, value, key=record["entity_pseudonym"])
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return total


def produce_runtime(node: NodeConfig, contracts: Contracts, topic: str, data: list[dict]) -> int:
    writer = RecordProducer(make_producer(node), contracts)
    for i, record in enumerate(data):
        writer.produce(topic, record["entity_pseudonym"], record)
        if i % 10_000 == 0:
            writer.producer.poll(0)
    writer.flush(120)
    return 0


def consume_bare(node: NodeConfig, contracts: Contracts, topic: str, expected: int) -> int:
    codec = contracts.codec(topic)
    parsed = codec._reader
    consumer = Consumer(consumer_settings(node, group_id=f"bench-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    seen = readings = 0
    while seen < expected:
        for message in consumer.consume(500, 1.0):
            if message.error():
                continue
            buffer = io.BytesIO(message.value())
            buffer.seek(5)
            readings += len(fastavro.schemaless_reader(buffer, parsed)["values"])
            seen += 1
    consumer.close()
    return readings


class CountingStage(BaseStage):
    """Decodes (the runner does) and counts; emits nothing, like a sink."""

    name = "bench-count"

    def __init__(self, topic: str):
        self.input_topics = [topic]
        self.readings = 0

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        self.readings += len(record["values"])
        return ()


def consume_runtime(
    node: NodeConfig, contracts: Contracts, topic: str, expected: int, dlq: str
) -> int:
    stage = CountingStage(topic)
    stage.name = f"bench-{uuid.uuid4().hex[:8]}"
    runner = StageRunner(stage, node, contracts, dead_letter_topic=dlq)
    runner.start()
    try:
        while runner.summary.records_in < expected:
            runner.run_once()
    finally:
        runner.close()
    return stage.readings


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = action()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--readings", type=int, default=1_000_000, help="readings per case")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)

    base = load_node_config()
    node = replace(base, processing=replace(base.processing, batch_size=2000, batch_timeout_s=0.2))
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    specs: list[TopicSpec] = [replace(declared["dlq.v1"], name=prefix + "dlq")]
    cases = []
    for points in (144, 1):
        for path in ("bare", "runtime"):
            name = f"{prefix}obs.{points}.{path}"
            specs.append(
                replace(declared["observations.v1"], name=name, partitions=args.partitions)
            )
            cases.append((points, path, name))
    provision_topics(node, specs)
    contracts = connect_contracts(node, specs)

    print(
        f"Kafka ceiling: {args.readings:,} readings per case, broker {node.kafka.bootstrap}, "
        f"{args.partitions} partitions, acks=all, idempotent, lz4",
        flush=True,
    )
    print(
        f"{'dir':8} {'path':8} {'points':>6} {'messages':>9} {'readings':>10} {'seconds':>7} "
        f"{'msg/s':>11} {'readings/s':>13} {'B/msg':>9}"
    )
    results: list[Result] = []
    for points, path, topic in cases:
        messages = max(1, args.readings // points)
        data = records(points, messages)
        produce = produce_bare if path == "bare" else produce_runtime
        seconds, size = timed(lambda: produce(node, contracts, topic, data))  # noqa: B023
        if not size:
            size = sum(len(contracts.codec(topic).encode(r)) for r in data[:64]) * messages // 64
        results.append(Result(path, "produce", points, messages, seconds, size))
        print(results[-1].row(), flush=True)
        if path == "bare":
            seconds, readings = timed(lambda: consume_bare(node, contracts, topic, messages))  # noqa: B023
        else:
            seconds, readings = timed(
                lambda: consume_runtime(node, contracts, topic, messages, prefix + "dlq")  # noqa: B023
            )
        assert readings == messages * points, (readings, messages * points)
        results.append(Result(path, "consume", points, messages, seconds, size))
        print(results[-1].row(), flush=True)

    print("\nratio runtime/bare (readings/s; 1.00 = the runtime costs nothing):")
    for points in (144, 1):
        for direction in ("produce", "consume"):
            bare, ours = (
                next(
                    r for r in results if (r.points, r.direction, r.path) == (points, direction, p)
                )
                for p in ("bare", "runtime")
            )
            ratio = (ours.readings / ours.seconds) / (bare.readings / bare.seconds)
            print(f"  {direction:8} series of {points:>3}: {ratio:.2f}")
    r144 = next(
        r for r in results if (r.points, r.direction, r.path) == (144, "consume", "runtime")
    )
    r1 = next(r for r in results if (r.points, r.direction, r.path) == (1, "consume", "runtime"))
    print(
        f"\nseries of 144 vs series of 1 through the runtime (consume, readings/s): "
        f"{(r144.readings / r144.seconds) / (r1.readings / r1.seconds):.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
