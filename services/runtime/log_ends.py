"""The end of a topic for a reader that sees committed transactions only.

A producer is told "committed" once the transaction coordinator has logged the
commit; the commit markers reach the partitions after that. Until they do, the last
stable offset (the end a ``read_committed`` consumer is given) stops before the
transaction's records: a reader that takes it as "the end" right after a commit
misses what it was just told about (measured on the test broker: in 15 of 20
transactions, straight after the commit). Readers that must see everything
committed before they started (a replay, a test's read-back) take the log's own end
and wait for the stable offset to reach it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from services.runtime.config import NodeConfig
from services.runtime.kafka import consumer_settings

# How long the commit markers of transactions already committed may take to land. A
# transaction still open past it (a writer killed inside it, not yet aborted) is
# not waited for: the end is then the last stable offset, before it.
MARKERS_BOUND_S = 20.0
QUERY_TIMEOUT_S = 10.0


def committed_ends(
    node: NodeConfig,
    committed: Consumer,
    topic: str,
    partitions: Iterable[int],
    *,
    bound_s: float = MARKERS_BOUND_S,
) -> dict[int, tuple[int, int]]:
    """(low, end) per partition of ``topic`` for the ``read_committed`` consumer
    ``committed``: the log end once the last stable offset has reached it, else the
    last stable offset when ``bound_s`` has passed."""
    wanted = list(partitions)
    ends = {p: _marks(committed, topic, p) for p in wanted}
    logs = _log_ends(node, topic, wanted)
    deadline = time.monotonic() + bound_s
    behind = {p for p, (_, stable) in ends.items() if stable < logs[p]}
    while behind and time.monotonic() < deadline:
        time.sleep(0.05)
        for p in list(behind):
            low, stable = _marks(committed, topic, p)
            ends[p] = (low, min(stable, logs[p]))
            if stable >= logs[p]:
                behind.discard(p)
    return ends


def _marks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=QUERY_TIMEOUT_S)


def _log_ends(node: NodeConfig, topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's log end, open transactions included (a ``read_uncommitted``
    query)."""
    plain = Consumer(
        consumer_settings(
            node,
            group_id=f"citeplus.log-ends.{uuid.uuid4().hex}",
            **{"isolation.level": "read_uncommitted"},
        )
    )
    try:
        return {p: _marks(plain, topic, p)[1] for p in partitions}
    finally:
        plain.close()
