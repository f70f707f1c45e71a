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
* a batch joins the newest run of its kind unless one of its entities, or the input
  partition it came from, has a member in a later message of the lane: each entity's
  order and each input partition's order survive (so a joined lane reads as the same
  inputs consumed in another interleaving, which is all a consumer could ever see);
* a batch whose arrays do not agree joins nothing (its reader refuses it alone);
* ``explode`` of the joined batch is the members of its parts, in order (unit-tested);
* a run is cut where its parts' bytes would pass the limit, and a joined message still
  over it (a joined dictionary can lengthen indexes) in halves, down to the parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.runtime.batches import COLUMNS, COUNTS, DICTIONARY, ROW_COUNT, Batching
from services.runtime.stage import Emit

__all__ = ["Piece", "Produced", "concat_batches", "joined"]

Encode = Callable[[dict[str, Any]], bytes]
_ARRAY_OF_KIND = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
_KINDS = tuple(_ARRAY_OF_KIND.values())


@dataclass(frozen=True)
class Produced:
    """One batch message ready to produce: the emit (value a batch) and its bytes."""

    emit: Emit
    value: bytes


@dataclass(frozen=True)
class Piece:
    """A batch message of the transaction and the input partitions its members came
    from, ``(topic, partition)``; None stands for what no input message gave (a
    batch's end, a tick). Two pieces of one input partition never swap: what their
    reader computes from order (energy-analytics' watermark of a source partition)
    stays what the input's order gave."""

    produced: Produced
    inputs: frozenset[Any]


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


def _entities(found: Batching, batch: dict[str, Any]) -> list[Any]:
    """The entity column of a batch (``entity_id`` for raw batches, the pseudonym after):
    what keeps two messages of one entity in order. The shared city and source are
    left out, which can only make two entities look alike (a run opened for nothing)."""
    name = "entity_id" if found.spec.member == "RawRecord" else "entity_pseudonym"
    return batch.get(name) or []


def _kind(found: Batching, piece: Piece) -> object:
    """What a piece's run shares: message key, headers, shared fields, column
    signature. A piece whose arrays do not agree gets a kind of its own: joined, it
    would make its reader refuse its neighbours with it."""
    emit = piece.produced.emit
    try:
        found.check(emit.value)  # type: ignore[arg-type]
    except ValueError:
        return object()
    if found.layout.has_columns and not _columns_agree(emit.value):  # type: ignore[arg-type]
        return object()
    return (emit.key, emit.headers, found.group_key(emit.value))  # type: ignore[arg-type]


def _columns_agree(batch: dict[str, Any]) -> bool:
    """Each column holds one value per row of the batch and misses only rows it has:
    what :meth:`Batching.check` leaves to ``explode``. Joined, a column too long would
    make the reader refuse the neighbours with it, and a missing position past the
    piece's rows would land on a neighbour's row."""
    rows = sum(batch.get(ROW_COUNT) or [])
    for column in batch.get(COLUMNS) or []:
        values = _ARRAY_OF_KIND.get(column.get("kind"))
        if values is not None and len(column.get(values) or []) != rows:
            return False
        missing = column.get("missing") or []
        if missing and (min(missing) < 0 or max(missing) >= rows):
            return False
    return True


def _runs(pieces: Sequence[Piece], found: Batching) -> list[list[Produced]]:
    """``pieces`` in runs of one kind, as few as keeps the order of every input
    partition and of every entity: a piece joins the newest run of its kind unless
    that would take it past a later run holding one of its inputs or entities."""
    runs: list[list[Produced]] = []
    newest: dict[object, int] = {}  # kind -> index of its newest run
    last_input: dict[Any, int] = {}  # input -> index of the last run holding it
    last_entity: dict[Any, int] = {}  # entity -> index of the last run holding it
    for piece in pieces:
        kind = _kind(found, piece)
        entities = _entities(found, piece.produced.emit.value)  # type: ignore[arg-type]
        index = newest.get(kind)
        # Only a run after the newest of this kind can hold what must not be passed.
        if index is None or (
            index < len(runs) - 1
            and (
                any(last_input.get(source, -1) > index for source in piece.inputs)
                or any(last_entity.get(entity, -1) > index for entity in entities)
            )
        ):
            index = len(runs)
            runs.append([])
            newest[kind] = index
        runs[index].append(piece.produced)
        last_input.update(dict.fromkeys(piece.inputs, index))
        last_entity.update(dict.fromkeys(entities, index))
    return runs


def joined(pieces: Sequence[Piece], found: Batching, encode: Encode, limit: int) -> list[Produced]:
    """The batch messages of one lane (topic and partition), joined where they may be,
    in an order that keeps each input partition's and each entity's."""
    out: list[Produced] = []
    for run in _runs(pieces, found):
        for chunk in _chunks(run, limit):
            out += _fitting(chunk, found, encode, limit)
    return out


def _chunks(run: list[Produced], limit: int) -> list[list[Produced]]:
    """``run`` cut, in order, where its parts' own bytes would pass ``limit``: joining
    writes the shared fields once, so a chunk's message is about that size, and each
    part is encoded again once, not once per halving."""
    chunks: list[list[Produced]] = []
    size = limit + 1
    for part in run:
        if size + len(part.value) > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(part)
        size += len(part.value)
    return chunks


def _fitting(run: list[Produced], found: Batching, encode: Encode, limit: int) -> list[Produced]:
    """One message for ``run``, or its halves (recursively) in the rare case that the
    joined dictionary made it larger than its parts."""
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
