"""Per-key state of a stage that survives restarts: an in-memory map whose changes
are written to a compacted changelog topic inside the stage's transaction.

Because the changelog records commit together with the outputs and the consumer
offsets, a restarted (or moved) stage restores exactly the state that matches
the offsets it resumes from. Writes of an aborted batch are discarded, so the
re-processed batch sees the state as it was before it.

A key's changes go to the changelog partition of the same number as the input
partition that carried them; on assignment a stage restores only those.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.runtime.changelog_deltas import (
    JSON_TEXT,
    Cycle,
    DeltaKeys,
    Step,
    delta_texts,
    is_delta,
    plan_step,
    read_delta,
    restored_cycle,
)
from services.runtime.config import NodeConfig
from services.runtime.errors import RejectedInput
from services.runtime.kafka import MAX_MESSAGE_BYTES, consumer_settings
from services.runtime.stage import Emit, StageStore

_DELETED = object()
_ABSENT = object()
# A delta's text under three quarters of the broker's limit (the record around it,
# and a value's non-ASCII characters escaped or not, stay well inside the rest).
DELTA_BUDGET = MAX_MESSAGE_BYTES * 3 // 4


class ChangelogStore(StageStore):
    """A JSON-valued key-value store with transactional writes (a stage declares it in
    its ``stores``: the runtime restores, commits and rolls it back, and produces its
    changelog records at the end of each batch and tick, :meth:`changelog_emits`).

    ``deltas``: a batch's changes of a partition go in delta records
    (services/runtime/changelog_deltas.py), a few records per batch instead of one
    per key. Without: one record per changed key, whose deletion compaction makes
    final at once (anonymise's sub-daily personal data keeps that).

    A stage may keep a *memo* beside a value (:meth:`put`, :meth:`memo`): an opaque
    object of its own, such as the encoded text of the value's parts, that lets it
    encode the next value cheaply. The store commits, aborts, rolls back and forgets a
    memo with its value, so a memo always belongs to the value :meth:`get` returns
    and never outlives a write that did not commit; a restore leaves none.
    """

    @property
    def changelog(self) -> ChangelogStore:  # type: ignore[override]
        return self

    def __init__(
        self,
        name: str,
        topic: str,
        *,
        deltas: bool = False,
        message_budget: int = DELTA_BUDGET,
        clock: Callable[[], float] = time.time,
        text_of: Callable[[Any, Any], str] | None = None,
    ):
        self.name = name
        self.topic = topic
        self.deltas = deltas
        # A committed value's text for a delta's rewrite, from the value and its memo
        # (a stage whose memo makes the text cheap says how; json's otherwise).
        self.text_of = text_of or _json_text
        self.message_budget = message_budget
        self.clock = clock
        self._committed: dict[str, Any] = {}
        self._partition_of: dict[str, int] = {}
        self._pending: dict[str, Any] = {}
        self._pending_partition: dict[str, int] = {}
        self._pending_text: dict[str, str] = {}
        self._memos: dict[str, Any] = {}
        self._pending_memos: dict[str, Any] = {}
        self._record_journal: list[tuple[str, Any, int | None, Any, str | None]] = []
        self._cycles: dict[int, Cycle] = {}
        self._steps: list[Step] = []
        self._keyed: set[str] = set()  # keys whose own (per-key) record holds a value
        self._restoring: dict[int, dict[str, tuple[list[str], float]]] = {}
        self._delta_keys = DeltaKeys()

    # -- one input record -----------------------------------------------------------
    def begin_record(self) -> None:
        """Start a savepoint: a record that is then rejected leaves no state behind."""
        self._record_journal.clear()

    def rollback_record(self) -> None:
        """Undo the writes made since :meth:`begin_record`."""
        for key, previous, partition, memo, text in reversed(self._record_journal):
            if previous is _ABSENT:
                self._pending.pop(key, None)
                self._pending_partition.pop(key, None)
            else:
                self._pending[key] = previous
                self._pending_partition[key] = partition  # type: ignore[assignment]
            _set_memo(self._pending_memos, key, memo)
            _set_memo(self._pending_text, key, text)
        self._record_journal.clear()

    def _remember(self, key: str) -> None:
        if key.startswith("\x00"):
            raise ValueError(f"a state key may not start with NUL: {key!r}")
        self._record_journal.append(
            (
                key,
                self._pending.get(key, _ABSENT),
                self._pending_partition.get(key),
                self._pending_memos.get(key),
                self._pending_text.get(key),
            )
        )

    # -- reads and writes during a batch ------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        if key in self._pending:
            value = self._pending[key]
            return default if value is _DELETED else value
        return self._committed.get(key, default)

    def memo(self, key: str) -> Any:
        """The memo :meth:`put` kept beside the value :meth:`get` returns (None: none)."""
        if key in self._pending:
            return self._pending_memos.get(key)
        return self._memos.get(key)

    def put(
        self, key: str, value: Any, partition: int, text: str | None = None, memo: Any = None
    ) -> None:
        """Stage a new value; its changelog record goes with the batch's end.

        ``text``: the value's changelog text when the stage encoded it itself (it must
        be what ``json.JSONEncoder(separators=(",", ":")).encode(value)`` gives, as
        must the store's ``text_of``: the restore reads it with ``json.loads``, and a
        compacted topic keeps older texts); ``memo``: kept beside the value (see the
        class). A text longer than a changelog record carries refuses the record."""
        if text is not None and len(text) > self.message_budget:
            raise RejectedInput(
                "too-large",
                f"its state for {key!r} would be {len(text):,} characters, more than a "
                f"changelog record carries ({self.message_budget:,}); the source must send "
                "fewer values per entity",
            )
        self._remember(key)
        self._pending[key] = value
        self._pending_partition[key] = partition
        _set_memo(self._pending_memos, key, memo)
        _set_memo(self._pending_text, key, text)

    def delete(self, key: str, partition: int) -> None:
        self._remember(key)
        self._pending[key] = _DELETED
        self._pending_partition[key] = partition
        self._pending_memos.pop(key, None)
        self._pending_text.pop(key, None)

    # -- the batch's changelog records --------------------------------------------
    def changelog_emits(self) -> list[Emit]:
        """The changelog records of the batch's changes (the runner produces them in
        the batch's transaction; also at a tick, when a cycle is due)."""
        if not self.deltas:
            return [
                self._tombstone(key, p)
                if value is _DELETED
                else self._record(key, self._text(key, value), p)
                for key, value in self._pending.items()
                for p in (self._pending_partition[key],)
            ]
        now = self.clock()
        self._steps = []
        by_partition: dict[int, list[str]] = {}
        for key, partition in self._pending_partition.items():
            by_partition.setdefault(partition, []).append(key)
        due = [p for p, cycle in self._cycles.items() if p not in by_partition and cycle.due(now)]
        emits: list[Emit] = []
        for partition in sorted([*by_partition, *due]):
            emits += self._partition_emits(partition, by_partition.get(partition, []), now)
        return emits

    def _partition_emits(self, partition: int, changed: list[str], now: float) -> list[Emit]:
        cycle = self._cycles.get(partition) or Cycle(started=now, previous_fresh=False)
        step, rewrites = plan_step(
            cycle,
            partition,
            len(changed),
            set(changed),
            lambda key: self._rewrite_text(key, partition),
            now,
        )
        puts: list[tuple[str, str]] = []
        deletes: list[str] = []
        emits: list[Emit] = []
        for key in changed:
            value = self._pending[key]
            if value is _DELETED:
                deletes.append(key)
                if key in self._keyed:  # its own record would bring it back
                    emits.append(self._tombstone(key, partition))
            else:
                puts.append((key, self._text(key, value)))
        step.set_keys += [key for key, _ in puts]
        for text in delta_texts(puts + rewrites, deletes, self.message_budget):
            record_key = self._delta_keys.next(partition)
            step.deltas.append(record_key)
            emits.append(self._record(record_key, text, partition))
        emits += [self._tombstone(record_key, partition) for record_key in step.tombstones]
        if emits:
            self._steps.append(step)
        else:  # nothing to commit: the cycle moves on whatever the transaction does
            self._cycles[partition] = step.apply(cycle, now)
        return emits

    def _text(self, key: str, value: Any) -> str:
        text = self._pending_text.get(key)
        return JSON_TEXT.encode(value) if text is None else text

    def _rewrite_text(self, key: str, partition: int) -> str | None:
        """The committed value's text (this batch's changes of the partition carry
        their keys themselves); None: absent, or not this partition's any more."""
        if self._partition_of.get(key) != partition:
            return None
        value = self._committed.get(key, _ABSENT)
        return None if value is _ABSENT else self.text_of(value, self._memos.get(key))

    def _record(self, record_key: str, text: str | None, partition: int) -> Emit:
        record = {
            "store": self.name,
            "key": record_key,
            "value": text,
            "updated_at": int(self.clock() * 1_000_000),
        }
        return Emit(
            self.topic, f"{self.name}|{record_key}", record, readings=0, partition=partition
        )

    def _tombstone(self, record_key: str, partition: int) -> Emit:
        """A Kafka tombstone (null value): compaction removes the key's records (a
        delta carried forward, or a deleted key's own records), then, once the topic's
        delete.retention.ms passed, the tombstone and the key with it."""
        return Emit(self.topic, f"{self.name}|{record_key}", None, readings=0, partition=partition)

    # -- transaction outcome ----------------------------------------------------------
    def commit(self) -> None:
        for key, value in self._pending.items():
            if value is _DELETED:
                self._committed.pop(key, None)
                self._partition_of.pop(key, None)
                if self.deltas:
                    self._keyed.discard(key)
            else:
                self._committed[key] = value
                self._partition_of[key] = self._pending_partition[key]
            _set_memo(self._memos, key, self._pending_memos.get(key))
        now = self.clock()
        for step in self._steps:
            cycle = self._cycles.get(step.partition) or Cycle(started=now, previous_fresh=False)
            self._cycles[step.partition] = step.apply(cycle, now)
        self.abort()

    def abort(self) -> None:
        self._pending.clear()
        self._pending_partition.clear()
        self._pending_memos.clear()
        self._pending_text.clear()
        self._record_journal.clear()
        self._steps = []

    # -- assignment -----------------------------------------------------------------
    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the keys of partitions this instance no longer owns."""
        gone = set(partitions)
        for key in [k for k, p in self._partition_of.items() if p in gone]:
            self._committed.pop(key, None)
            self._partition_of.pop(key, None)
            self._memos.pop(key, None)
            self._keyed.discard(key)
        for partition in gone:
            self._cycles.pop(partition, None)
            self._restoring.pop(partition, None)

    def apply(self, record: dict[str, Any], partition: int) -> None:
        """Apply one changelog record while restoring."""
        if record["store"] != self.name:
            return
        key = record["key"]
        if is_delta(key):
            self._apply_delta(record, partition)
            return
        self._memos.pop(key, None)
        if record["value"] is None:
            self._committed.pop(key, None)
            self._partition_of.pop(key, None)
            self._keyed.discard(key)
        else:
            self._committed[key] = json.loads(record["value"])
            self._partition_of[key] = partition
            self._keyed.add(key)

    def _apply_delta(self, record: dict[str, Any], partition: int) -> None:
        record_key, text = record["key"], record["value"]
        if text is None:
            return
        puts, deletes = read_delta(text)
        for key, value in puts.items():
            self._committed[key] = value
            self._partition_of[key] = partition
            self._memos.pop(key, None)
        for key in deletes:
            self._committed.pop(key, None)
            self._partition_of.pop(key, None)
            self._memos.pop(key, None)
        written = record.get("updated_at") or 0
        self._restoring.setdefault(partition, {})[record_key] = (list(puts), written / 1e6)

    def apply_tombstone(self, record_key: str, partition: int) -> None:
        """A delta that was carried forward (or a key deleted by a null value)."""
        if is_delta(record_key):
            self._restoring.get(partition, {}).pop(record_key, None)
            return
        self._committed.pop(record_key, None)
        self._partition_of.pop(record_key, None)
        self._memos.pop(record_key, None)
        self._keyed.discard(record_key)

    def finish_restore(self, partitions: Iterable[int]) -> None:
        """The restored partitions' deltas still on the topic: carried forward and
        tombstoned by the next cycle (changelog_deltas.py), which is as old as the
        oldest of them (owners that change more often than a cycle's age must not
        keep a cycle from ever ending)."""
        now = self.clock()
        for partition in partitions:
            deltas = self._restoring.pop(partition, {})
            self._cycles[partition] = restored_cycle(deltas.items(), now)

    def live_keys(self) -> list[str]:
        """Every live key, as :meth:`get` sees it during the batch (stages that expire
        state by key, such as energy-analytics' days, need to list them)."""
        live = {k for k, v in self._pending.items() if v is not _DELETED}
        deleted = {k for k, v in self._pending.items() if v is _DELETED}
        return [k for k in self._committed if k not in deleted and k not in live] + sorted(live)

    def __len__(self) -> int:
        return len(self._committed)


def _json_text(value: Any, memo: Any) -> str:
    """A value's changelog text, without a stage's memo."""
    return JSON_TEXT.encode(value)


def _set_memo(memos: dict[str, Any], key: str, memo: Any) -> None:
    """Keep ``memo`` for ``key``, or none (a key without a memo holds no entry)."""
    if memo is None:
        memos.pop(key, None)
    else:
        memos[key] = memo


class BatchState(StageStore):
    """A batch's state changes over a :class:`ChangelogStore`, written once per key
    when the batch ends: a key touched by 500 records of a batch (energy-analytics'
    day of a city) is one changelog record, not 500.

    ``begin_record``/``rollback_record`` undo one rejected record's changes.
    """

    def __init__(self, store: ChangelogStore):
        self.store = store
        self.changes: dict[str, tuple[Any, int]] = {}
        self._journal: list[tuple[str, Any]] = []

    def get(self, key: str) -> Any:
        """The value as the batch sees it (None when absent or deleted)."""
        if key in self.changes:
            value = self.changes[key][0]
            return None if value is _DELETED else value
        return self.store.get(key)

    def set(self, key: str, value: Any, partition: int) -> None:
        self._journal.append((key, self.changes.get(key, _ABSENT)))
        self.changes[key] = (value, partition)

    def delete(self, key: str, partition: int) -> None:
        self.set(key, _DELETED, partition)

    def begin_record(self) -> None:
        self._journal.clear()

    def rollback_record(self) -> None:
        for key, previous in reversed(self._journal):
            if previous is _ABSENT:
                self.changes.pop(key, None)
            else:
                self.changes[key] = previous
        self._journal.clear()

    def flush(self) -> None:
        """Stage the batch's changes in the store (its changelog records go with the
        batch's end)."""
        for key, (value, partition) in self.changes.items():
            if value is _DELETED:
                self.store.delete(key, partition)
            else:
                self.store.put(key, value, partition)
        self.clear()

    def clear(self) -> None:
        self.changes.clear()
        self._journal.clear()

    def abort(self) -> None:
        self.clear()


def restore(
    node: NodeConfig,
    stores: list[ChangelogStore],
    partitions: Iterable[int],
    decode: Any,
    timeout_s: float = 60.0,
) -> int:
    """Replay the committed changelog of ``partitions`` into ``stores``; returns records read.

    Reads ``read_committed`` up to the end of each partition (the partition-EOF
    event comes at the last stable offset, past transaction markers).
    """
    by_topic: dict[str, list[ChangelogStore]] = {}
    for store in stores:
        by_topic.setdefault(store.topic, []).append(store)
    wanted = sorted(set(partitions))
    read = 0
    for topic, topic_stores in by_topic.items():
        if not wanted:
            continue
        consumer = Consumer(
            consumer_settings(
                node,
                group_id=f"citeplus.restore.{uuid.uuid4().hex}",
                **{"enable.partition.eof": True},
            )
        )
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
            remaining = set(wanted)
            deadline = time.monotonic() + timeout_s
            while remaining and time.monotonic() < deadline:
                for message in consumer.consume(1000, 0.5):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(message.partition())
                        continue
                    _replay(topic_stores, message, decode)
                    read += 1
            if remaining:
                raise TimeoutError(f"restoring {topic} partitions {sorted(remaining)} timed out")
        finally:
            consumer.close()
    for store in stores:
        store.finish_restore(wanted)
    return read


def _replay(stores: list[ChangelogStore], message: Any, decode: Any) -> None:
    """One changelog message into the stores it belongs to; a null value (a delta
    carried forward, or a key's tombstone) names its store in its key."""
    value = message.value()
    if value is not None:
        record = decode(value)
        for store in stores:
            store.apply(record, message.partition())
        return
    key = message.key()
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key or "")
    name, _, record_key = text.partition("|")
    for store in stores:
        if store.name == name:
            store.apply_tombstone(record_key, message.partition())
