"""Reading topics back in tests with plain confluent-kafka consumers, and a runner
that fails one commit on purpose."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.log_ends import committed_ends, read_to_ends
from services.runtime.processor import StageRunner
from services.runtime.state import ChangelogStore, restore


def read_all(
    node: NodeConfig,
    topic: str,
    *,
    expected: int | None = None,
    isolation: str = "read_committed",
    timeout_s: float = 20.0,
    settle_s: float = 1.5,
) -> list[Message]:
    """Every message of ``topic`` visible at ``isolation``, from the beginning.

    Stops once ``expected`` messages arrived, or after ``settle_s`` without new
    ones, or at ``timeout_s`` at most.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": node.kafka.bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(500, 0.2)
            fresh = [m for m in batch if m.error() is None]
            if fresh:
                messages += fresh
                last_new = time.monotonic()
            quiet = time.monotonic() - last_new
            enough = expected is not None and len(messages) >= expected
            wait = 0.5 if expected else settle_s
            if (enough or (expected is None and messages)) and quiet >= wait:
                break
    finally:
        consumer.close()
    return messages


def read_to_end(
    node: NodeConfig, topic: str, *, isolation: str = "read_committed", timeout_s: float = 60.0
) -> list[Message]:
    """Every message of ``topic`` visible at ``isolation``, read up to the end of the log
    as it stands when called: no guess at how long to wait for stragglers.

    Call it once the writers are done. The end is each partition's high watermark; the
    consumer's position moves past aborted records and transaction markers too, so it
    reaches the end at either isolation level. Not reaching it within ``timeout_s`` (a
    generous bound, not a measure) fails loudly rather than returning part of the log.

    A committed transaction is not yet readable when its writer is told so: the
    coordinator writes the commit markers into the partitions afterwards. Until then
    a ``read_committed`` end (the last stable offset) stops before its records, so the
    end is the log's own, and the read waits for the stable offset to pass it
    (services/runtime/log_ends.py).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": node.kafka.bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        if isolation == "read_committed":
            marks = committed_ends(node, consumer, topic, partitions)
        else:
            marks = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions
            }
        try:
            return read_to_ends(consumer, topic, marks, timeout_s=timeout_s)
        except CiteplusError as exc:
            raise AssertionError(str(exc)) from exc
    finally:
        consumer.close()


class CommitFailsOnce(StageRunner):
    """A broker-side failure at the worst moment: after the batch's records (and state
    changes) were produced, before the commit. Once per runner."""

    failed = False
    unflushed = 0  # records still queued locally when the commit failed (0: all at the broker)

    def _commit(self) -> None:
        if not self.failed:
            self.failed = True
            # What a real commit does first: the batch's records reach the broker (and
            # are then aborted); without it, abort may purge them from the local queue.
            self.unflushed = self.producer.flush(60)
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True))
        super()._commit()


def restored_state(
    node: NodeConfig, contracts: Any, topic: str, store: str, partitions: list[int]
) -> ChangelogStore:
    """A stage's state as a new owner of ``partitions`` restores it from ``topic``
    (per-key records and deltas alike): what a test compares, not the records."""
    restored = ChangelogStore(store, topic, deltas=True)
    restore(node, [restored], partitions, contracts.codec(topic).decode)
    return restored
