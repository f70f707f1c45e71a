"""Reading ingest's idempotency state topic back at start (services.ingest.idempotency).

Separate from the store so that the store stays pure: this is the only part
that talks to Kafka, besides the batch's own transaction.
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.ingest.idempotency import DEFAULT_MAX_BYTES, DEFAULT_RETENTION_S, IdempotencyStore
from services.ingest.idempotency_follow import KeyFollower
from services.runtime.codec import TopicCodec
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import consumer_settings
from services.runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def open_store(
    node: NodeConfig,
    topic: str,
    codec: TopicCodec,
    *,
    retention_s: float = DEFAULT_RETENTION_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    metrics: ServiceMetrics | None = None,
    follow: bool = False,
) -> IdempotencyStore:
    """A store restored from every committed, unexpired record of ``topic``; one that
    refuses keyed requests (503) when the topic does not exist. ``follow``: keep
    reading the topic afterwards (several ingest workers share the keys)."""
    partitions = _partitions(node, topic)
    store = IdempotencyStore(
        topic,
        codec if partitions else None,
        retention_s=retention_s,
        max_bytes=max_bytes,
        metrics=metrics,
    )
    if not partitions:
        log.warning("idempotency state topic missing: keyed pushes refused", extra={"topic": topic})
        return store
    ends: dict[int, int] = {}
    read = _restore(node, store, partitions, codec, ends=ends)
    log.info("idempotency keys restored", extra={"records": read, "keys": len(store)})
    if follow:
        store.follower = KeyFollower(node, topic, ends, codec.decode, store.apply).start()
    return store


def _restore(
    node: NodeConfig,
    store: IdempotencyStore,
    partitions: list[int],
    codec: TopicCodec,
    timeout_s: float = 60.0,
    ends: dict[int, int] | None = None,
) -> int:
    """Apply every committed record up to the end of each partition (the EOF event
    comes at the last stable offset, noted in ``ends``). Short polls: a start waits for
    the end of the topic, not for a batch of 1,000 records to fill."""
    ends = {} if ends is None else ends
    consumer = Consumer(
        consumer_settings(
            node, group_id=f"citeplus.restore.{uuid.uuid4().hex}", **{"enable.partition.eof": True}
        )
    )
    read = 0
    try:
        consumer.assign([TopicPartition(store.topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 0.05):
                error = message.error()
                if error is None:
                    store.apply(codec.decode(message.value()), message.partition())
                    read += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                    ends[message.partition()] = message.offset()
        if remaining:
            raise TimeoutError(f"restoring {store.topic} partitions {sorted(remaining)} timed out")
    finally:
        consumer.close()
    return read


# How long a starting ingest waits for the brokers to say whether its state topic
# exists: a restarted broker answers nothing, or "no leader", for a few seconds.
METADATA_WAIT_S = 60.0


def _partitions(node: NodeConfig, topic: str, wait_s: float = METADATA_WAIT_S) -> list[int]:
    """The partitions of ``topic``, or [] when the brokers say it does not exist.

    Only that answer means "missing": a broker that cannot be reached, or a topic
    without a leader yet, is waited for, then an error -- the worker exits and the
    supervisor restarts it. Taking those for "missing" once latched a started ingest
    into refusing every keyed push (503) until someone restarted it: it had come up
    beside a broker that was restarting."""
    deadline = time.monotonic() + wait_s
    consumer = Consumer(consumer_settings(node, group_id=f"citeplus.probe.{uuid.uuid4().hex}"))
    try:
        while True:
            why = _metadata_answer(consumer, topic)
            if isinstance(why, list):
                return why
            if time.monotonic() >= deadline:
                raise CiteplusError(
                    f"the brokers at {node.kafka.bootstrap} did not say within {wait_s:g} s "
                    f"whether {topic} exists ({why}): is Kafka up? ingest cannot start "
                    "without knowing where its idempotency keys are"
                )
            time.sleep(0.5)
    finally:
        consumer.close()


def _metadata_answer(consumer: Consumer, topic: str) -> list[int] | str:
    """The topic's partitions ([] when it does not exist), or why it is not known yet."""
    try:
        metadata = consumer.list_topics(topic, timeout=5)
    except KafkaException as exc:
        return str(exc)
    found = metadata.topics.get(topic)
    if found is None or (
        found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    ):
        return []
    if found.error is not None:
        return str(found.error)
    leaderless = sorted(p for p, meta in found.partitions.items() if meta.leader < 0)
    if leaderless or not found.partitions:
        return f"partitions {leaderless} have no leader yet"
    return sorted(found.partitions)
