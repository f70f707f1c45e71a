"""Subscribe: a dataset's records as publish re-publishes them, resumable exactly.

Served from the public topics (``public.observations.v1``, the caller's own
``public.shared.<partner>.observations.v1``, ``public.energy.aggregates.v2``), read
``read_committed`` by a consumer of the call's own that assigns partitions
explicitly and never commits: the client holds its position, not the node.

A position is the next offset of every partition of the topic. Each batch carries
the position just after its records (and after records of other datasets that
were skipped), so a client that sends back the last position it received gets
every later record once: nothing before it again, nothing after it missed, across
reconnections and restarts of either side. A position older than what the topic
still holds (retention) is refused (OUT_OF_RANGE) rather than silently skipped.

Record values are forwarded as published (Avro binary, header removed); the node
only decodes the few fields that tell which dataset a record belongs to.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from services.federation.avro_peek import compile_peek
from services.federation.calls import FederationError, invalid
from services.federation.catalog import DatasetInfo
from services.federation.protos import pb
from services.federation.queries import timestamp_us
from services.runtime import wire
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.kafka import make_consumer
from services.runtime.registry import SchemaRegistry

DEFAULT_BATCH = 500
MAX_BATCH = 5000
FLUSH_AFTER_S = 0.05  # a partial batch leaves after this long (notifications wait on it)
HEARTBEAT_S = 2.0  # an empty batch moves a subscriber's position past other datasets' records
METADATA_TIMEOUT_S = 10.0


class StreamExpired(Exception):
    """The stream reached its maximum life; its last batch carried the position to
    resume from. The server turns this into a status the client can act on."""


class DatasetFilter:
    """Tells whether a published record belongs to one of the wanted datasets from
    its city (and source) alone: the rest of the record is skipped, not decoded
    (avro_peek). All datasets of one filter share a topic, hence a kind."""

    def __init__(
        self,
        datasets: Sequence[DatasetInfo],
        contracts: Contracts,
        topic: str,
        registry: SchemaRegistry,
    ):
        aggregates = all(d.is_aggregates for d in datasets)
        self.wanted = ("city",) if aggregates else ("city", "source")
        self.keys = {(d.city,) if aggregates else (d.city, d.source) for d in datasets}
        self.codec = contracts.codec(topic)
        self.registry = registry
        self._peeks: dict[int, Callable[[bytes, int], dict[str, str]]] = {}

    def _peek(self, schema_id: int) -> Callable[[bytes, int], dict[str, str]]:
        peek = self._peeks.get(schema_id)
        if peek is None:
            if schema_id == self.codec.schema_id:
                writer = self.codec.schema.expanded
            else:
                writer = self.registry.schema_json(schema_id)
            peek = compile_peek(writer, self.wanted)
            self._peeks[schema_id] = peek
        return peek

    def matches(self, value: bytes) -> tuple[bool, int]:
        schema_id = wire.read_header(value)
        fields = self._peek(schema_id)(value, wire.HEADER_SIZE)
        return tuple(fields[name] for name in self.wanted) in self.keys, schema_id


def _watermarks(
    consumer: Consumer, topic: str, partitions: list[int]
) -> dict[int, tuple[int, int]]:
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=METADATA_TIMEOUT_S)
        for p in partitions
    }


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise FederationError(
            grpc.StatusCode.UNAVAILABLE, f"the topic of this dataset ({topic}) is not available"
        )
    return sorted(described.partitions)


def _resume_offset(entry: Any, marks: dict[int, tuple[int, int]], topic: str) -> int:
    """One partition's resume offset, refused when the topic never held it (ahead of
    its end) or no longer holds what precedes it (retention)."""
    if entry.partition not in marks:
        raise invalid("resume.partitions", f"no partition {entry.partition} in {topic}")
    low, high = marks[entry.partition]
    if entry.next_offset > high:
        raise invalid(
            "resume.partitions",
            f"offset {entry.next_offset} of partition {entry.partition} is ahead of the "
            f"topic (end {high}); a position comes from a batch of this node",
        )
    if entry.next_offset < low:
        raise FederationError(
            grpc.StatusCode.OUT_OF_RANGE,
            f"records of partition {entry.partition} before offset {low} are no longer "
            f"held (retention); the position {entry.next_offset} cannot resume without a "
            "gap. Subscribe from EARLIEST, and catch up older data with QueryAggregates",
        )
    return entry.next_offset


def _resume_offsets(
    consumer: Consumer, topic: str, request: Any, marks: dict[int, tuple[int, int]]
) -> dict[int, int]:
    position = request.resume
    if position.topic != topic:
        raise invalid(
            "resume.topic",
            f"this position belongs to {position.topic!r}, not to this dataset's topic {topic!r}",
        )
    offsets = {p: low for p, (low, _) in marks.items()}  # a partition it never saw: its start
    for entry in position.partitions:
        offsets[entry.partition] = _resume_offset(entry, marks, topic)
    return offsets


def _time_offsets(
    consumer: Consumer, topic: str, request: Any, marks: dict[int, tuple[int, int]]
) -> dict[int, int]:
    """The first offset at or after the time, the end where nothing is that late."""
    ms = timestamp_us(request.from_time) // 1000
    if ms < 0:
        raise invalid("from_time", "must be after 1970")
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, ms) for p in marks], timeout=METADATA_TIMEOUT_S
    )
    return {tp.partition: (tp.offset if tp.offset >= 0 else marks[tp.partition][1]) for tp in found}


def _point_offsets(
    consumer: Consumer, topic: str, request: Any, marks: dict[int, tuple[int, int]]
) -> dict[int, int]:
    point = getattr(request, "from")
    if point == pb.START_POINT_LATEST:
        return {p: high for p, (_, high) in marks.items()}
    if point == pb.START_POINT_EARLIEST:
        return {p: low for p, (low, _) in marks.items()}
    raise _no_start()


def _no_start() -> FederationError:
    return invalid("start", "give resume (a position), from_time, or from (EARLIEST or LATEST)")


_STARTS = {"resume": _resume_offsets, "from_time": _time_offsets, "from": _point_offsets}


def start_offsets(consumer: Consumer, topic: str, request: Any) -> dict[int, int]:
    """Where each partition starts, from the request's resume position, time or end."""
    partitions = _partitions(consumer, topic)
    marks = _watermarks(consumer, topic, partitions)
    start = _STARTS.get(request.WhichOneof("start"))
    if start is None:
        raise _no_start()
    return start(consumer, topic, request, marks)


def position_message(topic: str, offsets: dict[int, int]) -> Any:
    return pb.Position(
        topic=topic,
        partitions=[
            pb.PartitionOffset(partition=p, next_offset=o) for p, o in sorted(offsets.items())
        ],
    )


@dataclass(frozen=True)
class _Bounds:
    """How much one call's stream sends at a time, in all, and until when."""

    max_batch: int
    limit: int | None  # records in all (max_records), None for no limit
    stop_at_end: bool
    until: float | None  # a time.monotonic() instant

    @classmethod
    def of(cls, request: Any, until: float | None) -> _Bounds:
        max_batch = request.max_batch or DEFAULT_BATCH
        if max_batch > MAX_BATCH:
            raise invalid("max_batch", f"at most {MAX_BATCH}, got {max_batch}")
        return cls(max_batch, request.max_records or None, request.stop_at_end, until)

    def room(self, sent: int, pending: int) -> int:
        """How many more records the next read may take."""
        room = self.max_batch - pending
        if self.limit is not None:
            room = min(room, self.limit - sent - pending)
        return room


class _Cursor:
    """Where a call's consumer stands: the next offset of every partition (the
    position a batch carries), which partitions reached the end published before
    the call, and whether the position moved since the last batch."""

    def __init__(self, topic: str, offsets: dict[int, int], ends: dict[int, int]) -> None:
        self.topic = topic
        self.offsets = offsets
        self.ends = ends
        self.at_end = {p: offsets[p] >= ends[p] for p in offsets}
        self.moved = False

    def position(self) -> Any:
        return position_message(self.topic, self.offsets)

    def read(self, consumer: Consumer, wanted: DatasetFilter, room: int) -> list[Any]:
        """The dataset's records among the next ``room`` messages, the position moved
        past every message read (other datasets' records and markers included)."""
        offsets, at_end, ends, moved = self.offsets, self.at_end, self.ends, self.moved
        records: list[Any] = []
        for message in consumer.consume(room, 0.1):
            partition = message.partition()
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise FederationError(
                        grpc.StatusCode.UNAVAILABLE, f"reading {self.topic} failed: {error.str()}"
                    )
                # The end as a read_committed consumer sees it: past it lie only
                # transaction markers, so moving the position there skips no record.
                if message.offset() > offsets[partition]:
                    offsets[partition] = message.offset()
                    moved = True
                at_end[partition] = True
                continue
            offsets[partition] = message.offset() + 1
            at_end[partition] = offsets[partition] >= ends[partition]
            moved = True
            value = message.value() or b""
            try:
                ok, schema_id = wanted.matches(value)
            except Exception:  # not a record of ours (publish wrote it): skip, keep moving
                continue
            if ok:
                records.append(_record(message, value, schema_id))
        self.moved = moved
        return records


def subscribe(
    node: NodeConfig,
    contracts: Contracts,
    datasets: Sequence[DatasetInfo],
    topic: str,
    request: Any,
    is_active: Callable[[], bool],
    registry: SchemaRegistry,
    on_records: Callable[[int], None] | None = None,
    until: float | None = None,
) -> Iterator[Any]:
    """The stream of RecordBatch for one call: the records of ``datasets`` (one, or
    every dataset of ``topic`` the caller may read), all carried by ``topic``.

    ``until`` (a ``time.monotonic()`` instant) bounds the stream's life: past it, a
    last batch carries the position reached (even with no record) and
    StreamExpired ends the stream, so that no partner holds a slot forever.
    """
    bounds = _Bounds.of(request, until)
    consumer = make_consumer(
        node,
        group_id=f"citeplus.federation.subscribe.{uuid.uuid4().hex}",
        **{"enable.partition.eof": True, "fetch.wait.max.ms": 100},
    )
    try:
        offsets = start_offsets(consumer, topic, request)
        wanted = DatasetFilter(datasets, contracts, topic, registry)
        consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        # The end to reach for stop_at_end: what was published before the call.
        ends = {p: high for p, (_, high) in _watermarks(consumer, topic, list(offsets)).items()}
        cursor = _Cursor(topic, offsets, ends)
        yield from _batches(consumer, cursor, wanted, bounds, is_active, on_records)
    except KafkaException as exc:
        raise FederationError(grpc.StatusCode.UNAVAILABLE, f"Kafka: {exc}") from exc
    finally:
        consumer.close()


def _batches(
    consumer: Consumer,
    cursor: _Cursor,
    wanted: DatasetFilter,
    bounds: _Bounds,
    is_active: Callable[[], bool],
    on_records: Callable[[int], None] | None,
) -> Iterator[Any]:
    """Batches while the call lasts: one leaves when full, when the stream is done or
    expires, when a partial one waited long enough, or (empty) as a heartbeat that
    carries a moved position."""
    sent = 0
    records: list[Any] = []
    last_flush = time.monotonic()
    while is_active():
        done = bounds.limit is not None and sent + len(records) >= bounds.limit
        caught_up = all(cursor.at_end.values())
        finished = done or (bounds.stop_at_end and caught_up)
        expired = bounds.until is not None and time.monotonic() >= bounds.until
        due = time.monotonic() - last_flush
        if finished or expired or _batch_due(bounds, records, cursor.moved, due):
            yield pb.RecordBatch(records=records, position=cursor.position(), caught_up=caught_up)
            sent += len(records)
            if on_records:
                on_records(len(records))
            if finished:
                return
            if expired:
                raise StreamExpired
            records, last_flush, cursor.moved = [], time.monotonic(), False
        records.extend(cursor.read(consumer, wanted, bounds.room(sent, len(records))))


def _batch_due(bounds: _Bounds, records: list[Any], moved: bool, waited: float) -> bool:
    return (
        len(records) >= bounds.max_batch
        or (bool(records) and waited > FLUSH_AFTER_S)
        or (moved and waited > HEARTBEAT_S)
    )


def _record(message: Any, value: bytes, schema_id: int) -> Any:
    record = pb.Record(
        partition=message.partition(),
        offset=message.offset(),
        key=message.key() or b"",
        value=value[wire.HEADER_SIZE :],
        schema_id=schema_id,
    )
    _, stamp = message.timestamp()
    if stamp > 0:
        record.published_at.seconds, ms = divmod(stamp, 1000)
        record.published_at.nanos = ms * 1_000_000
    return record
