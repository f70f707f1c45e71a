"""Feeds: one federation Subscribe stream per (node, topic, audience), shared.

A node serves a caller a handful of streams at once (limits.subscriptions_own for
the node itself), so a hundred subscriptions cannot each hold one: every
subscription of an audience is fed by one stream per topic of each node (the
``topic`` form of SubscribeRequest: every dataset of the topic the audience may
read, the owning node's policy deciding). The stream is read on behalf of the
audience, so a subscriber is offered only what its key may read.

A feed starts at the lowest position its subscribers hold and offers each record
(partition p, offset o) to a subscriber only when o is at or past that
subscriber's own position in p: nothing before it again. A subscriber that cannot
keep up (its receiver is down) refuses an offer and is detached; when it is
attached again behind the stream, the stream is rewound to its position (the
others skip what they already have). A stream that reaches its maximum life on the
node resumes from the last position received; one whose start is older than the
topic's retention (OUT_OF_RANGE) starts again from the oldest record held, and its
subscribers are told (their status says records may be missing).
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import fastavro
import grpc

from services.api.subscriptions.entity_from_record import record_entity
from services.api.subscriptions.model import parse_time
from services.api.subscriptions.positions import FeedKey, Offsets, lowest, of_message
from services.federation.client import FederationClient
from services.federation.protos import pb

log = logging.getLogger(__name__)
BATCH = 500
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0


@dataclass(frozen=True)
class Item:
    """One published record as its entity, where it lies in the feed's topic."""

    partition: int
    offset: int
    entity: Any  # pb.Entity
    published_ms: int


class Subscriber(Protocol):
    """What a feed needs of a subscription's delivery."""

    key: str

    def cursor(self, feed: FeedKey) -> Offsets | None:
        """Where it wants records from (None: whatever comes next)."""

    def offer(self, feed: FeedKey, items: list[Item], position: Offsets) -> bool:
        """Records at or past its cursor and the position after them; False when it
        cannot take them (then it is detached and must attach again)."""

    def out_of_range(self, feed: FeedKey, reason: str) -> None:
        """Its position was older than what the node still holds."""

    def since(self) -> str:
        """When it was created (ISO 8601): where a fresh feed starts for one without
        a position yet."""


class Decoder:
    """Avro records of one node, writer schemas fetched with GetSchema by id, once."""

    def __init__(self, client: FederationClient, dataset: str):
        self.client = client
        self.dataset = dataset
        self._schemas: dict[int, Any] = {}

    def decode(self, value: bytes, schema_id: int) -> dict[str, Any]:
        schema = self._schemas.get(schema_id)
        if schema is None:
            answer = self.client.schema(self.dataset, schema_id)
            schema = fastavro.parse_schema(_plain(json.loads(answer.avro_schema)))
            self._schemas[schema_id] = schema
        return fastavro.schemaless_reader(io.BytesIO(value), schema)  # type: ignore[return-value]


def _plain(schema: Any) -> Any:
    """The schema without logical types: times stay integers (micros), as the
    representation reads them, instead of datetimes made and taken apart again."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


def items_of(batch: Any, decoder: Decoder, licences: Mapping[str, str]) -> list[Item]:
    """A RecordBatch's records as items (a record that decodes to no value is skipped:
    a series without a reading updates nothing)."""
    found = []
    for record in batch.records:
        entity = record_entity(decoder.decode(record.value, record.schema_id), licences)
        if entity is None:
            continue
        stamp = record.published_at
        published_ms = stamp.seconds * 1000 + stamp.nanos // 1_000_000
        found.append(Item(record.partition, record.offset, entity, published_ms))
    return found


class Feed:
    """One shared stream, read by its own thread while it has subscribers."""

    def __init__(
        self,
        key: FeedKey,
        audience: str,
        client: FederationClient,
        dataset: str,
        licences: Mapping[str, str],
        on_error: Callable[[str], None] | None = None,
    ):
        self.key = key
        self.audience = audience
        self.client = client
        self.decoder = Decoder(client, dataset)
        self.licences = dict(licences)
        self.position: Offsets | None = None
        self._subscribers: dict[str, Subscriber] = {}
        self._lock = threading.Condition()
        self._call: Any = None
        self._start: Offsets | None = None  # the resume offsets of the open stream
        self._rewind = False
        self._from_earliest = False
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name=f"feed-{key[0]}-{key[1]}-{audience}", daemon=True
        )
        self.on_error = on_error
        self.records = 0

    def start(self) -> Feed:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._cancel()
            self._lock.notify_all()
        self._thread.join(timeout=5.0)

    def attach(self, subscriber: Subscriber) -> None:
        """Feed ``subscriber`` from its cursor: the stream is rewound when it is behind."""
        with self._lock:
            self._subscribers[subscriber.key] = subscriber
            cursor = subscriber.cursor(self.key)
            # Where the open stream stands: its last position, else where it started
            # (None: from a time or the end, which no offset can be compared with).
            reference = self.position if self.position is not None else self._start
            if (
                cursor is not None
                and self._call is not None
                and (reference is None or _behind(cursor, reference))
            ):
                self._rewind = True
                self._cancel()
            self._lock.notify_all()

    def detach(self, key: str) -> None:
        with self._lock:
            self._subscribers.pop(key, None)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()

    def _request(self) -> Any:
        """Start at the lowest cursor of the subscribers (the feed's own position when
        none has one, the end of the topic for a feed that never ran)."""
        subscribers = list(self._subscribers.values())
        cursors = [s.cursor(self.key) for s in subscribers]
        start = lowest(c for c in cursors if c) if any(cursors) else self.position
        request = pb.SubscribeRequest(topic=self.key[1], max_batch=BATCH)
        self._start = None
        if self._from_earliest:
            setattr(request, "from", pb.START_POINT_EARLIEST)
        elif self.position is None and not all(cursors):
            # A subscription that never saved a position: from its creation, so that
            # nothing published since is missed (the others skip what they have).
            first = min(parse_time(s.since()) for s in subscribers)
            request.from_time.FromDatetime(first)
        elif start is not None:
            self._start = dict(start)
            request.resume.topic = self.key[1]
            request.resume.partitions.extend(
                pb.PartitionOffset(partition=p, next_offset=o) for p, o in sorted(start.items())
            )
        else:
            setattr(request, "from", pb.START_POINT_LATEST)
        return request

    def _run(self) -> None:
        failures = 0
        while True:
            with self._lock:
                while not self._subscribers and not self._stopped:
                    self._lock.wait(1.0)
                if self._stopped:
                    return
                request = self._request()
                self._rewind = False
                self._call = self.client.subscribe(request)
            try:
                self._read(self._call)
                failures = 0
            except grpc.RpcError as error:
                failures = self._failed(error, failures)
            except Exception:  # a record this node cannot decode: log, retry later
                log.exception("a subscription feed failed", extra={"feed": list(self.key)})
                failures += 1
                self._sleep(failures)

    def _failed(self, error: grpc.RpcError, failures: int) -> int:
        code = error.code()
        with self._lock:
            if self._stopped or (code == grpc.StatusCode.CANCELLED and self._rewind):
                return 0
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # the stream's max life: resume
            return 0
        if code == grpc.StatusCode.OUT_OF_RANGE:
            self._out_of_range(error.details() or "")
            return 0
        failures += 1
        reason = f"{code.name}: {(error.details() or '')[:300]}"
        log.warning("a subscription feed stopped: %s", reason, extra={"feed": list(self.key)})
        if self.on_error:
            self.on_error(reason)
        self._sleep(failures)
        return failures

    def _out_of_range(self, details: str) -> None:
        with self._lock:
            behind = [s for s in self._subscribers.values() if s.cursor(self.key) is not None]
            self._from_earliest = True
        reason = (
            "positions older than the topic's retention: delivery goes on from the oldest "
            f"record still held, earlier records are lost ({details[:200]})"
        )
        for subscriber in behind:
            subscriber.out_of_range(self.key, reason)

    def _sleep(self, failures: int) -> None:
        delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(failures - 1, 10))
        with self._lock:
            if not self._stopped:
                self._lock.wait(delay)

    def _read(self, call: Any) -> None:
        for batch in call:
            items = items_of(batch, self.decoder, self.licences)
            position = of_message(batch.position)
            with self._lock:
                self._from_earliest = False
                self.position = position
                self.records += len(items)
                subscribers = list(self._subscribers.values())
            for subscriber in subscribers:
                self._offer(subscriber, items, position)

    def _offer(self, subscriber: Subscriber, items: list[Item], position: Offsets) -> None:
        cursor = subscriber.cursor(self.key)
        wanted = items
        if cursor is not None:
            wanted = [i for i in items if i.offset >= cursor.get(i.partition, 0)]
        if not subscriber.offer(self.key, wanted, position):
            self.detach(subscriber.key)


def _behind(cursor: Offsets, position: Offsets) -> bool:
    return any(cursor.get(p, 0) < o for p, o in position.items())
