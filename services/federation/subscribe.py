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
from collections.abc import Callable, Iterator
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
FLUSH_AFTER_S = 0.25  # a partial batch leaves after this long
HEARTBEAT_S = 2.0  # an empty batch moves a subscriber's position past other datasets' records
METADATA_TIMEOUT_S = 10.0


class StreamExpired(Exception):
    """The stream reached its maximum life; its last batch carried the position to
    resume from. The server turns this into a status the client can act on."""


class DatasetFilter:
    """Tells whether a published record belongs to a dataset from its city (and
    source) alone: the rest of the record is skipped, not decoded (avro_peek)."""

    def __init__(
        self, dataset: DatasetInfo, contracts: Contracts, topic: str, registry: SchemaRegistry
    ):
        self.city = dataset.city
        self.source = None if dataset.is_aggregates else dataset.source
        self.wanted = ("city",) if self.source is None else ("city", "source")
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
        ok = fields["city"] == self.city and (
            self.source is None or fields["source"] == self.source
        )
        return ok, schema_id


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


def start_offsets(consumer: Consumer, topic: str, request: Any) -> dict[int, int]:
    """Where each partition starts, from the request's resume position, time or end."""
    partitions = _partitions(consumer, topic)
    marks = _watermarks(consumer, topic, partitions)
    which = request.WhichOneof("start")
    if which == "resume":
        position = request.resume
        if position.topic != topic:
            raise invalid(
                "resume.topic",
                f"this position belongs to {position.topic!r}, "
                f"not to this dataset's topic {topic!r}",
            )
        offsets = {p: marks[p][0] for p in partitions}  # a partition it never saw: from its start
        for entry in position.partitions:
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
            offsets[entry.partition] = entry.next_offset
        return offsets
    if which == "from_time":
        ms = timestamp_us(request.from_time) // 1000
        if ms < 0:
            raise invalid("from_time", "must be after 1970")
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, ms) for p in partitions], timeout=METADATA_TIMEOUT_S
        )
        return {
            tp.partition: (tp.offset if tp.offset >= 0 else marks[tp.partition][1]) for tp in found
        }
    point = getattr(request, "from")
    if which == "from" and point == pb.START_POINT_LATEST:
        return {p: marks[p][1] for p in partitions}
    if which == "from" and point == pb.START_POINT_EARLIEST:
        return {p: marks[p][0] for p in partitions}
    raise invalid("start", "give resume (a position), from_time, or from (EARLIEST or LATEST)")


def position_message(topic: str, offsets: dict[int, int]) -> Any:
    return pb.Position(
        topic=topic,
        partitions=[
            pb.PartitionOffset(partition=p, next_offset=o) for p, o in sorted(offsets.items())
        ],
    )


def subscribe(
    node: NodeConfig,
    contracts: Contracts,
    dataset: DatasetInfo,
    topic: str,
    request: Any,
    is_active: Callable[[], bool],
    registry: SchemaRegistry,
    on_records: Callable[[int], None] | None = None,
    until: float | None = None,
) -> Iterator[Any]:
    """The stream of RecordBatch for one call.

    ``until`` (a ``time.monotonic()`` instant) bounds the stream's life: past it, a
    last batch carries the position reached (even with no record) and
    StreamExpired ends the stream, so that no partner holds a slot forever.
    """
    max_batch = request.max_batch or DEFAULT_BATCH
    if max_batch > MAX_BATCH:
        raise invalid("max_batch", f"at most {MAX_BATCH}, got {max_batch}")
    limit = request.max_records or None
    consumer = make_consumer(
        node,
        group_id=f"citeplus.federation.subscribe.{uuid.uuid4().hex}",
        **{"enable.partition.eof": True, "fetch.wait.max.ms": 100},
    )
    try:
        offsets = start_offsets(consumer, topic, request)
        wanted = DatasetFilter(dataset, contracts, topic, registry)
        consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        # The end to reach for stop_at_end: what was published before the call.
        ends = {p: high for p, (_, high) in _watermarks(consumer, topic, list(offsets)).items()}
        at_end = {p: offsets[p] >= ends[p] for p in offsets}
        sent = 0
        records: list[Any] = []
        last_flush = time.monotonic()
        moved = False
        while is_active():
            done = limit is not None and sent + len(records) >= limit
            caught_up = all(at_end.values())
            finished = done or (request.stop_at_end and caught_up)
            expired = until is not None and time.monotonic() >= until
            due = time.monotonic() - last_flush
            if (
                finished
                or expired
                or len(records) >= max_batch
                or (records and due > FLUSH_AFTER_S)
                or (moved and due > HEARTBEAT_S)
            ):
                yield pb.RecordBatch(
                    records=records, position=position_message(topic, offsets), caught_up=caught_up
                )
                sent += len(records)
                if on_records:
                    on_records(len(records))
                if finished:
                    return
                if expired:
                    raise StreamExpired
                records, last_flush, moved = [], time.monotonic(), False
            room = max_batch - len(records)
            if limit is not None:
                room = min(room, limit - sent - len(records))
            for message in consumer.consume(room, 0.1):
                partition = message.partition()
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise FederationError(
                            grpc.StatusCode.UNAVAILABLE, f"reading {topic} failed: {error.str()}"
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
    except KafkaException as exc:
        raise FederationError(grpc.StatusCode.UNAVAILABLE, f"Kafka: {exc}") from exc
    finally:
        consumer.close()


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
