"""The small values a runner's cycle passes between its steps for one input record.

Where a record came from (what its dead letter points at), its encoded outputs
(refused as bad input when one could not fit in a message) and what the cycle did
(applied to metrics only once it commits). Kept apart from the runner so that its
record path and its batch-message path (services/runtime/batch_messages.py) share
them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from confluent_kafka import Message

from services.runtime.errors import RejectedInput
from services.runtime.kafka import MAX_MESSAGE_BYTES
from services.runtime.stage import Emit, InputMeta


@dataclass
class BatchTally:
    """What one batch did; applied to metrics and summary only once it commits."""

    produced: int = 0
    dead: int = 0
    readings: int = 0
    passed_over: int = 0  # messages the stage had nothing to do with (their headers)
    by_topic: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Origin:
    """What a dead letter says it came from: the original bytes and key, the topic,
    partition and offset a replay or an operator finds it at, and the position text.

    ``original``: the bytes, or how to make them (a batch member's v1 form is encoded
    only when a dead letter needs it: encoding every member ahead, in case, cost a
    stage's record path more than its own work)."""

    original: bytes | Callable[[], bytes | None] | None
    key: bytes | None
    topic: str
    partition: int | None
    offset: int | None
    position: str

    @property
    def value(self) -> bytes | None:
        """The original bytes (made now when they are made on demand)."""
        return self.original() if callable(self.original) else self.original

    @classmethod
    def of(cls, message: Message, meta: InputMeta) -> Origin:
        return cls(
            message.value(),
            meta.key,
            meta.topic,
            meta.partition,
            meta.offset,
            f"partition {meta.partition} offset {meta.offset}",
        )


class Output(NamedTuple):
    """An emit and its bytes; for a batch topic, the bytes only checked it (a member)
    or are the batch itself (``Emit.batched``)."""

    emit: Emit
    value: bytes | None  # None: a tombstone
    to_batch_topic: bool = False


def check_sizes(outputs: Sequence[tuple[Emit, bytes] | Output]) -> None:
    """Refuse, as bad input, a record whose output could not fit in a message: sent,
    it would abort the batch's transaction again at every retry and stop the stage."""
    for emit, value, *_ in outputs:
        if value is not None and len(value) > MAX_MESSAGE_BYTES:
            raise RejectedInput(
                "too-large",
                f"its output for {emit.topic} would be {len(value):,} bytes, more than the "
                f"{MAX_MESSAGE_BYTES:,} a message may carry; the source must send fewer rows "
                "per entity in one batch",
            )
