"""The stage contract: what a service provides to the runner, and the state it declares.

A stage is a name, its input topics, a transform and the stores it keeps. Everything
that must happen around the transform for exactly once (a savepoint per record, the
state writes committed or dropped with the batch's transaction, state restored for
the partitions this instance gains and dropped for those it loses, counts that count
only what committed) is written once, here and in :class:`StageRunner`
(``services/runtime/processor.py``), never forwarded by hand by each stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from services.runtime.errors import ConfigError
from services.runtime.source_headers import Headers

if TYPE_CHECKING:
    from prometheus_client import Counter

    from services.runtime.state import ChangelogStore


@dataclass(frozen=True)
class Emit:
    """One record a transform wants produced."""

    topic: str
    key: str | bytes | None
    value: dict[str, Any] | None  # None: a Kafka tombstone (a state changelog's)
    readings: int = 1
    partition: int | None = None  # None: by key (state changelogs pin their partition)
    # True: ``value`` is already a v2 batch (RawBatch, AnonymisedBatch, ObservationBatch)
    # produced as it is, to ``partition``. False on a batch topic: ``value`` is one
    # v1-shaped member that the runner implodes with the transaction's other members.
    batched: bool = False
    # Kafka headers of the message (services/runtime/source_headers.py): what a reader
    # may pass over a message by, undecoded; never what it is sent anywhere by.
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class InputMeta:
    """Where a consumed record came from, for dead letters and lineage."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    # A member of a batch message: the key of that message (``key`` is the member's
    # own, its entity's); None for a record that came alone.
    batch_key: bytes | None = None


class StageStore:
    """State a stage declares in ``stores``; the runtime drives its life.

    Every hook defaults to nothing: a store overrides what it keeps. Per record:
    ``begin_record`` (a savepoint) then, if the record went to the dead letters,
    ``rollback_record``. Per batch: ``commit`` once the transaction committed,
    ``abort`` when it did not (the batch is processed again from the state as it was).
    Per assignment: the runner replays ``changelog`` (when the store has one) for the
    partitions gained, then calls ``restored``; ``forget`` drops the partitions lost.
    """

    changelog: ChangelogStore | None = None

    def begin_record(self) -> None:
        return None

    def rollback_record(self) -> None:
        return None

    def commit(self) -> None:
        return None

    def abort(self) -> None:
        return None

    def restored(self, partitions: list[int]) -> None:
        return None

    def forget(self, partitions: list[int]) -> None:
        return None

    def changelog_emits(self) -> list[Emit]:
        """The store's changelog records of the batch (or tick) about to commit."""
        return []


class Tally(StageStore):
    """Counts that count only what committed: a batch's counts are pending until its
    transaction commits (an aborted batch is counted again when it is processed
    again, so counting it before would count it twice), a record's counts are undone
    when it goes to the dead letters.

    ``counter`` (a Prometheus counter with one label) gets the committed counts, under
    ``label`` when given (one series, such as the service's name) or under each
    count's own name (a reason, a topic).
    """

    def __init__(self, counter: Counter | None = None, *, label: str | None = None):
        self.counter = counter
        self.label = label
        self.totals: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        self._record: dict[str, int] = {}

    def add(self, name: str, count: int = 1) -> None:
        """Count ``count`` under ``name`` for the record being processed."""
        if count:
            self._record[name] = self._record.get(name, 0) + count

    def begin_record(self) -> None:
        self._settle_record()

    def rollback_record(self) -> None:
        self._record.clear()

    def commit(self) -> None:
        self._settle_record()
        for name, count in self.pending.items():
            self.totals[name] = self.totals.get(name, 0) + count
            if self.counter is not None:
                self.counter.labels(self.label if self.label is not None else name).inc(count)
        self.pending.clear()

    def abort(self) -> None:
        self._record.clear()
        self.pending.clear()

    def total(self, name: str) -> int:
        """What committed under ``name`` since the process started."""
        return self.totals.get(name, 0)

    def batch(self, name: str) -> int:
        """What the open batch counted so far under ``name`` (not committed yet)."""
        return self.pending.get(name, 0) + self._record.get(name, 0)

    def _settle_record(self) -> None:
        for name, count in self._record.items():
            self.pending[name] = self.pending.get(name, 0) + count
        self._record.clear()


class Stage(Protocol):
    """What a service provides: a name, its inputs, its stores and a pure transform.

    ``process`` raises :class:`RejectedInput` for input it cannot handle; the
    runner turns that into a dead letter. ``redact`` and ``redact_key`` return the
    bytes and key a dead letter may carry; a stage whose input is personal data sets
    ``sensitive``: its dlq.v1 letters carry no original at all. :class:`BaseStage`
    gives every member a default.
    """

    name: str
    input_topics: Sequence[str]
    sensitive: bool
    co_partitioned: bool
    stores: Sequence[StageStore]

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]: ...

    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None: ...

    def passes_over(self, topic: str, headers: Headers | None) -> bool: ...

    def redact(self, original: bytes | None, record: dict[str, Any] | None) -> bytes | None: ...

    def redact_key(self, key: bytes | None, record: dict[str, Any] | None) -> bytes | None: ...

    def end_batch(self) -> Iterable[Emit]: ...

    def on_tick(self) -> Iterable[Emit]: ...

    def on_assign(self, partitions: list[int]) -> None: ...

    def on_revoke(self, partitions: list[int]) -> None: ...

    def on_commit(self) -> None: ...

    def on_abort(self) -> None: ...

    def on_record_failed(self) -> None: ...


class BaseStage:
    """Every member of :class:`Stage`, with its declared stores driven for it.

    A stateful stage lists its stores in ``stores`` and writes ``transform``; it
    forwards no hook: ``process`` opens each store's record savepoint before the
    transform, ``on_record_failed`` rolls them back, ``on_commit``/``on_abort`` commit
    or drop the batch's writes, ``on_assign`` (after the runner replayed the stores'
    changelogs) and ``on_revoke`` follow the partitions. A stateless stage may
    override ``process`` itself.
    """

    name: str = "stage"
    input_topics: Sequence[str] = ()
    stores: Sequence[StageStore] = ()
    # A stage that needs partition n of every input (and of its changelogs) on one
    # worker sets this: the runner pins the range assignor and checks each assignment
    # (services/runtime/copartition.py).
    co_partitioned: bool = False

    # A stage whose input holds personal data in clear (anonymise, reading raw.v1)
    # sets this: each reject then goes whole, with its full error, to the restricted
    # raw dead-letter topic, and dlq.v1 and the logs get a redacted letter (no
    # original, a pseudonymised key, no library text that may quote a value).
    sensitive: bool = False

    def process(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        """Open every store's savepoint, then transform (a rejected record undoes only
        its own writes)."""
        for store in self.stores:
            store.begin_record()
        return self.transform(record, meta)

    def passes_over(self, topic: str, headers: Headers | None) -> bool:
        """Whether a message of ``topic`` has nothing for this stage, known from its
        headers alone: the runner then neither decodes nor processes it (its offset
        commits with the batch). Only ever True where decoding it would give no output
        and no state change: a header may make a stage do less, never more."""
        return False

    def process_batch(self, batch: dict[str, Any], meta: InputMeta) -> list[Emit] | None:
        """The outputs of a whole v2 batch message at once (a columnar fast path), or
        None when the stage has none.

        The runner has opened every store's savepoint before the call. None, or an
        exception, makes the runner undo the batch's state writes and send each member
        of the exploded batch through :meth:`process` with its own savepoint (a bad
        member becomes its own dead letter), so a fast path must give exactly what the
        per-record path gives, or raise and let it decide."""
        return None

    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        raise NotImplementedError(f"{type(self).__name__} must define transform or process")

    def redact(self, original: bytes | None, record: dict[str, Any] | None) -> bytes | None:
        return original

    def redact_key(self, key: bytes | None, record: dict[str, Any] | None) -> bytes | None:
        """The key a dead letter may carry (the input key may name a person's meter)."""
        return key

    def on_assign(self, partitions: list[int]) -> None:
        """The runner restored the stores' changelogs of ``partitions``: rebuild indexes."""
        for store in self.stores:
            store.restored(partitions)

    def on_revoke(self, partitions: list[int]) -> None:
        for store in self.stores:
            store.forget(partitions)

    def on_commit(self) -> None:
        for store in self.stores:
            store.commit()

    def on_abort(self) -> None:
        for store in self.stores:
            store.abort()

    def on_record_failed(self) -> None:
        """The record just processed went to the dead letters: undo its state writes."""
        for store in reversed(self.stores):
            store.rollback_record()

    def end_batch(self) -> Iterable[Emit]:
        """Records that summarise the batch (audit counts), committed with it."""
        return ()

    def on_tick(self) -> Iterable[Emit]:
        """Records due because time passed, not because input came (a window or a
        coarsened day closed by the wall clock for a source that went quiet);
        committed in a transaction of their own. Called about once a second, with or
        without input: keep it cheap. Nothing is produced, and no transaction
        opened, when this returns nothing."""
        return ()


def changelogs(stage: Stage) -> list[ChangelogStore]:
    """The changelog-backed stores the runner restores for ``stage``."""
    return [store.changelog for store in stage.stores if store.changelog is not None]


def check_one_writer(stage: Stage) -> None:
    """Refuse (ConfigError) a stage whose delta changelog could have two writers.

    A delta store carries forward and tombstones every delta of its partitions
    (services/runtime/changelog_deltas.py): sound only when one worker writes a
    changelog partition. With several inputs, partition n of each could go to a
    different worker, both writing changelog partition n, unless the stage is
    co-partitioned (the range assignor pinned, each assignment checked)."""
    if stage.co_partitioned or len(stage.input_topics) < 2:
        return
    for store in changelogs(stage):
        if store.deltas:
            raise ConfigError(
                f"stage {stage.name} keeps {store.name!r} as deltas on {store.topic} and "
                f"reads {len(stage.input_topics)} topics without being co-partitioned: "
                "two workers could write one changelog partition. Set co_partitioned, "
                "or keep the store one record per key (deltas=False)"
            )
