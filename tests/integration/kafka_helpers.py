"""Reading topics back in tests with plain confluent-kafka consumers."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message

from services.runtime.config import NodeConfig


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
