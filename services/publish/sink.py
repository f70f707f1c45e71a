"""The ClickHouse sink: consume → land → commit offsets, idempotently.

Offsets are committed to Kafka only after ClickHouse has the batch. A crash
between the two must not duplicate rows, so every row carries its Kafka
coordinates: on (re)assignment the sink asks the warehouse for the highest
offset it already holds per partition and resumes after it, and each insert
carries a deduplication token (topic, partition, offset range) so that an
insert retried as is counts once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from services.publish.rows import Landed
from services.runtime.codec import Contracts, TopicCodec
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import make_consumer
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


@dataclass
class SinkSummary:
    messages: int = 0
    rows: int = 0
    batches: int = 0
    skipped_already_landed: int = 0
    undecodable: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)


class WarehouseSink:
    def __init__(
        self,
        node: NodeConfig,
        contracts: Contracts,
        warehouse: Warehouse,
        routes: Sequence[SinkRoute],
        *,
        group_id: str = "citeplus.publish.sink",
        max_messages: int = 5000,
        max_wait_s: float = 1.0,
        metrics: ServiceMetrics | None = None,
        on_undecodable: Callable[[Message, Exception], None] | None = None,
    ):
        self.node = node
        self.contracts = contracts
        self.warehouse = warehouse
        self.routes = {route.topic: route for route in routes}
        self.max_messages = max_messages
        self.max_wait_s = max_wait_s
        self.metrics = metrics or ServiceMetrics("publish")
        self.consumer: Consumer = make_consumer(node, group_id=group_id)
        self.summary = SinkSummary()
        self._landed: dict[tuple[str, int], int] = {}
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
        starts = []
        for tp in partitions:
            start = committed.get((tp.topic, tp.partition), -1001)
            resume = landed.get((tp.topic, tp.partition))
            if resume is not None and (start < 0 or start <= resume):
                start = resume + 1  # the crash came after the insert, before the commit
            starts.append(TopicPartition(tp.topic, tp.partition, start))
        consumer.assign(starts)
        log.info(
            "sink assigned",
            extra={"partitions": [f"{t.topic}[{t.partition}]@{t.offset}" for t in starts]},
        )

    def start(self) -> None:
        self.consumer.subscribe(list(self.routes), on_assign=self._assigned)
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
        """One batch: gather up to the size/time bounds, land it, then commit."""
        deadline = time.monotonic() + self.max_wait_s
        messages: list[Message] = []
        while len(messages) < self.max_messages and time.monotonic() < deadline:
            batch = self.consumer.consume(self.max_messages - len(messages), 0.2)
            messages += [m for m in batch if not self._is_error(m)]
            if not batch and messages:
                break
        if not messages:
            return 0
        by_partition: dict[tuple[str, int], list[Message]] = {}
        for message in messages:
            by_partition.setdefault((message.topic(), message.partition()), []).append(message)
        commits = []
        for (topic, partition), group in by_partition.items():
            self._land(topic, partition, group)
            commits.append(TopicPartition(topic, partition, group[-1].offset() + 1))
        self._commit_offsets(commits)
        self.summary.messages += len(messages)
        self.summary.batches += 1
        self.metrics.records_in.labels("publish").inc(len(messages))
        return len(messages)

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        """Only now, with the batch in the warehouse, may Kafka forget it."""
        self.consumer.commit(offsets=offsets, asynchronous=False)

    def _land(self, topic: str, partition: int, group: list[Message]) -> None:
        already = self._landed.get((topic, partition), -1)
        fresh = [m for m in group if m.offset() > already]
        self.summary.skipped_already_landed += len(group) - len(fresh)
        if not fresh:
            return
        codec = self.contracts.codec(topic)
        landed: list[Landed] = []
        for message in fresh:
            try:
                records = members(codec, codec.decode(message.value()))
                landed += [Landed(r, topic, partition, message.offset()) for r in records]
            except (CiteplusError, ValueError) as exc:
                self.summary.undecodable += 1
                self.metrics.dead_letters.labels("publish", "undecodable").inc()
                log.warning(
                    "undecodable record not landed",
                    extra={"topic": topic, "offset": message.offset(), "error": str(exc)},
                )
                if self._on_undecodable:
                    self._on_undecodable(message, exc)
        route = self.routes[topic]
        if landed:
            table = route.rows(landed)
            token = f"{topic}:{partition}:{fresh[0].offset()}-{fresh[-1].offset()}"
            self.warehouse.insert_arrow(route.table, table, dedup_token=token)
            if route.after_insert is not None:
                route.after_insert(self.warehouse, landed)
            self.summary.rows += table.num_rows
            self.summary.rows_by_table[route.table] = (
                self.summary.rows_by_table.get(route.table, 0) + table.num_rows
            )
            self.metrics.readings_out.labels("publish").inc(table.num_rows)
        self._landed[(topic, partition)] = fresh[-1].offset()

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            self.metrics.errors.labels("publish", "consume").inc()
            log.warning("consume error", extra={"error": str(error)})
        return True


def members(codec: TopicCodec, value: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a message lands as: itself, or the members of a v2 batch, each a row
    (or rows) exactly as its v1 record would be. They share the message's offset and
    land in one insert, so the insert's token (topic, partition, offset range) and the
    resume point (the highest landed offset) hold for a batch as for a record; a batch
    whose counts do not add up is undecodable (ValueError)."""
    found = codec.batching
    return [value] if found is None else found.explode(value)
