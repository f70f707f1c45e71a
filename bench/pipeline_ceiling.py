"""The Kafka ceiling bench/pipeline.py compares the whole node with, measured in the
same run on the node's own broker: bare confluent-kafka (fastavro inline, no
transactions) producing then consuming the messages the pipeline carries.

Three message shapes, the same readings as the node's two loads:
- ``curves``: an Observation series of 144 readings per message (a meter-day);
- ``singles v1``: an Observation of one reading per message (one entity per
  message: what every v1 topic carries for single readings);
- ``singles v2``: an ObservationBatch of 1,000 one-reading members per message
  (many entities per message, the v2 contract of issue 17).
And the latency of a bare produce -> consume of one-reading messages offered at a
fixed rate, open loop, as the node's latency is offered.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import fastavro
from confluent_kafka import Producer

from bench import bare
from bench.kafka_ceiling import series
from services.runtime.batches import batching
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.kafka import make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.schemas import load_schemas
from services.runtime.topics import load_topics


def member(points: int, index: int) -> dict[str, Any]:
    """One Observation of ``points`` readings (a distinct meter per index)."""
    record = series(points, index)
    record["entity_pseudonym"] = f"meter-{index:07d}"
    return {**record, "sector": "residential", "carrier": "electricity"}


@dataclass
class Shape:
    """Messages of one shape on a scratch topic: the topic, its values, their keys,
    and how many readings one value holds."""

    name: str
    topic: str
    values: list[dict[str, Any]]
    keys: list[str]
    readings: int
    warmup: str  # a topic of its own to connect the producer on before timing


def shapes(node: NodeConfig, readings: int) -> tuple[Contracts, list[Shape]]:
    """The three shapes, on fresh scratch topics, ``readings`` readings each."""
    declared = load_topics()["observations.v1"]
    prefix = f"bench.{uuid.uuid4().hex[:6]}.ceiling."
    specs = [
        replace(declared, name=prefix + "curves"),
        replace(declared, name=prefix + "singles-v1"),
        replace(declared, name=prefix + "singles-v2", value="ObservationBatch"),
        replace(declared, name=prefix + "warm-up"),
    ]
    provision_topics(node, specs)
    contracts = connect_contracts(node, specs)
    curves = [member(144, i) for i in range(max(1, readings // 144))]
    singles = [member(1, i) for i in range(readings)]
    batches = [
        batch
        for start in range(0, len(singles), 1000)
        for batch in batching("Observation").implode(singles[start : start + 1000])
    ]
    warmup = specs[3].name
    return contracts, [
        Shape(
            "curves", specs[0].name, curves, [r["entity_pseudonym"] for r in curves], 144, warmup
        ),
        Shape(
            "singles v1",
            specs[1].name,
            singles,
            [r["entity_pseudonym"] for r in singles],
            1,
            warmup,
        ),
        Shape("singles v2", specs[2].name, batches, ["batch"] * len(batches), 1000, warmup),
    ]


def _produce(node: NodeConfig, contracts: Contracts, shape: Shape) -> float:
    """Encode and produce every value; seconds from the first produce to the flush
    (the client connected and the topic's metadata known before: a running stage
    does not pay for them per message either)."""
    encode = bare.encoder(contracts.codec(shape.topic))
    producer = make_producer(node)
    _produce_one(producer, shape.warmup, b"warm-up", b"")  # connected, producer id granted
    producer.flush(30)
    started = time.perf_counter()
    for i, (value, key) in enumerate(zip(shape.values, shape.keys, strict=True)):
        _produce_one(producer, shape.topic, key.encode(), encode(value))
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(120)
    return time.perf_counter() - started


def _consume(node: NodeConfig, contracts: Contracts, shape: Shape) -> tuple[int, float]:
    """Consume and decode every value: (readings, seconds from the first message).
    Assigned, not joined; a fetch waits only briefly to fill (a batch of the last
    messages would otherwise wait its whole wait)."""
    run = bare.consume(
        node,
        shape.topic,
        len(shape.values),
        bare.decoder(contracts.codec(shape.topic)),
        lambda value: len(value["values"]),
        assign=True,
        wait_s=0.05,
    )
    return run.readings, run.seconds


def ceiling(node: NodeConfig, readings: int) -> dict[str, float]:
    """Readings/s of a bare produce then consume of each shape: {shape: readings/s},
    the time being the produce's plus the consume's."""
    contracts, found = shapes(node, readings)
    rates = {}
    for shape in found:
        produce_s = _produce(node, contracts, shape)
        got, consume_s = _consume(node, contracts, shape)
        assert got == len(shape.values) * shape.readings, (shape.name, got)
        rates[shape.name] = got / (produce_s + consume_s)
        print(
            f"    {shape.name:11} {got:>9,} readings in {len(shape.values):>7,} messages: "
            f"{rates[shape.name]:>12,.0f} readings/s (produce {produce_s:.2f} s, "
            f"consume {consume_s:.2f} s)",
            flush=True,
        )
    return rates


def bare_latency(node: NodeConfig, rate: int, seconds: int) -> list[float]:
    """Offer ``rate`` one-reading messages/s (10 bursts a second) to a scratch topic
    with the runtime's producer settings (idempotent, acks=all, linger 5 ms), no
    transaction; per message, consumed time minus scheduled time: the floor under
    any pipeline's latency on this broker."""
    spec = replace(load_topics()["observations.v1"], name=f"bench.{uuid.uuid4().hex[:6]}.lat")
    provision_topics(node, [spec])
    consumer = bare.assigned(node, spec.name)
    per_burst, bursts = max(1, rate // 10), seconds * 10
    scheduled: dict[bytes, float] = {}
    sender = threading.Thread(
        target=_offer, args=(make_producer(node), spec.name, per_burst, bursts, scheduled)
    )
    sender.start()
    latencies: list[float] = []
    deadline = time.time() + seconds + 60
    while len(latencies) < per_burst * bursts and time.time() < deadline:
        message = consumer.poll(0.05)  # one at a time: a batch would wait to fill
        if message is not None and not message.error():
            latencies.append(time.time() - _when(scheduled, message.key()))
    sender.join()
    consumer.close()
    return sorted(latencies)


def _when(scheduled: dict[bytes, float], key: bytes) -> float:
    while key not in scheduled:  # the sender records a burst right after producing it
        time.sleep(0.001)
    return scheduled[key]


def _offer(
    producer: Producer, topic: str, per_burst: int, bursts: int, scheduled: dict[bytes, float]
) -> None:
    value = bytes(64)  # a one-reading Observation is ~60 bytes on the wire
    first = time.time() + 0.2
    for burst in range(bursts):
        at = first + burst * 0.1
        time.sleep(max(0.0, at - time.time()))
        for i in range(per_burst):
            key = f"{burst}-{i}".encode()
            scheduled[key] = at
            _produce_one(producer, topic, key, value)
        producer.poll(0)
    producer.flush(60)


def _produce_one(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key=key)
            return
        except BufferError:
            producer.poll(0.01)


def quantile(ranked: list[float], q: float) -> float:
    """The q-quantile of sorted ``ranked`` (inf when empty)."""
    return ranked[min(len(ranked) - 1, int(len(ranked) * q))] if ranked else float("inf")


def codec_costs(rounds: int = 5) -> dict[str, tuple[float, float]]:
    """In process, no broker: fastavro encode and decode microseconds per reading of
    each shape (best of ``rounds``): {shape: (encode, decode)}. What Kafka's ceiling
    leaves out, and what each stage pays once per hop."""
    schemas = load_schemas()
    singles = [member(1, i) for i in range(5000)]
    cases = {
        "curves": (schemas["Observation"].parsed, [member(144, i) for i in range(100)]),
        "singles v1": (schemas["Observation"].parsed, singles),
        "singles v2": (
            schemas["ObservationBatch"].parsed,
            [
                b
                for k in range(0, 5000, 1000)
                for b in batching("Observation").implode(singles[k : k + 1000])
            ],
        ),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, (schema, values) in cases.items():
            readings = sum(len(value["values"]) for value in values)  # a batch's concatenated
            started = time.perf_counter()
            encoded = []
            for value in values:
                buffer = io.BytesIO()
                fastavro.schemaless_writer(buffer, schema, value)
                encoded.append(buffer.getvalue())
            encode_us = (time.perf_counter() - started) / readings * 1e6
            started = time.perf_counter()
            for data in encoded:
                fastavro.schemaless_reader(io.BytesIO(data), schema)
            decode_us = (time.perf_counter() - started) / readings * 1e6
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], encode_us), min(old[1], decode_us))
    return best
