"""A transaction's outputs to v2 batch topics, imploded into batch messages at its end.

A stage's per-record path emits one v1-shaped member per entity (an Observation for
observations.v2); producing each as its own message would keep paying the per-message
cost the batch contracts remove. The runner collects them here, in the order they were
emitted, and when the transaction ends turns them into as few batch messages as it can:

* one partition per message: a member goes to ``entity_partition(key, partitions)``,
  so every member of one message shares it, one entity's data stays on one partition
  (the partition its v1 record would have had) and in order;
* members that share the batch's shared fields implode together, but a member never
  joins a batch that comes before one already holding its entity's earlier member:
  each entity's order survives the grouping;
* a batch whose encoding would pass ``MAX_MESSAGE_BYTES`` is cut in halves, in order;
* an already-built batch (``Emit.batched``) keeps its place among the members;
* then the lane's batches of one kind are joined into as few messages as fit
  (services/runtime/batch_merge.py): a stage's fast path writes per input message,
  and a re-keying stage would otherwise send each partition a small piece of each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.runtime.batch_merge import Piece, Produced, joined
from services.runtime.batches import Batching, entity_partition
from services.runtime.kafka import MAX_MESSAGE_BYTES
from services.runtime.stage import Emit

__all__ = ["Outbox", "Produced", "member_key", "member_partition"]

Encode = Callable[[dict[str, Any]], bytes]


def member_key(member: str, record: dict[str, Any]) -> str:
    """The v1 key of a member record (what its v1 topic is keyed by): raw records by
    ``city|source|entity_id``, later records by ``city|entity_pseudonym``."""
    if member == "RawRecord":
        return f"{record['city']}|{record['source']}|{record['entity_id']}"
    return f"{record['city']}|{record['entity_pseudonym']}"


def member_partition(emit: Emit, partitions: int) -> int:
    """The partition of a member emit: its own when it pins one, else its key's."""
    if emit.partition is not None:
        return emit.partition
    return entity_partition(emit.key if emit.key is not None else b"", partitions)


@dataclass
class _Lane:
    """What goes to one partition of one batch topic, in emit order: member emits and
    ready batches (with their bytes)."""

    items: list[tuple[Any, Emit | Produced]] = field(default_factory=list)  # (input, item)


class Outbox:
    """Collects a transaction's emits to batch topics; :meth:`drain` gives the messages."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES):
        self.limit = limit
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._input: Any = None

    def reading(self, source: tuple[str, int] | None) -> None:
        """The input partition, ``(topic, partition)``, whose message the next emits
        come from; None for what no input gave (a batch's end, a tick). Joining keeps
        each input partition's order (services/runtime/batch_merge.py)."""
        self._input = source

    def add_member(self, emit: Emit, partitions: int) -> None:
        """A v1-shaped member for a batch topic (already checked to encode)."""
        lane = (emit.topic, member_partition(emit, partitions))
        self._lanes.setdefault(lane, _Lane()).items.append((self._input, emit))

    def add_batch(self, emit: Emit, value: bytes) -> None:
        """A ready batch (``Emit.batched``) and its bytes, kept in order with members."""
        if emit.partition is None:
            raise ValueError(f"a batched emit to {emit.topic} must name its partition")
        lane = (emit.topic, emit.partition)
        self._lanes.setdefault(lane, _Lane()).items.append((self._input, Produced(emit, value)))

    def __bool__(self) -> bool:
        return any(lane.items for lane in self._lanes.values())

    def clear(self) -> None:
        self._lanes.clear()
        self._input = None

    def drain(
        self, batching_of: Callable[[str], Batching], encoder_of: Callable[[str], Encode]
    ) -> list[Produced]:
        """Every batch message, lane by lane, in emit order within a lane; empties the
        outbox."""
        out: list[Produced] = []
        for (topic, partition), lane in self._lanes.items():
            built: list[Piece] = []
            run: list[tuple[Any, Emit]] = []
            for source, item in lane.items:
                if isinstance(item, Produced):
                    built += self._imploded(run, topic, partition, batching_of, encoder_of)
                    run = []
                    built.append(Piece(item, frozenset((source,))))
                else:
                    run.append((source, item))
            built += self._imploded(run, topic, partition, batching_of, encoder_of)
            out += joined(built, batching_of(topic), encoder_of(topic), self.limit)
        self.clear()
        return out

    def _imploded(
        self,
        run: list[tuple[Any, Emit]],
        topic: str,
        partition: int,
        batching_of: Callable[[str], Batching],
        encoder_of: Callable[[str], Encode],
    ) -> list[Piece]:
        """The batches of a run of members (with the input each came from), each
        marked with the inputs of its group."""
        if not run:
            return []
        found = batching_of(topic)
        encode = encoder_of(topic)
        out: list[Piece] = []
        for group, inputs in ordered_groups(run, found):
            batches = self._fitting(group, topic, partition, found, encode)
            out += [Piece(batch, inputs) for batch in batches]
        return out

    def _fitting(
        self, group: list[Emit], topic: str, partition: int, found: Batching, encode: Encode
    ) -> list[Produced]:
        """One message for ``group``, or its halves (recursively) when too large."""
        batch = found.batch_of([e.value for e in group])
        value = encode(batch)
        if len(value) > self.limit and len(group) > 1:
            half = len(group) // 2
            return self._fitting(group[:half], topic, partition, found, encode) + self._fitting(
                group[half:], topic, partition, found, encode
            )
        readings = sum(e.readings for e in group)
        emit = Emit(topic, None, batch, readings=readings, partition=partition, batched=True)
        return [Produced(emit, value)]


def ordered_groups(
    run: list[tuple[Any, Emit]], found: Batching
) -> list[tuple[list[Emit], frozenset[Any]]]:
    """``run`` (members with the input partition each came from) in groups of equal
    :meth:`Batching.group_key`, each with the inputs of its members, as few as keeps
    every entity's order and every input partition's: a member joins the newest group
    of its key unless its entity or its input already has a member in a later group
    (then it opens a new group). The input's order is what energy-analytics'
    watermark reads on the partition it comes from."""
    groups: list[list[Emit]] = []
    inputs: list[set[Any]] = []
    newest: dict[tuple, int] = {}  # group key -> index of its newest group
    last: dict[tuple, int] = {}  # ("entity", key) or ("input", source) -> its last group
    for source, emit in run:
        key = found.group_key(emit.value)
        marks = (("entity", emit.key), ("input", source))
        index = newest.get(key)
        if index is None or any(last.get(mark, -1) > index for mark in marks):
            index = len(groups)
            groups.append([])
            inputs.append(set())
            newest[key] = index
        groups[index].append(emit)
        inputs[index].add(source)
        for mark in marks:
            last[mark] = index
    return [(group, frozenset(own)) for group, own in zip(groups, inputs, strict=True)]
