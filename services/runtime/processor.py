"""The exactly-once consume → decode → transform → encode → produce loop.

Written once here so that a service is only its transform and its settings
(docs/style.md). Each batch is one Kafka transaction: the outputs, the dead letters
and the consumer offsets commit together or not at all, so a process killed at
any instant and restarted neither loses nor duplicates a record for a
``read_committed`` reader.

A message of a v2 batch topic (many entities per message, services/runtime/batches.py)
goes through its own path (services/runtime/batch_messages.py): the stage's columnar
``process_batch`` when it has one, else member by member through this runner's record
path, each with its own savepoint and dead letter; outputs to a batch topic are
imploded when the transaction ends (services/runtime/outbox.py). The runner itself
orchestrates: the cycle, its transaction, its commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from services.runtime import dlq
from services.runtime.batch_messages import BatchMessages, RecordSteps
from services.runtime.bounded import bounded
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.copartition import CoPartitionError, check_co_partitioned, group_settings
from services.runtime.errors import CiteplusError, RejectedInput, SchemaError, WireFormatError
from services.runtime.kafka import make_consumer, make_producer, produce_bytes
from services.runtime.linger import Linger
from services.runtime.metrics import ServiceMetrics
from services.runtime.outbox import Outbox
from services.runtime.record_outcome import BatchTally as _BatchTally
from services.runtime.record_outcome import Origin as _Origin
from services.runtime.record_outcome import Output as _Output
from services.runtime.record_outcome import check_sizes as _check_sizes
from services.runtime.stage import (
    BaseStage,
    Emit,
    InputMeta,
    Stage,
    StageStore,
    Tally,
    changelogs,
    check_one_writer,
)
from services.runtime.state import restore

__all__ = [
    "REASONS",
    "BaseStage",
    "Emit",
    "InputMeta",
    "RunSummary",
    "Stage",
    "StageRunner",
    "StageStore",
    "Tally",
    "reason_of",
]

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0
COMMIT_ATTEMPT_S = 10.0  # one try of a transaction commit (retried up to the transaction timeout)
SEND_OFFSETS_S = 15.0  # the input offsets into a transaction (bounded from outside: see bounded.py)
TICK_S = 1.0  # how often an idle stage is asked for time-driven output (on_tick)
# A group join can take seconds on a loaded broker ("coordinator load in progress"):
# an idle exit counts from the first assignment, and waits at least this long for it.
FIRST_ASSIGNMENT_WAIT_S = 60.0

# Why a record goes to the dead letters, by what it raised: the first kind that
# matches gives the reason (None: the stage's own, ``RejectedInput.reason``). The last
# row catches a bug: it must not stop the node nor lose the record.
REASONS: tuple[tuple[type[Exception], str | None], ...] = (
    (RejectedInput, None),
    (WireFormatError, "undecodable"),
    (SchemaError, "unencodable-output"),
    (CiteplusError, "rejected"),
    (Exception, "stage-error"),
)


def reason_of(error: Exception) -> str:
    """The dead-letter reason of ``error`` (see :data:`REASONS`)."""
    for kind, reason in REASONS:
        if isinstance(error, kind):
            return error.reason if isinstance(error, RejectedInput) else str(reason)
    return "stage-error"


def idle_exit_due(
    now: float, idle_since: float, started: float, assigned_at: float | None, idle_s: float
) -> bool:
    """Whether a runner asked to stop after ``idle_s`` without input may stop now.

    Before the group has assigned anything the runner cannot have seen input, so it
    waits for the assignment (``FIRST_ASSIGNMENT_WAIT_S`` at least)."""
    if assigned_at is None:
        return now - started >= max(idle_s, FIRST_ASSIGNMENT_WAIT_S)
    return now - max(idle_since, assigned_at) >= idle_s


@dataclass
class RunSummary:
    batches: int = 0
    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    aborted: int = 0
    passed_over: int = 0  # consumed undecoded: nothing for the stage (their headers)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


class StageRunner:
    """Runs one stage against Kafka with transactions, dead letters and metrics."""

    def __init__(
        self,
        stage: Stage,
        node: NodeConfig,
        contracts: Contracts,
        *,
        instance: str = "0",
        metrics: ServiceMetrics | None = None,
        consumer: Consumer | None = None,
        producer: Producer | None = None,
        dead_letter_topic: str = dlq.DLQ_TOPIC,
        raw_dead_letter_topic: str | None = None,
    ):
        check_one_writer(stage)
        self.stage = stage
        self.dead_letter_topic = dead_letter_topic
        # Restricted, like raw.v1: written only by stages whose input is personal.
        self.raw_dead_letter_topic = raw_dead_letter_topic or dlq.raw_topic_beside(
            dead_letter_topic
        )
        self.raw_zone = stage.sensitive
        self.node = node
        self.contracts = contracts
        self.metrics = metrics or ServiceMetrics(stage.name)
        self.batch_size = node.processing.batch_size
        self.batch_timeout = node.processing.batch_timeout_s
        # A batch closes when full or linger_ms after its first message (short cycles).
        self.linger = Linger(node.processing.linger_ms / 1000, self.batch_timeout)
        # One id per worker, the same across its restarts: the transactional id fences
        # the worker's own zombie when it restarts, the client id names it in the group.
        worker_id = f"citeplus.{node.node.id}.{stage.name}.{instance}"
        self.co_partitioned = stage.co_partitioned
        self.consumer = consumer or make_consumer(
            node,
            group_id=f"citeplus.{stage.name}",
            **group_settings(node, co_partitioned=self.co_partitioned, client_id=worker_id),
        )
        self.producer = producer or make_producer(
            node, transactional_id=worker_id, **{"client.id": worker_id}
        )
        self.summary = RunSummary()
        self._outbox = Outbox()
        self._batch_messages = BatchMessages(
            stage,
            contracts,
            RecordSteps(
                encode=self._encode_outputs,
                accept=self._accept,
                reject=self._reject,
                process_record=self._process_record,
            ),
        )
        self._moves = 0  # assignments and revocations seen: a cycle spanning one is stale
        self._ticked = 0.0
        self._assigned_at: float | None = None
        self._lag_refreshed = 0.0
        self._started = False

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Fence earlier instances of the same transactional id and subscribe."""
        if self._started:
            return
        letters = [self.dead_letter_topic] + ([self.raw_dead_letter_topic] if self.raw_zone else [])
        for topic in [*self.stage.input_topics, *letters]:
            self.contracts.codec(topic)  # fail at start, not on the first message
        self.producer.init_transactions(30)
        self.consumer.subscribe(
            list(self.stage.input_topics), on_assign=self._assigned, on_revoke=self._revoked
        )
        self._started = True
        self.metrics.ready = True
        log.info(
            "stage started",
            extra={"stage": self.stage.name, "inputs": list(self.stage.input_topics)},
        )

    def close(self) -> None:
        """Leave the group cleanly; nothing half-done is ever committed."""
        self.metrics.ready = False
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        idle_exit_s: float | None = None,
        max_batches: int | None = None,
    ) -> RunSummary:
        """Process batches until ``stop`` is set, ``idle_exit_s`` passes without
        input, or ``max_batches`` batches have committed.

        Idle time counts from the first partition assignment: input waiting on a topic
        is not "no input" just because the group join was slow."""
        self.start()
        stop = stop or threading.Event()
        idle_since = time.monotonic()
        started = idle_since
        try:
            while not stop.is_set():
                if max_batches is not None and self.summary.batches >= max_batches:
                    break
                self.metrics.mark_progress()
                processed = self.run_once()
                now = time.monotonic()
                if now - self._ticked >= TICK_S:
                    self._ticked = now
                    self.tick()
                if processed:
                    idle_since = now
                elif idle_exit_s is not None and idle_exit_due(
                    now, idle_since, started, self._assigned_at, idle_exit_s
                ):
                    break
        finally:
            self.close()
        return self.summary

    # -- one batch -----------------------------------------------------------
    def run_once(self) -> int:
        """Consume one batch and commit it in one transaction; returns messages consumed."""
        fetch = _CycleFetch(self)
        messages = self.linger.collect(fetch, self.batch_size).messages
        if fetch.stale:
            # The group moved after this cycle had gathered messages (a cycle is several
            # fetches): those belong to the old assignment and are fetched again from the
            # committed offsets, so keeping them would process them twice (here, or on
            # the worker that took their partition). Drop the cycle, start again there.
            log.info("group rebalanced during a cycle; reading again from the commits")
            self.rewind()
            return 0
        self._refresh_lag()
        good = [m for m in messages if not self._is_error(m)]
        if not good:
            return 0
        started = time.perf_counter()
        self.producer.begin_transaction()
        self._outbox.clear()
        try:
            tally = self._process_batch(good)
            self._produce_batch_end(tally)
            self._flush_outbox(tally)
            self._send_offsets(self._next_offsets(good))
            self._commit()
        except KafkaException as exc:
            self._abort(exc)
            return len(good)
        self.stage.on_commit()
        self._count(len(good), tally, time.perf_counter() - started)
        return len(good)

    def _count(self, consumed: int, tally: _BatchTally, seconds: float) -> None:
        name = self.stage.name
        self.metrics.batch_seconds.labels(name).observe(seconds)
        self.metrics.records_in.labels(name).inc(consumed)
        self.metrics.readings_out.labels(name).inc(tally.readings)
        for topic, count in tally.by_topic.items():
            self.metrics.records_out.labels(name, topic).inc(count)
        for reason, count in tally.reasons.items():
            self.metrics.dead_letters.labels(name, reason).inc(count)
            self.summary.dead_letter_reasons[reason] = (
                self.summary.dead_letter_reasons.get(reason, 0) + count
            )
        self.summary.batches += 1
        self.summary.records_in += consumed
        self.summary.records_out += tally.produced
        self.summary.dead_letters += tally.dead
        self.summary.passed_over += tally.passed_over

    def _process_batch(self, messages: list[Message]) -> _BatchTally:
        """Every record of the batch: its outputs produced, or its dead letter. A
        message of a v2 batch topic goes through the stage's fast path, or member by
        member (services/runtime/batch_messages.py)."""
        tally = _BatchTally()
        for message in messages:
            meta = InputMeta(
                message.topic(),
                message.partition(),
                message.offset(),
                message.key(),
                message.timestamp()[1],
            )
            if self.stage.passes_over(meta.topic, message.headers()):
                tally.passed_over += 1
                continue
            self._outbox.reading((meta.topic, meta.partition))
            origin = _Origin.of(message, meta)
            try:
                record = self.contracts.codec(meta.topic).decode(message.value())
            except Exception as exc:
                self._reject(tally, origin, meta, None, exc)
                continue
            found = self.contracts.batching(meta.topic)
            if found is None:
                self._process_record(tally, record, meta, origin)
            else:
                self._batch_messages.process(tally, record, meta, found, origin)
        self._outbox.reading(None)  # the batch's end: from no input message
        return tally

    def _process_record(
        self, tally: _BatchTally, record: dict[str, Any], meta: InputMeta, origin: _Origin
    ) -> None:
        """One v1 record (or one member of a batch): its outputs, or its dead letter."""
        try:
            outputs = self._encode_outputs(self.stage.process(record, meta))
            _check_sizes(outputs)
        except Exception as exc:
            self._reject(tally, origin, meta, record, exc)
            return
        self._accept(outputs, tally)

    def _encode_outputs(self, emits: Iterable[Emit]) -> list[_Output]:
        """Each emit with its bytes; a member for a batch topic is encoded alone (as its
        v1 record) only to check it, so that a member that cannot be produced is
        rejected with its own record instead of failing the transaction's batch."""
        outputs = []
        for emit in emits:
            codec = self.contracts.codec(emit.topic)
            found = codec.batching
            if emit.value is None:  # a tombstone
                outputs.append(_Output(emit, None, False))
                continue
            if found is None or emit.batched:
                outputs.append(_Output(emit, codec.encode(emit.value), found is not None))
                continue
            sibling = self.contracts.member_topic(emit.topic)
            if sibling is not None:
                value = self.contracts.codec(sibling).encode(emit.value)
            else:
                value = codec.encode(found.implode([emit.value])[0])
            outputs.append(_Output(emit, value, True))
        return outputs

    def _accept(self, outputs: list[_Output], tally: _BatchTally, *, counted: bool = True) -> None:
        """Produce single-record outputs now; batch-topic outputs wait in the outbox.
        ``counted``: a record's outputs (not a batch's end nor a tick's), counted as
        produced records and readings."""
        for output in outputs:
            emit = output.emit
            if output.to_batch_topic:
                if emit.batched:
                    self._outbox.add_batch(emit, output.value)
                else:
                    partitions = self.contracts.codec(emit.topic).spec.partitions
                    self._outbox.add_member(emit, partitions)
                continue
            self._send(emit, output.value, tally)
            if not counted:
                continue
            tally.readings += emit.readings
            tally.produced += 1
            if emit.topic == self.dead_letter_topic:  # a letter for part of a record
                reason = emit.value.get("reason") or "rejected"
                tally.reasons[reason] = tally.reasons.get(reason, 0) + 1
                tally.dead += 1

    def _flush_outbox(self, tally: _BatchTally) -> None:
        """The batch messages of the transaction's batch-topic outputs, produced."""
        if not self._outbox:
            return
        for produced in self._outbox.drain(
            lambda topic: self.contracts.codec(topic).batching,  # type: ignore[arg-type,return-value]
            lambda topic: self.contracts.codec(topic).encode,
        ):
            self._send(produced.emit, produced.value, tally)
            tally.readings += produced.emit.readings
            tally.produced += 1

    def _reject(
        self,
        tally: _BatchTally,
        origin: _Origin,
        meta: InputMeta,
        record: dict[str, Any] | None,
        error: Exception,
    ) -> None:
        """Undo the record's state writes and send its dead letter (reason: :data:`REASONS`)."""
        reason = reason_of(error)
        if reason == "stage-error":
            if self.raw_zone:  # a traceback's text may quote a value: where, not what
                log.warning(
                    "transform failed",
                    extra={"stage": self.stage.name, "error": type(error).__name__},
                )
            else:
                log.exception("transform failed", extra={"stage": self.stage.name})
        self.stage.on_record_failed()
        self._dead_letter(tally, origin, meta, record, reason, error)
        tally.dead += 1

    def tick(self) -> int:
        """Ask the stage for time-driven records (``on_tick``) and commit them in one
        transaction; returns how many were produced."""
        emits = list(self.stage.on_tick())
        emits += self._changelog_emits()  # the tick's changes, or a changelog cycle due
        if not emits:
            return 0
        tally = _BatchTally()
        self._outbox.clear()
        self.producer.begin_transaction()
        try:
            self._produce(emits, tally)
            self._flush_outbox(tally)
            self._fence_tick()
            self._commit()
        except KafkaException as exc:
            self._abort(exc)
            return 0
        self.stage.on_commit()
        for topic, count in tally.by_topic.items():
            self.metrics.records_out.labels(self.stage.name, topic).inc(count)
        sent = sum(tally.by_topic.values())
        self.summary.records_out += sent
        return sent

    def _fence_tick(self) -> None:
        """A tick's transaction carries the group's current positions, as a batch's
        carries its offsets: the coordinator then refuses it from a worker that has
        left the group (a batch past max.poll.interval.ms; told only at its next
        poll), whose tick would otherwise write state after the new owner's. The
        positions are where the last batch committed, so nothing moves."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        positions = [tp for tp in self.consumer.position(assignment) if tp.offset >= 0]
        if positions:
            self._send_offsets(positions)

    def _produce_batch_end(self, tally: _BatchTally) -> None:
        self._produce([*self.stage.end_batch(), *self._changelog_emits()], tally)

    def _changelog_emits(self) -> list[Emit]:
        """The stores' changelog records of the transaction (after the stage's end of
        batch or tick, which may still write state)."""
        return [emit for store in changelogs(self.stage) for emit in store.changelog_emits()]

    def _produce(self, emits: Iterable[Emit], tally: _BatchTally) -> None:
        """Outputs that are no record's (a batch's end, a tick): produced, or for batch
        topics kept in the outbox with the others."""
        self._accept(self._encode_outputs(emits), tally, counted=False)

    def _send(self, emit: Emit, value: bytes, tally: _BatchTally) -> None:
        """Produce one encoded output in the open transaction, counted by topic."""
        place: dict[str, Any] = {}  # by key, unless pinned (state changelogs)
        if emit.partition is not None:
            place["partition"] = emit.partition
        if emit.headers:
            place["headers"] = emit.headers
        produce_bytes(self.producer, emit.topic, emit.key, value, **place)
        tally.by_topic[emit.topic] = tally.by_topic.get(emit.topic, 0) + 1

    def _dead_letter(
        self,
        tally: _BatchTally,
        origin: _Origin,
        meta: InputMeta,
        record: dict[str, Any] | None,
        reason: str,
        error: Exception,
    ) -> None:
        text = str(error) if reason != "stage-error" else f"{type(error).__name__}: {error}"
        if self.raw_zone:
            self._raw_zone_letters(tally, origin, meta, record, reason, error, text)
            return
        key = self.stage.redact_key(origin.key, record)
        city = record.get("city") if isinstance(record, dict) else None
        source = record.get("source") if isinstance(record, dict) else None
        letter = dlq.dead_letter(
            stage=self.stage.name,
            reason=reason,
            message=text,
            original_value=self.stage.redact(origin.value, record),
            original_key=key,
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            city=city if isinstance(city, str) else None,
            source=source if isinstance(source, str) else None,
        )
        letter["position"] = origin.position
        self._send_letter(tally, meta, reason, letter, detail=text)

    def _raw_zone_letters(
        self,
        tally: _BatchTally,
        origin: _Origin,
        meta: InputMeta,
        record: dict[str, Any] | None,
        reason: str,
        error: Exception,
        text: str,
    ) -> None:
        """The reject whole on the raw dead-letter topic, its redacted letter on dlq.v1.

        Only a stage's own :class:`RejectedInput` text reaches dlq.v1 (a stage that
        sets ``sensitive`` words those without values); a library's text (Avro,
        a bug's exception) may quote a value and goes to the raw letter only.
        """
        own = isinstance(error, RejectedInput)
        summary = text if own else f"{type(error).__name__} (details in the raw dead letter)"
        city = record.get("city") if isinstance(record, dict) else None
        source = record.get("source") if isinstance(record, dict) else None
        raw_letters, letter = dlq.split(
            dlq.Reject(
                stage=self.stage.name,
                reason=reason,
                message=summary,
                detail=text,
                original=origin.value,
                original_key=origin.key,
                redacted_key=self.stage.redact_key(origin.key, record),
                city=city if isinstance(city, str) else None,
                source=source if isinstance(source, str) else None,
                position=origin.position,
                source_topic=origin.topic,
                source_partition=origin.partition,
                source_offset=origin.offset,
            ),
            raw_topic=self.raw_dead_letter_topic,
        )
        raw_codec = self.contracts.codec(self.raw_dead_letter_topic)
        for raw_letter in raw_letters:
            produce_bytes(
                self.producer,
                self.raw_dead_letter_topic,
                dlq.raw_dead_letter_key(
                    raw_letter["city"], raw_letter["source"], raw_letter["letter_id"]
                ),
                raw_codec.encode(raw_letter),
            )
        self._send_letter(
            tally, meta, reason, letter, detail=letter["message"], letter_id=letter["letter_id"]
        )

    def _send_letter(
        self,
        tally: _BatchTally,
        meta: InputMeta,
        reason: str,
        letter: dict[str, Any],
        *,
        detail: str,
        letter_id: str | None = None,
    ) -> None:
        """The letter on dlq.v1, counted and logged (the log says no more than the letter)."""
        produce_bytes(
            self.producer,
            self.dead_letter_topic,
            dlq.dead_letter_key(self.stage.name, letter["city"]),
            self.contracts.codec(self.dead_letter_topic).encode(letter),
        )
        tally.reasons[reason] = tally.reasons.get(reason, 0) + 1
        extra = {
            "stage": self.stage.name,
            "reason": reason,
            "topic": meta.topic,
            "partition": meta.partition,
            "offset": meta.offset,
            "detail": detail[:300],
        }
        if letter_id is not None:
            extra["letter_id"] = letter_id
        log.warning("dead letter", extra=extra)

    # -- transactions ------------------------------------------------------------
    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        """The batch's input offsets into its transaction, bounded from outside: the
        client's own timeout is not kept when the group coordinator moves."""
        group = self.consumer.consumer_group_metadata()
        bounded(
            lambda: self.producer.send_offsets_to_transaction(offsets, group, SEND_OFFSETS_S),
            SEND_OFFSETS_S,
            "send_offsets_to_transaction",
        )

    def _commit(self) -> None:
        commit_within(
            self.producer.commit_transaction,
            self.node.processing.transaction_timeout_ms / 1000,
            self.stage.name,
        )
        self.metrics.transactions.labels(self.stage.name, "committed").inc()

    def _abort(self, exc: KafkaException) -> None:
        """Abort the open transaction and rewind, so the batch is processed again."""
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.fatal():
            self.metrics.errors.labels(self.stage.name, "fatal").inc()
            log.error("fatal Kafka error; the process must restart", extra={"error": str(exc)})
            raise exc
        self.metrics.errors.labels(self.stage.name, "aborted").inc()
        self.metrics.transactions.labels(self.stage.name, "aborted").inc()
        self.summary.aborted += 1
        log.warning("batch aborted; it will be processed again", extra={"error": str(exc)})
        self.producer.abort_transaction(60)
        self._outbox.clear()  # members of the aborted batch are produced again with it
        self.stage.on_abort()
        self.rewind()

    def rewind(self) -> None:
        """Seek every assigned partition back to its last committed offset."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        for tp in self.consumer.committed(assignment, timeout=30):
            if tp.offset < 0:
                tp = TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
            self.consumer.seek(tp)

    # -- partitions --------------------------------------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        self._assigned_at = time.monotonic()
        self._moves += 1
        log.info("partitions assigned", extra={"stage": self.stage.name, "partitions": numbers})
        if self.co_partitioned:
            self._check_co_partitioned(consumer, partitions)
        self._restore(numbers)
        self.stage.on_assign(numbers)

    def _check_co_partitioned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Stop (the error leaves ``consume``) on an assignment that splits partition
        numbers of the inputs, or topics whose partition counts differ."""
        topics = [*self.stage.input_topics, *(store.topic for store in changelogs(self.stage))]
        metadata = consumer.list_topics(timeout=30).topics
        counts = {
            topic: len(metadata[topic].partitions) if topic in metadata else None
            for topic in topics
        }
        try:
            check_co_partitioned(
                [(tp.topic, tp.partition) for tp in partitions], counts, self.stage.input_topics
            )
        except CoPartitionError:
            self.metrics.ready = False
            log.error("co-partitioning does not hold", extra={"stage": self.stage.name})
            raise

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._moves += 1
        self._forget_lag(partitions)
        self.stage.on_revoke(sorted({tp.partition for tp in partitions}))

    def _forget_lag(self, partitions: list[TopicPartition]) -> None:
        """Drop the lag series of partitions this worker no longer reads: left behind,
        a partition handed over with input left to read kept showing that lag here
        forever (the worker that took it reports its own), so the node never looked
        caught up after a rebalance."""
        for tp in partitions:
            self.metrics.consumer_lag.remove(self.stage.name, tp.topic, str(tp.partition))

    def _restore(self, partitions: list[int]) -> None:
        """Replay the committed changelogs of the stage's stores for ``partitions``: the
        state that matches the offsets the group resumes from."""
        stores = changelogs(self.stage)
        if not stores or not partitions:
            return
        started = time.monotonic()
        by_topic: dict[str, list[Any]] = {}
        for store in stores:
            by_topic.setdefault(store.topic, []).append(store)
        read = sum(
            restore(self.node, group, partitions, self.contracts.codec(topic).decode)
            for topic, group in by_topic.items()
        )
        log.info(
            "state restored",
            extra={
                "stage": self.stage.name,
                "partitions": partitions,
                "records": read,
                "keys": sum(len(store) for store in stores),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    # -- helpers -------------------------------------------------------------
    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            self.metrics.errors.labels(self.stage.name, "consume").inc()
            log.warning("consume error", extra={"error": str(error)})
        return True

    @staticmethod
    def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
        highest: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic(), m.partition())
            highest[key] = max(highest.get(key, -1), m.offset())
        return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_refreshed < LAG_REFRESH_S:
            return
        self._lag_refreshed = now
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                # Cached: the high watermark each fetch response carries; no broker round trip.
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue
                lag = max(0, high - tp.offset) if tp.offset >= 0 else high
                self.metrics.consumer_lag.labels(self.stage.name, tp.topic, str(tp.partition)).set(
                    lag
                )
        except KafkaException as exc:
            log.debug("lag refresh failed", extra={"error": str(exc)})


class _CycleFetch:
    """The fetch of one cycle, noting a rebalance served by a fetch after messages were
    already gathered (one served by the cycle's first fetch comes before what that
    fetch returns: the cycle is sound, as it was with one fetch per cycle)."""

    def __init__(self, runner: StageRunner):
        self.runner = runner
        self.gathered = 0
        self.stale = False

    def __call__(self, at_most: int, timeout_s: float) -> list[Message]:
        before = self.runner._moves
        got = self.runner.consumer.consume(at_most, timeout_s)
        if self.runner._moves != before and self.gathered:
            self.stale = True
        self.gathered += len(got)
        return got


def commit_within(commit: Callable[[float], None], budget_s: float, stage: str) -> None:
    """Commit the open transaction, retrying what the client says is retriable, for at
    most ``budget_s`` (the transaction timeout): past it the coordinator has aborted
    the transaction anyway, and a producer still failing then is wedged (seen after a
    broker roll restart: both workers of a stage retried for ten minutes while holding
    their partitions, and the node never caught up). The error is then fatal: the
    process exits, the supervisor restarts it and its new producer fences the old
    transaction; the batch is read again from the committed offsets (they commit in
    the same transaction), so nothing is lost or doubled."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            commit(min(COMMIT_ATTEMPT_S, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            if time.monotonic() >= deadline:
                raise KafkaException(
                    KafkaError(
                        KafkaError._TIMED_OUT,
                        f"the transaction did not commit within the transaction timeout "
                        f"({budget_s:g} s): {exc}; the process restarts with a new producer",
                        fatal=True,
                    )
                ) from exc
            log.warning(
                "transaction commit failed; retrying", extra={"stage": stage, "error": str(exc)}
            )
            time.sleep(0.2)
