"""How a runner processes one message of a v2 batch topic (many entities per message,
services/runtime/batches.py).

The message is checked as a whole first: arrays that do not agree were written wrongly
upstream and no member of it can be trusted. Then the stage's columnar
``process_batch`` may handle the whole batch at once (the fast path). When it has
none, or it raises, its state writes are undone and every member is exploded and goes
through the runner's own record path, each with its own savepoint and dead letter,
exactly as a v1 message would: one bad entity never costs the others of its batch.
Kept apart from the runner, which only orchestrates the cycle and its transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from services.runtime.batches import Batching
from services.runtime.codec import Contracts
from services.runtime.errors import RejectedInput, SchemaError
from services.runtime.outbox import member_key
from services.runtime.record_outcome import BatchTally, Origin, Output, check_sizes
from services.runtime.stage import Emit, InputMeta, Stage

# The runner's logger: this path is a step of its cycle, and operators' filters on the
# runner's lines (the ``logger`` field) keep finding it.
log = logging.getLogger("services.runtime.processor")


@dataclass(frozen=True)
class RecordSteps:
    """The runner's steps for one record that the batch path reuses, so that a member
    and a v1 record are encoded, produced, refused and dead-lettered by the same code.

    ``encode``: emits with their bytes; ``accept``: outputs produced (or kept for the
    outbox); ``reject``: a record's state writes undone and its dead letter sent;
    ``process_record``: one record through ``Stage.process``, accepted or rejected."""

    encode: Callable[[Iterable[Emit]], list[Output]]
    accept: Callable[[list[Output], BatchTally], None]
    reject: Callable[[BatchTally, Origin, InputMeta, dict[str, Any] | None, Exception], None]
    process_record: Callable[[BatchTally, dict[str, Any], InputMeta, Origin], None]


@dataclass(frozen=True)
class MemberPlace:
    """One member of a batch message: its v1 key, index, the batch's size and the
    v1 sibling topic of the batch's topic (None when none is declared)."""

    meta: InputMeta
    key: bytes
    index: int
    count: int
    sibling: str | None


class BatchMessages:
    """The batch-message path of one runner: its stage, contracts and record steps."""

    def __init__(self, stage: Stage, contracts: Contracts, steps: RecordSteps):
        self.stage = stage
        self.contracts = contracts
        self.steps = steps

    def process(
        self,
        tally: BatchTally,
        batch: dict[str, Any],
        meta: InputMeta,
        found: Batching,
        origin: Origin,
    ) -> None:
        """The stage's fast path for the whole batch; when it has none or it raises,
        its state writes are undone and every member goes through ``process``
        with its own savepoint, exactly as a v1 message would."""
        try:
            found.check(batch)
        except ValueError as exc:  # arrays that do not agree: the message as a whole
            self.steps.reject(tally, origin, meta, None, malformed_batch(exc))
            return
        for store in self.stage.stores:
            store.begin_record()
        outputs = self.fast_path(batch, meta)
        if outputs is not None:
            self.steps.accept(outputs, tally)
            return
        self.stage.on_record_failed()
        try:
            members = found.explode(batch)
        except Exception as exc:  # counts that do not add up: the message as a whole
            self.steps.reject(tally, origin, meta, None, exc)
            return
        sibling = self.contracts.member_topic(meta.topic)
        originals = Originals(self.contracts, meta.topic, origin.value, found)
        for index, member in enumerate(members):
            key = member_key(found.spec.member, member).encode()
            member_meta = member_input(meta, key)
            where = MemberPlace(meta, key, index, len(members), sibling)
            self.steps.process_record(tally, member, member_meta, member_origin(originals, where))

    def fast_path(self, batch: dict[str, Any], meta: InputMeta) -> list[Output] | None:
        """The outputs of ``process_batch``, encoded; None when it has none or failed
        (the per-record path then decides, member by member)."""
        try:
            emits = self.stage.process_batch(batch, meta)
            if emits is None:
                return None
            outputs = self.steps.encode(emits)
            check_sizes(outputs)
            return outputs
        except Exception as exc:
            log.warning(
                "batch fast path failed; processing its members one by one",
                extra={
                    "stage": self.stage.name,
                    "topic": meta.topic,
                    "partition": meta.partition,
                    "offset": meta.offset,
                    "error": type(exc).__name__,
                },
            )
            return None


def member_input(meta: InputMeta, key: bytes) -> InputMeta:
    """Where a member came from: its message's place, its own key and the message's.
    Built field by field: ``dataclasses.replace`` was 5% of energy-analytics' time on
    single readings (a member per reading)."""
    return InputMeta(meta.topic, meta.partition, meta.offset, key, meta.timestamp_ms, meta.key)


class Originals:
    """The v1 bytes of a batch message's members, made only when a member's dead letter
    asks for them, from the message's own bytes (never from the decoded members, which
    the stage may have changed while processing them), decoded once per message."""

    def __init__(self, contracts: Contracts, topic: str, message: bytes | None, found: Batching):
        self._contracts = contracts
        self._topic = topic
        self._message = message
        self._found = found
        self._members: list[dict[str, Any]] | None = None

    def v1(self, sibling: str | None, index: int) -> bytes | None:
        """Member ``index`` in its v1 form on ``sibling`` (None: no sibling, or a
        member that its v1 contract cannot carry)."""
        if sibling is None or self._message is None:
            return None
        if self._members is None:
            batch = self._contracts.codec(self._topic).decode(self._message)
            self._members = self._found.explode(batch)
        try:
            return self._contracts.codec(sibling).encode(self._members[index])
        except SchemaError:
            return None


def member_origin(originals: Originals, where: MemberPlace) -> Origin:
    """Where a member's dead letter points: its v1 form on the v1 sibling topic
    (what ``citeplus replay dead-letters`` re-injects), the batch message's place
    in the position text."""
    meta = where.meta
    return Origin(
        original=lambda: originals.v1(where.sibling, where.index),
        key=where.key,
        topic=where.sibling or meta.topic,
        partition=None if where.sibling else meta.partition,
        offset=None if where.sibling else meta.offset,
        position=f"{meta.topic} partition {meta.partition} offset {meta.offset}, "
        f"member {where.index + 1} of {where.count}",
    )


def malformed_batch(error: ValueError) -> RejectedInput:
    """The dead-letter reason of a batch whose arrays do not agree (names and counts
    only in the text: no value of the batch)."""
    return RejectedInput(
        "malformed-batch",
        f"a v2 batch whose arrays do not agree ({error}); it was written wrongly upstream",
    )
