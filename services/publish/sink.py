"""The ClickHouse sink: consume → land → commit offsets, idempotently.

Offsets are committed to Kafka only after ClickHouse has the batch. A crash
between the two must not duplicate rows, so every row carries its Kafka
coordinates: on (re)assignment the sink asks the warehouse for the highest
offset it already holds per partition and resumes after it, and each insert
carries a deduplication token (topic, each partition's offset range) so that an
insert retried as is counts once.

Inserts are batched by size or time (services/runtime/linger.py): a batch holds
every partition's messages of up to ``publish.flush_ms`` and lands as one insert
per table; its offsets are committed after that insert, as before, so batching
changes when rows land, never whether they land once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.publish.insert_pacing import InsertPacing, busy_spacing
from services.publish.rows import Landed
from services.runtime.codec import Contracts, TopicCodec
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import make_consumer
from services.runtime.linger import Linger
from services.runtime.metrics import ServiceMetrics
from services.warehouse.port import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkRoute:
    """Which topic lands in which table, and how its records become rows."""

    topic: str
    table: str
    rows: Callable[[Sequence[Landed]], pa.Table]
    # Run after each insert (a batch's follow-up, idempotent) and once at assignment
    # (to finish what a crash between an insert and its follow-up left undone).
    after_insert: Callable[[Warehouse, Sequence[Landed] | None], object] | None = None
    # A v2 batch message lands as one record, the batch itself, for ``rows`` that read
    # its columns (services/publish/batch_rows.py), instead of one record per member.
    whole_batches: bool = False
    # Refuses (ValueError) a decoded record that cannot become rows: reported as
    # undecodable as it arrives, rather than failing the insert at every restart.
    check: Callable[[dict[str, Any]], None] | None = None


@dataclass
class SinkSummary:
    messages: int = 0
    rows: int = 0
    batches: int = 0
    skipped_already_landed: int = 0
    undecodable: int = 0
    inserts: int = 0  # one per table per batch: what creates parts in ClickHouse
    rows_by_table: dict[str, int] = field(default_factory=dict)


# Messages fetched at once while a batch gathers: its rows are counted that often, so
# a batch passes publish.flush_rows by at most this many messages' rows.
FETCH_CHUNK = 100


@dataclass
class _Pending:
    """A batch being gathered: its decoded records by (topic, partition, offset) and
    how many rows they will make."""

    records: dict[tuple[str, int, int], list[dict[str, Any]]] = field(default_factory=dict)
    rows: int = 0


def _rows_of(records: list[dict[str, Any]]) -> int:
    """Rows records land as: a series one per value, anything else one."""
    rows = 0
    for record in records:
        values = record.get("values")
        rows += len(values) if isinstance(values, list) else 1
    return rows


class WarehouseSink:
    """Lands topics in warehouse tables; offsets committed only after the insert.

    Inserts are batched by size or time (``publish.flush_rows`` / ``flush_ms``, or
    the arguments): ClickHouse makes parts per insert, and short stage cycles upstream
    must not become a part per cycle."""

    def __init__(
        self,
        node: NodeConfig,
        contracts: Contracts,
        warehouse: Warehouse,
        routes: Sequence[SinkRoute],
        *,
        group_id: str = "citeplus.publish.sink",
        max_messages: int = 20_000,
        flush_s: float | None = None,
        flush_rows: int | None = None,
        metrics: ServiceMetrics | None = None,
        on_undecodable: Callable[[Message, Exception], None] | None = None,
    ):
        self.node = node
        self.contracts = contracts
        self.warehouse = warehouse
        self.routes = {route.topic: route for route in routes}
        self.max_messages = max_messages
        self.flush_rows = node.publish.flush_rows if flush_rows is None else flush_rows
        flush = node.publish.flush_ms / 1000 if flush_s is None else flush_s
        self.pacing = InsertPacing(flush, busy_spacing(flush, node), node.publish.busy_rows_per_s)
        # Gathering looks at the rows every slice: a batch can pass flush_rows early.
        self.linger = Linger(
            flush,
            node.processing.batch_timeout_s,
            slice_s=min(0.05, flush or 1),
            chunk=FETCH_CHUNK,
            spaced=True,  # at most one insert per flush_ms; none waits after a quiet spell
        )
        self.metrics = metrics or ServiceMetrics("publish")
        self.consumer: Consumer = make_consumer(node, group_id=group_id)
        self.summary = SinkSummary()
        self._landed: dict[tuple[str, int], int] = {}
        self._ahead_of_commits: list[TopicPartition] = []
        self._on_undecodable = on_undecodable

    # -- assignment: resume after what the warehouse already holds -----------------------
    def landed_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """Highest offset per (topic, partition) present in the warehouse."""
        found: dict[tuple[str, int], int] = {}
        for topic in topics:
            table = self.routes[topic].table
            result = self.warehouse.query_arrow(
                f"SELECT _partition, max(_offset) AS last FROM {table} "
                f"WHERE _topic = '{topic}' GROUP BY _partition"
            )
            for row in result.to_pylist():
                found[(topic, int(row["_partition"]))] = int(row["last"])
        return found

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topics = sorted({tp.topic for tp in partitions})
        for topic in topics:
            follow_up = self.routes[topic].after_insert
            if follow_up is not None:
                follow_up(self.warehouse, None)
        landed = self.landed_offsets(topics)
        self._landed.update(landed)
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions)}
        starts, ahead = [], []
        for tp in partitions:
            start = committed.get((tp.topic, tp.partition), -1001)
            resume = landed.get((tp.topic, tp.partition))
            if resume is not None and (start < 0 or start <= resume):
                start = resume + 1  # the crash came after the insert, before the commit
                ahead.append(TopicPartition(tp.topic, tp.partition, start))
            starts.append(TopicPartition(tp.topic, tp.partition, start))
        consumer.assign(starts)
        self._ahead_of_commits = ahead
        log.info(
            "sink assigned",
            extra={"partitions": [f"{t.topic}[{t.partition}]@{t.offset}" for t in starts]},
        )

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget the offsets still to commit: the partitions may go to another sink."""
        self._ahead_of_commits = []

    def start(self) -> None:
        self.consumer.subscribe(
            list(self.routes), on_assign=self._assigned, on_revoke=self._revoked
        )
        self.metrics.ready = True

    def close(self) -> None:
        self.metrics.ready = False
        self.consumer.close()

    # -- the loop -------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, *, idle_exit_s: float | None = None
    ) -> SinkSummary:
        self.start()
        stop = stop or threading.Event()
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                self.metrics.mark_progress()
                if self.run_once():
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
        finally:
            self.close()
        return self.summary

    def run_once(self) -> int:
        """One batch: gather up to the size/time bounds, land it, then commit.

        The batch closes at ``flush_rows`` rows, ``max_messages`` messages or ``flush_s``
        after the previous insert (services/runtime/linger.py, spaced): one insert per
        table per batch, whatever the number of partitions and short stage cycles
        behind it, so the parts ClickHouse must merge grow with time, not with cycles."""
        pending = _Pending()

        def fetch(at_most: int, timeout_s: float) -> list[Message]:
            got = [m for m in self.consumer.consume(at_most, timeout_s) if not self._is_error(m)]
            # A message read again (a partition sought back mid-batch) is decoded once.
            new = [m for m in got if self._fresh(m) and _place(m) not in pending.records]
            pending.rows += sum(_rows_of(self._decoded(m, pending)) for m in new)
            return got

        messages = self.linger.collect(
            fetch, self.max_messages, lambda: pending.rows >= self.flush_rows
        ).messages
        if not messages:
            self._commit_what_is_landed([])
            return 0
        # Paced from batch close to batch close: the rows a batch holds came while the
        # previous one was landed, so timing from after the insert would read a slow
        # insert as a fast stream.
        self.linger.linger_s = self.pacing.after_batch(pending.rows)
        by_topic: dict[str, dict[int, list[Message]]] = {}
        for message in messages:
            partitions = by_topic.setdefault(message.topic(), {})
            partitions.setdefault(message.partition(), []).append(message)
        for topic, groups in by_topic.items():
            self._land(topic, groups, pending)
        self._commit_what_is_landed(
            [
                TopicPartition(topic, partition, _highest(group) + 1)
                for topic, groups in by_topic.items()
                for partition, group in groups.items()
            ]
        )
        self.summary.messages += len(messages)
        self.summary.batches += 1
        self.metrics.records_in.labels("publish").inc(len(messages))
        return len(messages)

    def _fresh(self, message: Message) -> bool:
        """Whether the warehouse does not hold this message yet (never decoded twice:
        an undecodable one already reported is not reported again)."""
        return message.offset() > self._landed.get((message.topic(), message.partition()), -1)

    def _decoded(self, message: Message, pending: _Pending) -> list[dict[str, Any]]:
        """The records the message lands as (none when undecodable: reported, never
        landed), kept for its batch's insert; decoded as it arrives so the batch knows
        its rows."""
        codec = self.contracts.codec(message.topic())
        route = self.routes[message.topic()]
        try:
            records = members(codec, codec.decode(message.value()), whole=route.whole_batches)
            if route.check is not None:
                for record in records:
                    route.check(record)
        except (CiteplusError, ValueError) as exc:
            self.summary.undecodable += 1
            self.metrics.dead_letters.labels("publish", "undecodable").inc()
            log.warning(
                "undecodable record not landed",
                extra={"topic": message.topic(), "offset": message.offset(), "error": str(exc)},
            )
            if self._on_undecodable:
                self._on_undecodable(message, exc)
            records = []
        pending.records[(message.topic(), message.partition(), message.offset())] = records
        return records

    def _commit_what_is_landed(self, batch: list[TopicPartition]) -> None:
        """Commit a batch's offsets, with those of what the warehouse already held at
        assignment on the partitions the batch did not touch (after a crash between
        insert and commit, or a replay that moved the group back): the group's
        committed offsets then say where the sink reads, for the brokers' lag and
        `citeplus status`, even when nothing new arrives. One commit per cycle, made
        after the cycle's fetch has served any new assignment, so an older offset
        never follows a newer one; only partitions still assigned."""
        ahead, self._ahead_of_commits = self._ahead_of_commits, []
        if ahead:
            held = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            touched = {(tp.topic, tp.partition) for tp in batch}
            ahead = [
                tp
                for tp in ahead
                if (tp.topic, tp.partition) in held and (tp.topic, tp.partition) not in touched
            ]
        if batch:
            self._commit_offsets(batch + ahead)
            return
        if not ahead:
            return
        try:
            self._commit_offsets(ahead)
        except KafkaException as exc:  # the next batch's commit covers them
            log.warning("commit of already landed offsets failed", extra={"error": str(exc)})

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        """Only now, with the batch in the warehouse, may Kafka forget it."""
        self.consumer.commit(offsets=offsets, asynchronous=False)

    def _land(self, topic: str, groups: dict[int, list[Message]], pending: _Pending) -> None:
        """One insert of every partition's fresh records of ``topic`` (those past what
        the warehouse already holds), then the route's follow-up."""
        landed: list[Landed] = []
        ranges: list[str] = []
        for partition, group in sorted(groups.items()):
            already = self._landed.get((topic, partition), -1)
            # Once each, in order: a partition sought back mid-batch is read twice.
            unique = sorted({m.offset(): m for m in group}.values(), key=lambda m: m.offset())
            fresh = [m for m in unique if m.offset() > already]
            self.summary.skipped_already_landed += len(unique) - len(fresh)
            if not fresh:
                continue
            ranges.append(f"{partition}:{fresh[0].offset()}-{fresh[-1].offset()}")
            for message in fresh:
                key = (topic, partition, message.offset())
                if key not in pending.records:  # fresh again after a mid-batch reassignment
                    self._decoded(message, pending)
                landed += [Landed(r, topic, partition, key[2]) for r in pending.records[key]]
        route = self.routes[topic]
        table = route.rows(landed) if landed else None
        if table is not None and table.num_rows:  # (a batch message may hold no member)
            # The same batch retried as is (an insert whose answer was lost) counts once.
            token = f"{topic}:{','.join(ranges)}"
            self.warehouse.insert_arrow(route.table, table, dedup_token=token)
            if route.after_insert is not None:
                route.after_insert(self.warehouse, landed)
            self.summary.rows += table.num_rows
            self.summary.inserts += 1
            self.summary.rows_by_table[route.table] = (
                self.summary.rows_by_table.get(route.table, 0) + table.num_rows
            )
            self.metrics.readings_out.labels("publish").inc(table.num_rows)
        for partition, group in groups.items():
            previous = self._landed.get((topic, partition), -1)
            self._landed[(topic, partition)] = max(previous, _highest(group))

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            self.metrics.errors.labels("publish", "consume").inc()
            log.warning("consume error", extra={"error": str(error)})
        return True


def _place(message: Message) -> tuple[str, int, int]:
    return (message.topic(), message.partition(), message.offset())


def _highest(group: list[Message]) -> int:
    """The highest offset of a partition's messages: after a seek-back mid-batch the
    last to arrive is not the furthest (committing it would land the rest twice)."""
    return max(m.offset() for m in group)


def members(
    codec: TopicCodec, value: dict[str, Any], *, whole: bool = False
) -> list[dict[str, Any]]:
    """The records a message lands as: itself, or the members of a v2 batch, each a row
    (or rows) exactly as its v1 record would be. They share the message's offset and
    land in one insert, so the insert's token (topic, partition, offset range) and the
    resume point (the highest landed offset) hold for a batch as for a record; a batch
    whose counts do not add up is undecodable (ValueError). ``whole``: a batch stays
    one record (its route reads the columns), checked as its members would be."""
    found = codec.batching
    if found is None:
        return [value]
    if whole:
        found.check(value)
        return [value]
    return found.explode(value)
