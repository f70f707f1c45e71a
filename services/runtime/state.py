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
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.runtime.config import NodeConfig
from services.runtime.kafka import consumer_settings
from services.runtime.stage import Emit, StageStore

_DELETED = object()
_ABSENT = object()
# json.dumps(value, separators=(",", ":")) builds this encoder at every call: one per
# process gives the same text (one value per key and batch: its build showed up).
_JSON = json.JSONEncoder(separators=(",", ":"))


class ChangelogStore(StageStore):
    """A JSON-valued key-value store with transactional writes (a stage declares it in
    its ``stores``: the runtime restores, commits and rolls it back).

    A stage may keep a *memo* beside a value (:meth:`put`, :meth:`memo`): an opaque
    object of its own, such as the encoded text of the value's parts, that lets it
    encode the next value cheaply. The store commits, aborts, rolls back and forgets a
    memo with its value, so a memo always belongs to the value :meth:`get` returns
    and never outlives a write that did not commit; a restore leaves none.
    """

    @property
    def changelog(self) -> ChangelogStore:  # type: ignore[override]
        return self

    def __init__(self, name: str, topic: str):
        self.name = name
        self.topic = topic
        self._committed: dict[str, Any] = {}
        self._partition_of: dict[str, int] = {}
        self._pending: dict[str, Any] = {}
        self._pending_partition: dict[str, int] = {}
        self._memos: dict[str, Any] = {}
        self._pending_memos: dict[str, Any] = {}
        self._record_journal: list[tuple[str, Any, int | None, Any]] = []

    # -- one input record -----------------------------------------------------------
    def begin_record(self) -> None:
        """Start a savepoint: a record that is then rejected leaves no state behind."""
        self._record_journal.clear()

    def rollback_record(self) -> None:
        """Undo the writes made since :meth:`begin_record`."""
        for key, previous, partition, memo in reversed(self._record_journal):
            if previous is _ABSENT:
                self._pending.pop(key, None)
                self._pending_partition.pop(key, None)
            else:
                self._pending[key] = previous
                self._pending_partition[key] = partition  # type: ignore[assignment]
            _set_memo(self._pending_memos, key, memo)
        self._record_journal.clear()

    def _remember(self, key: str) -> None:
        self._record_journal.append(
            (
                key,
                self._pending.get(key, _ABSENT),
                self._pending_partition.get(key),
                self._pending_memos.get(key),
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
    ) -> Emit:
        """Stage a new value; yield the returned Emit with the batch's outputs.

        ``text``: the value's changelog text when the stage encoded it itself (it must
        be what ``json.JSONEncoder(separators=(",", ":")).encode(value)`` gives: the
        restore reads it with ``json.loads``, and a compacted topic keeps older
        texts); ``memo``: kept beside the value (see the class)."""
        self._remember(key)
        self._pending[key] = value
        self._pending_partition[key] = partition
        _set_memo(self._pending_memos, key, memo)
        return self._emit(key, _JSON.encode(value) if text is None else text, partition)

    def delete(self, key: str, partition: int) -> Emit:
        self._remember(key)
        self._pending[key] = _DELETED
        self._pending_partition[key] = partition
        self._pending_memos.pop(key, None)
        return self._emit(key, None, partition)

    def _emit(self, key: str, value: str | None, partition: int) -> Emit:
        record = {
            "store": self.name,
            "key": key,
            "value": value,
            "updated_at": time.time_ns() // 1000,
        }
        return Emit(self.topic, f"{self.name}|{key}", record, readings=0, partition=partition)

    # -- transaction outcome ----------------------------------------------------------
    def commit(self) -> None:
        for key, value in self._pending.items():
            if value is _DELETED:
                self._committed.pop(key, None)
                self._partition_of.pop(key, None)
            else:
                self._committed[key] = value
                self._partition_of[key] = self._pending_partition[key]
            _set_memo(self._memos, key, self._pending_memos.get(key))
        self.abort()

    def abort(self) -> None:
        self._pending.clear()
        self._pending_partition.clear()
        self._pending_memos.clear()
        self._record_journal.clear()

    # -- assignment -----------------------------------------------------------------
    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the keys of partitions this instance no longer owns."""
        gone = set(partitions)
        for key in [k for k, p in self._partition_of.items() if p in gone]:
            self._committed.pop(key, None)
            self._partition_of.pop(key, None)
            self._memos.pop(key, None)

    def apply(self, record: dict[str, Any], partition: int) -> None:
        """Apply one changelog record while restoring."""
        if record["store"] != self.name:
            return
        key = record["key"]
        self._memos.pop(key, None)
        if record["value"] is None:
            self._committed.pop(key, None)
            self._partition_of.pop(key, None)
        else:
            self._committed[key] = json.loads(record["value"])
            self._partition_of[key] = partition

    def live_keys(self) -> list[str]:
        """Every live key, as :meth:`get` sees it during the batch (stages that expire
        state by key, such as energy-analytics' days, need to list them)."""
        live = {k for k, v in self._pending.items() if v is not _DELETED}
        deleted = {k for k, v in self._pending.items() if v is _DELETED}
        return [k for k in self._committed if k not in deleted and k not in live] + sorted(live)

    def __len__(self) -> int:
        return len(self._committed)


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

    def flush(self) -> list[Emit]:
        """The changelog records of the batch's changes, staged in the store."""
        emits = [
            self.store.delete(key, partition)
            if value is _DELETED
            else self.store.put(key, value, partition)
            for key, (value, partition) in self.changes.items()
        ]
        self.clear()
        return emits

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
                    record = decode(message.value())
                    for store in topic_stores:
                        store.apply(record, message.partition())
                    read += 1
            if remaining:
                raise TimeoutError(f"restoring {topic} partitions {sorted(remaining)} timed out")
        finally:
            consumer.close()
    return read
