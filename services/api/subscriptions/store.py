"""Subscriptions and their delivery state, kept in Kafka so that they survive the api.

Two compacted topics (deploy/topics.yaml, internal to the node, never shared):
``api.subscriptions.v1`` holds each definition under its id (a tombstone when it is
deleted), ``api.subscription-state.v1`` the engine's :class:`DeliveryState` of each.
Values are ``StateEntry`` records whose ``value`` is the JSON of services/api/
subscriptions/model.py, so the topics have a registered contract like every other.

Why Kafka and not a file: the api is restarted, killed and (on a cluster) moved
between machines; the broker is the one durable thing every node already has, and
compaction keeps exactly the latest version of each subscription. A write is
produced with acks=all and flushed *before* the caller answers: a 201 means the
subscription is on the in-sync replicas and comes back after a SIGKILL. On start
the store reads both topics to their end and rebuilds its view from them.

One api process owns the store of its node (as publish owns the warehouse): the
view is what was read at start plus this process's own writes; other writers are
not followed. The delivery engine is told of every change through
:meth:`SubscriptionStore.on_change` (a callback) or :meth:`SubscriptionStore.watch`
(an asyncio queue).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.api.subscriptions.model import (
    DeliveryState,
    Subscription,
    state_from_json,
    state_to_json,
    subscription_from_json,
    subscription_to_json,
)
from services.runtime.codec import TopicCodec
from services.runtime.config import NodeConfig
from services.runtime.errors import InfrastructureError
from services.runtime.kafka import consumer_settings, make_producer, produce_bytes

log = logging.getLogger(__name__)
DEFINITIONS_STORE = "subscriptions"
STATES_STORE = "subscription-state"
PUT, DELETE, STATE = "put", "delete", "state"


class StoreUnavailable(Exception):
    """A write the broker did not confirm: nothing was promised to the caller (the
    routes answer 503 with this message, the engine retries)."""


@dataclass(frozen=True)
class StoreTopics:
    """Where the store lives: the two topics under the node's (or a test's) prefix."""

    definitions: str
    states: str


@dataclass(frozen=True)
class Change:
    """What changed: ``put`` (created or replaced, ``subscription`` is the new
    definition), ``delete`` (``subscription`` is None) or ``state`` (saved by the engine)."""

    kind: str
    sub_id: str
    subscription: Subscription | None = None


ChangeListener = Callable[[Change], None]


class SubscriptionStore:
    """The node's subscriptions: a view in memory, every write confirmed by Kafka first.

    Thread-safe: the routes call it from executor threads, the engine from its own.
    Nothing touches the network before :meth:`start`.
    """

    def __init__(
        self,
        node: NodeConfig,
        topics: StoreTopics,
        definitions: TopicCodec,
        states: TopicCodec,
        *,
        write_timeout_s: float = 15.0,
    ):
        self.node = node
        self.topics = topics
        self._codecs = {topics.definitions: definitions, topics.states: states}
        self.write_timeout_s = write_timeout_s
        self._subs: dict[str, Subscription] = {}
        self._states: dict[str, DeliveryState] = {}
        self._lock = threading.Lock()
        # Held across a check and its writes (delete, save_state): a state saved while the
        # subscription is being deleted lands before the tombstones or not at all.
        self._write_lock = threading.RLock()
        self._listeners: list[ChangeListener] = []
        self._producer: Any = None
        self.unreadable = 0  # records read back that were not documents of ours

    # -- life -------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> int:
        """Read both topics to their end (the view after a restart); returns records read."""
        read = 0
        for topic in (self.topics.definitions, self.topics.states):
            read += self._read_to_end(topic, timeout_s)
        for orphan in set(self._states) - set(self._subs):
            del self._states[orphan]  # the state of a deleted subscription: nothing to resume
        self._producer = make_producer(self.node, **{"linger.ms": 0})
        log.info(
            "subscriptions restored",
            extra={"subscriptions": len(self._subs), "records": read},
        )
        return read

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.write_timeout_s)
            self._producer = None

    def _read_to_end(self, topic: str, timeout_s: float) -> int:
        settings = consumer_settings(
            self.node,
            group_id=f"citeplus.api.subscriptions.{uuid.uuid4().hex}",
            **{"enable.partition.eof": True},
        )
        consumer = Consumer(settings)
        try:
            metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                raise InfrastructureError(
                    f"the subscriptions topic {topic} is missing; run `citeplus topics apply`"
                )
            partitions = sorted(metadata.partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            return self._consume_until_eof(consumer, topic, set(partitions), timeout_s)
        except KafkaException as exc:
            raise InfrastructureError(f"cannot read {topic}: {exc}; is the broker up?") from exc
        finally:
            consumer.close()

    def _consume_until_eof(
        self, consumer: Consumer, topic: str, remaining: set[int], timeout_s: float
    ) -> int:
        read = 0
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"reading {topic} back did not reach its end in {timeout_s:g} s "
                    f"(partitions {sorted(remaining)}); is the broker overloaded?"
                )
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                    elif error.fatal():
                        raise InfrastructureError(f"cannot read {topic}: {error.str()}")
                    continue
                self._apply(topic, message.key(), message.value())
                read += 1
        return read

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """One record read back: the latest record of a key wins, a tombstone removes it."""
        sub_id = (key or b"").decode("utf-8", "replace")
        table: dict[str, Any] = self._subs if topic == self.topics.definitions else self._states
        if value is None:
            table.pop(sub_id, None)
            return
        try:
            record = self._codecs[topic].decode(value)
            document = record["value"]
            if document is None:
                table.pop(sub_id, None)
            elif topic == self.topics.definitions:
                table[sub_id] = subscription_from_json(document)
            else:
                table[sub_id] = state_from_json(document)
        except (ValueError, KeyError, TypeError) as exc:
            self.unreadable += 1
            log.error(
                "a subscription record could not be read; it is left out",
                extra={"topic": topic, "key": sub_id[:200], "error": str(exc)[:300]},
            )

    # -- reads ------------------------------------------------------------------------
    def get(self, sub_id: str) -> Subscription | None:
        with self._lock:
            return self._subs.get(sub_id)

    def list(self, owner: str | None = None) -> list[Subscription]:
        """The subscriptions of ``owner`` (every one with None), oldest first."""
        with self._lock:
            found = [s for s in self._subs.values() if owner is None or s.owner == owner]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    def state(self, sub_id: str) -> DeliveryState:
        """The last saved delivery state (an empty one before the first delivery)."""
        with self._lock:
            return self._states.get(sub_id) or DeliveryState()

    def __len__(self) -> int:
        with self._lock:
            return len(self._subs)

    # -- writes -----------------------------------------------------------------------
    def put(self, sub: Subscription) -> None:
        """Create or replace; returns once Kafka confirmed it (StoreUnavailable else)."""
        with self._write_lock:
            document = subscription_to_json(sub)
            self._write(self.topics.definitions, DEFINITIONS_STORE, sub.id, document)
            with self._lock:
                self._subs[sub.id] = sub
        self._tell(Change(PUT, sub.id, sub))

    def delete(self, sub_id: str) -> bool:
        """Remove a subscription and its state (tombstones on both topics); False when
        there was none."""
        with self._write_lock:
            if self.get(sub_id) is None:
                return False
            self._write(self.topics.definitions, DEFINITIONS_STORE, sub_id, None)
            self._write(self.topics.states, STATES_STORE, sub_id, None)
            with self._lock:
                self._subs.pop(sub_id, None)
                self._states.pop(sub_id, None)
        self._tell(Change(DELETE, sub_id))
        return True

    def save_state(self, sub_id: str, state: DeliveryState) -> None:
        """The engine's progress for ``sub_id``, confirmed by Kafka before it returns (a
        position saved is a position a restarted api resumes from). A state for a
        subscription deleted meanwhile is not written."""
        with self._write_lock:
            if self.get(sub_id) is None:
                return
            self._write(self.topics.states, STATES_STORE, sub_id, state_to_json(state))
            with self._lock:
                self._states[sub_id] = state
        self._tell(Change(STATE, sub_id, self.get(sub_id)))

    def save_states(self, states: dict[str, DeliveryState]) -> None:
        """Several states confirmed together (one wait for Kafka, not one per
        subscription): what the engine saves after a round of notifications. States of
        subscriptions deleted meanwhile are left out."""
        with self._write_lock:
            kept = {i: st for i, st in states.items() if self.get(i) is not None}
            writes = [
                (self.topics.states, STATES_STORE, i, state_to_json(st)) for i, st in kept.items()
            ]
            self._write_many(writes)
            with self._lock:
                self._states.update(kept)
        for sub_id in kept:
            self._tell(Change(STATE, sub_id, self.get(sub_id)))

    def _write(self, topic: str, store: str, key: str, document: str | None) -> None:
        self._write_many([(topic, store, key, document)])

    def _write_many(self, writes: list[tuple[str, str, str, str | None]]) -> None:
        """Produce every record (None: a tombstone), then wait until Kafka confirmed all
        of them; StoreUnavailable when one is refused or not confirmed in time."""
        if self._producer is None:
            raise StoreUnavailable("the subscription store is not started")
        outcome: list[KafkaError | None] = []
        now = int(time.time() * 1e6)
        with self._write_lock:
            for topic, store, key, document in writes:
                value = None
                if document is not None:
                    record = {"store": store, "key": key, "value": document, "updated_at": now}
                    value = self._codecs[topic].encode(record)
                try:
                    produce_bytes(
                        self._producer,
                        topic,
                        key,
                        value,  # type: ignore[arg-type]  # None: the tombstone compaction removes
                        on_delivery=lambda err, _msg: outcome.append(err),
                    )
                except KafkaException as exc:
                    raise StoreUnavailable(f"Kafka refused the write to {topic}: {exc}") from exc
            self._producer.flush(self.write_timeout_s)
        if len(outcome) < len(writes):
            raise StoreUnavailable(
                f"Kafka did not confirm {len(writes) - len(outcome)} of {len(writes)} writes "
                f"within {self.write_timeout_s:g} s"
            )
        refused = [err for err in outcome if err is not None]
        if refused:
            raise StoreUnavailable(f"Kafka refused a write: {refused[0].str()}")

    # -- who is told ------------------------------------------------------------------
    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener`` after every confirmed write (in the writer's thread; keep it
        short and never let it raise into the caller: exceptions are logged)."""
        self._listeners.append(listener)

    def watch(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[Change]:
        """An asyncio queue of ``loop`` that receives every change (thread-safe)."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self.on_change(lambda change: loop.call_soon_threadsafe(queue.put_nowait, change))
        return queue

    def _tell(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("a subscription change listener failed", extra={"id": change.sub_id})
