"""Reading topics back in tests with plain confluent-kafka consumers, and a runner
that fails one commit on purpose."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from services.runtime.config import NodeConfig
from services.runtime.processor import StageRunner


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


class CommitFailsOnce(StageRunner):
    """A broker-side failure at the worst moment: after the batch's records (and state
    changes) were produced, before the commit. Once per runner."""

    failed = False

    def _commit(self) -> None:
        if not self.failed:
            self.failed = True
            # What a real commit does first: the batch's records reach the broker (and
            # are then aborted); without it, abort may purge them from the local queue.
            self.producer.flush(30)
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True))
        super()._commit()
