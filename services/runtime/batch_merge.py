"""Batch messages of one transaction joined, column by column, before they are produced.

A stage's fast path writes its batches per input message. When a stage re-keys (anonymise
by pseudonym, energy-analytics by group), one input message of a few hundred members is
spread over every output partition: a request of 1,000 single readings left ingest as 6
messages of about 167 members and left anonymise as 36 of about 28, and every later stage
paid its per-message costs (decode, savepoint, numpy calls, encode, a broker write) every
28 readings. The transaction holds the other input messages of the same request, whose
outputs go to the same partitions: joined, they make messages as large as ingest's again.

Joining never changes what a reader gets, only how many messages carry it:

* only batches of one topic, partition, message key and headers, and of one
  :meth:`Batching.group_key` (the fields every member shares, the column signature) join;
* a batch joins the newest run of its kind unless one of its entities has a member in a
  later message of the lane: each entity's order survives, as in ``ordered_groups``;
* ``explode`` of the joined batch is the members of its parts, in order (unit-tested);
* a joined batch whose bytes would pass the limit is cut in halves, in order, down to the
  parts as they came.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.runtime.batches import COLUMNS, COUNTS, DICTIONARY, ROW_COUNT, Batching
from services.runtime.stage import Emit

__all__ = ["Produced", "concat_batches", "joined"]

Encode = Callable[[dict[str, Any]], bytes]
_KINDS = ("strings", "doubles", "longs", "booleans")


@dataclass(frozen=True)
class Produced:
    """One batch message ready to produce: the emit (value a batch) and its bytes."""

    emit: Emit
    value: bytes


def concat_batches(found: Batching, batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One batch carrying the members of ``batches`` in order; they share their
    :meth:`Batching.group_key` (the caller grouped them: not checked again)."""
    lay = found.layout
    first = batches[0]
    out: dict[str, Any] = {name: first.get(name) for name in lay.shared}
    for name in lay.scalars:
        out[name] = [value for batch in batches for value in batch.get(name) or []]
    if lay.dictionary:
        _concat_dictionary(lay.dictionary, batches, out)
    for name in lay.arrays:
        out[name] = [item for batch in batches for item in batch.get(name) or []]
        counts = name + COUNTS
        out[counts] = [n for batch in batches for n in batch.get(counts) or []]
    if lay.has_columns:
        out[COLUMNS] = _concat_columns(batches)
    return out


def _concat_dictionary(
    names: Sequence[str], batches: Sequence[dict[str, Any]], out: dict[str, Any]
) -> None:
    """Each batch's indexes moved onto one dictionary holding every batch's words."""
    words: dict[str, int] = {}
    moved: dict[str, list[int]] = {name: [] for name in names}
    for batch in batches:
        to = [words.setdefault(word, len(words)) for word in batch.get(DICTIONARY) or []]
        to.append(-1)  # index -1 (null) stays -1
        for name in names:
            moved[name] += [to[index] for index in batch.get(name) or []]
    out.update(moved)
    out[DICTIONARY] = list(words)


def _concat_columns(batches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every batch's rows one after the other; ``missing`` re-based on the joined rows."""
    offsets = [0]
    for batch in batches:
        offsets.append(offsets[-1] + sum(batch.get(ROW_COUNT) or []))
    out = []
    for position, column in enumerate(batches[0].get(COLUMNS) or []):
        joined_column: dict[str, Any] = {"name": column["name"], "kind": column["kind"]}
        for kind in _KINDS:
            joined_column[kind] = [
                value for batch in batches for value in batch[COLUMNS][position].get(kind) or []
            ]
        joined_column["missing"] = [
            offset + row
            for batch, offset in zip(batches, offsets, strict=False)
            for row in batch[COLUMNS][position].get("missing") or []
        ]
        out.append(joined_column)
    return out


def _entities(found: Batching, batch: dict[str, Any]) -> set[Any]:
    """The entity column of a batch (``entity_id`` for raw batches, the pseudonym after):
    what keeps two messages of one entity in order. The shared city and source are
    left out, which can only make two entities look alike (a run opened for nothing)."""
    name = "entity_id" if found.spec.member == "RawRecord" else "entity_pseudonym"
    return set(batch.get(name) or [])


def _runs(parts: Sequence[Produced], found: Batching) -> list[list[Produced]]:
    """``parts`` in runs of one kind, as few as keeps every entity's order."""
    runs: list[list[Produced]] = []
    newest: dict[tuple, int] = {}  # kind -> index of its newest run
    last_of_entity: dict[Any, int] = {}  # entity -> index of the last run holding it
    for part in parts:
        emit = part.emit
        kind = (emit.key, emit.headers, found.group_key(emit.value))  # type: ignore[arg-type]
        entities = _entities(found, emit.value)  # type: ignore[arg-type]
        index = newest.get(kind)
        if index is None or any(last_of_entity.get(e, -1) > index for e in entities):
            index = len(runs)
            runs.append([])
            newest[kind] = index
        runs[index].append(part)
        for entity in entities:
            last_of_entity[entity] = index
    return runs


def joined(
    parts: Sequence[Produced], found: Batching, encode: Encode, limit: int
) -> list[Produced]:
    """The batch messages of one lane (topic and partition), joined where they may be,
    in an order that keeps each entity's."""
    out: list[Produced] = []
    for run in _runs(parts, found):
        out += _fitting(run, found, encode, limit)
    return out


def _fitting(run: list[Produced], found: Batching, encode: Encode, limit: int) -> list[Produced]:
    """One message for ``run``, or its halves (recursively) when too large."""
    if len(run) == 1:
        return run
    batch = concat_batches(found, [part.emit.value for part in run])  # type: ignore[misc]
    value = encode(batch)
    if len(value) > limit:
        half = len(run) // 2
        return _fitting(run[:half], found, encode, limit) + _fitting(
            run[half:], found, encode, limit
        )
    first = run[0].emit
    readings = sum(part.emit.readings for part in run)
    emit = Emit(
        first.topic,
        first.key,
        batch,
        readings=readings,
        partition=first.partition,
        batched=True,
        headers=first.headers,
    )
    return [Produced(emit, value)]
