"""The end of a topic for a reader that sees committed transactions only.

A producer is told "committed" once the transaction coordinator has logged the
commit; the commit markers reach the partitions after that. Until they do, the last
stable offset (the end a ``read_committed`` consumer is given) stops before the
transaction's records: a reader that takes it as "the end" right after a commit
misses what it was just told about (measured on the test broker: in 15 of 20
transactions, straight after the commit). Readers that must see everything
committed before they started (a replay, a test's read-back) take the log's own end
and wait for the stable offset to reach it, then read up to that end
(:func:`read_to_ends`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, Message, TopicPartition

from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import consumer_settings

# How long the commit markers of transactions already committed may take to land. A
# transaction still open past it (a writer killed inside it, not yet aborted) is
# not waited for: the end is then the last stable offset, before it.
MARKERS_BOUND_S = 20.0
QUERY_TIMEOUT_S = 10.0
# A wait longer than this is logged: the markers of a commit land well within it, so
# a longer one is most likely an open transaction, and an operator's command that
# pauses without a word looks hung.
QUIET_S = 1.0

log = logging.getLogger(__name__)


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
    started = time.monotonic()
    behind = {p for p, (_, stable) in ends.items() if stable < logs[p]}
    told = False
    while behind and time.monotonic() < started + bound_s:
        time.sleep(0.05)
        for p in list(behind):
            low, stable = _marks(committed, topic, p)
            ends[p] = (low, min(stable, logs[p]))
            if stable >= logs[p]:
                behind.discard(p)
        if behind and not told and time.monotonic() - started >= QUIET_S:
            told = True
            log.info(
                "waiting for the last stable offset to reach the log end",
                extra=_gap(topic, behind, ends, logs, bound_s),
            )
    if behind:
        log.warning(
            "gave up waiting for the last stable offset: reading up to it, before a "
            "transaction still open",
            extra=_gap(topic, behind, ends, logs, bound_s),
        )
    return ends


def read_to_ends(
    consumer: Consumer,
    topic: str,
    marks: Mapping[int, tuple[int, int]],
    *,
    timeout_s: float,
    poll_s: float = 0.2,
) -> list[Message]:
    """Every message of ``topic`` from each partition's low mark up to its end in
    ``marks`` ((low, end) per partition, from :func:`committed_ends` or the
    watermarks), in the order ``consumer`` gives them.

    The end is known beforehand and the consumer's position (which moves past
    aborted records and transaction markers too) is compared with it, so the read
    stops there rather than after a guessed quiet time. A partition with nothing
    between its marks (empty, or emptied by retention) is not read: no fetch would
    set its position, and the read would wait for it until the bound. Not reaching
    the ends within ``timeout_s`` raises rather than return part of the log.
    """
    ends = {p: high for p, (low, high) in marks.items() if high > low}
    consumer.assign([TopicPartition(topic, p, marks[p][0]) for p in ends])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while pending := _pending(consumer, topic, ends):
        if time.monotonic() > deadline:
            raise CiteplusError(
                f"{topic}: partitions {pending} not read to their end {ends} in {timeout_s}s"
            )
        messages += [m for m in consumer.consume(500, poll_s) if m.error() is None]
    return messages


def _pending(consumer: Consumer, topic: str, ends: Mapping[int, int]) -> list[int]:
    """The partitions whose position has not reached their end yet."""
    if not ends:
        return []
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return sorted(tp.partition for tp in positions if tp.offset < ends[tp.partition])


def _gap(
    topic: str,
    behind: set[int],
    ends: Mapping[int, tuple[int, int]],
    logs: Mapping[int, int],
    bound_s: float,
) -> dict[str, object]:
    """What a reader waits for, as log fields: per partition behind, the last stable
    offset and the log end."""
    waiting = sorted(behind)
    return {
        "topic": topic,
        "partitions": waiting,
        "stable": [ends[p][1] for p in waiting],
        "log_end": [logs[p] for p in waiting],
        "bound_s": bound_s,
    }


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
