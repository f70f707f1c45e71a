"""Thin adapters over confluent-kafka: the settings every service needs, once.

Exactly once between Kafka topics needs an idempotent transactional producer
and a ``read_committed`` consumer that never commits by itself; these factories
are the one place that says so.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig

_FULL_QUEUE_RETRIES = 100

# The largest value a stage may produce. A broker refuses a record batch above its
# message.max.bytes (1,048,588 bytes by default) and then aborts the whole
# transaction, so a value that cannot fit must be caught before it is sent:
# ingest refuses the batch (413, split it), a stage sends the record to the dead
# letters (``too-large``). Kept well below the limit because a record grows a
# little from stage to stage (pseudonyms, added fields).
MAX_MESSAGE_BYTES = 512 * 1024


def producer_settings(
    node: NodeConfig, *, transactional_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """Durable producer settings: idempotent, acks from every in-sync replica."""
    settings: dict[str, Any] = {
        "bootstrap.servers": node.kafka.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "batch.size": 1_000_000,
        "queue.buffering.max.kbytes": 262_144,
        "message.max.bytes": 8_000_000,
    }
    if transactional_id:
        settings["transactional.id"] = transactional_id
        settings["transaction.timeout.ms"] = node.processing.transaction_timeout_ms
    settings.update(overrides)
    return settings


def consumer_settings(node: NodeConfig, *, group_id: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that sees only committed data and whose offsets move with transactions."""
    settings: dict[str, Any] = {
        "bootstrap.servers": node.kafka.bootstrap,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A killed member is noticed in 10 s rather than 45: a restarted stage gets
        # its partitions back that much sooner (heartbeats run on their own thread).
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 8_388_608,
    }
    settings.update(overrides)
    if settings.get("group.protocol") == "consumer":
        # KIP-848: the broker runs the session and the assignment; the client must not.
        for name in (
            "session.timeout.ms",
            "heartbeat.interval.ms",
            "partition.assignment.strategy",
        ):
            settings.pop(name, None)
    return settings


def make_producer(node: NodeConfig, **kwargs: Any) -> Producer:
    return Producer(producer_settings(node, **kwargs))


def make_consumer(node: NodeConfig, *, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_settings(node, group_id=group_id, **overrides))


def produce_bytes(
    producer: Producer, topic: str, key: bytes | str | None, value: bytes, **kwargs: Any
) -> None:
    """Produce, waiting for room when the local queue is full instead of failing.

    A full queue means the broker is slower than we are: serving delivery reports
    with ``poll`` frees room; after a bounded number of tries we give up loudly.
    ``headers`` may be a tuple of pairs (an Emit's): the client takes only lists.
    """
    if isinstance(kwargs.get("headers"), tuple):
        kwargs["headers"] = list(kwargs["headers"])
    for _ in range(_FULL_QUEUE_RETRIES):
        try:
            producer.produce(topic, value=value, key=key, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)
    raise KafkaException(f"producer queue stayed full for topic {topic}; is the broker reachable?")


class RecordProducer:
    """Produces records of the declared contracts in the Confluent wire format."""

    def __init__(self, producer: Producer, contracts: Contracts):
        self.producer = producer
        self.contracts = contracts

    def produce(
        self, topic: str, key: bytes | str | None, record: dict[str, Any], **kwargs: Any
    ) -> None:
        produce_bytes(
            self.producer, topic, key, self.contracts.codec(topic).encode(record), **kwargs
        )

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every queued message; returns how many are still undelivered."""
        deadline = time.monotonic() + timeout
        remaining = self.producer.flush(timeout)
        while remaining and time.monotonic() < deadline:
            remaining = self.producer.flush(max(0.0, deadline - time.monotonic()))
        return remaining
