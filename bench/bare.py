"""The bare Kafka loops each stage bench compares its stage with: a plain consumer
(and, to copy, a plain idempotent producer: no transaction, no work) over the same
messages, in the same run.

Written once so that every bench's ceiling measures the same thing: a fix to how a
bare loop counts or times (the group join left out, the producer flushed before the
clock stops) reaches every ratio at once. Decoding and encoding use fastavro inline,
the fastest Avro in Python here; a pass may also copy the bytes untouched (Kafka alone).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from services.runtime import wire
from services.runtime.codec import TopicCodec
from services.runtime.config import NodeConfig
from services.runtime.kafka import consumer_settings, make_producer, produce_bytes

Decode = Callable[[bytes], dict[str, Any]]
Encode = Callable[[dict[str, Any]], bytes]


@dataclass(frozen=True)
class BareRun:
    """What one bare pass did: messages and readings, and when it started, saw its
    first message and had flushed its last output (``time.perf_counter``)."""

    messages: int
    readings: int
    started: float
    first: float
    ended: float

    @property
    def seconds(self) -> float:
        """From the first message: a consumer group's join is no part of a throughput."""
        return self.ended - self.first

    @property
    def seconds_with_join(self) -> float:
        """From the start, the group's join included (for a bench whose stage pass
        is timed the same way)."""
        return self.ended - self.started


def decoder(codec: TopicCodec) -> Decode:
    """Decode a Confluent wire-format message with ``codec``'s schema (header skipped)."""
    parsed = codec._reader

    def decode(value: bytes) -> dict[str, Any]:
        buffer = io.BytesIO(value)
        buffer.seek(wire.HEADER_SIZE)
        return fastavro.schemaless_reader(buffer, parsed, None)

    return decode


def encoder(codec: TopicCodec) -> Encode:
    """Encode a record in the Confluent wire format with ``codec``'s schema and id."""
    parsed, header = codec._reader, wire.HEADER.pack(wire.MAGIC_BYTE, codec.schema_id)

    def encode(record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(header)
        fastavro.schemaless_writer(buffer, parsed, record)
        return buffer.getvalue()

    return encode


def subscribed(node: NodeConfig, topic: str) -> Consumer:
    """A consumer of a fresh group subscribed to ``topic`` (read from its start)."""
    consumer = Consumer(consumer_settings(node, group_id=f"bench-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    return consumer


def assigned(node: NodeConfig, topic: str) -> Consumer:
    """A consumer reading every partition of ``topic`` from its start, assigned (no
    group join: a join costs seconds, which is not what is measured here)."""
    consumer = Consumer(consumer_settings(node, group_id=f"bench-{uuid.uuid4().hex}"))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def consume(
    node: NodeConfig,
    topic: str,
    expected: int,
    decode: Decode,
    readings: Callable[[dict[str, Any]], int],
    *,
    assign: bool = False,
    wait_s: float = 1.0,
) -> BareRun:
    """Consume and decode ``expected`` messages of ``topic``, counting their readings.

    ``assign``: read the partitions without a group (no join at all); ``wait_s``: how
    long one fetch waits to fill (a short wait keeps the last, partial fetch from
    adding its whole wait to the time)."""
    consumer = assigned(node, topic) if assign else subscribed(node, topic)
    started = time.perf_counter()
    first: float | None = None
    seen = counted = 0
    while seen < expected:
        for message in consumer.consume(500, wait_s):
            if message.error():
                continue
            first = first or time.perf_counter()
            counted += readings(decode(message.value()))
            seen += 1
    ended = time.perf_counter()
    consumer.close()
    return BareRun(seen, counted, started, first or ended, ended)


def copy(
    node: NodeConfig,
    source: str,
    target: str,
    expected: int,
    *,
    decode: Decode | None = None,
    encode: Encode | None = None,
    readings: Callable[[dict[str, Any]], int] | None = None,
    same_partition: bool = False,
) -> BareRun:
    """Consume ``expected`` messages of ``source`` and produce each to ``target``.

    With ``decode`` and ``encode`` each message is decoded and encoded again (what any
    stage pays before doing anything: ``encode`` may shape another record first), and
    ``readings`` counts what each decoded message holds; without them the bytes are
    copied untouched (Kafka alone). A copy keeps the message's key (the target's
    partitioner places it), or with ``same_partition`` its partition (a batch message
    of many entities has no key of its own)."""
    if (decode is None) != (encode is None):
        raise ValueError("decode and encode go together: both, or neither for raw bytes")
    consumer = subscribed(node, source)
    producer = make_producer(node)
    started = time.perf_counter()
    first: float | None = None
    seen = counted = 0
    while seen < expected:
        for message in consumer.consume(500, 1.0):
            if message.error():
                continue
            first = first or time.perf_counter()
            value = message.value()
            if decode is not None and encode is not None:
                record = decode(value)
                value = encode(record)
                counted += readings(record) if readings is not None else 0
            _produce(producer, target, message, value, same_partition)
            seen += 1
        producer.poll(0)
    producer.flush(120)
    ended = time.perf_counter()
    consumer.close()
    return BareRun(seen, counted, started, first or ended, ended)


def _produce(
    producer: Producer, target: str, message: Message, value: bytes, same_partition: bool
) -> None:
    if same_partition:
        produce_bytes(producer, target, None, value, partition=message.partition())
    else:
        produce_bytes(producer, target, message.key(), value)
