"""Many entities in one message: the v2 "batch" contracts and the way to and from v1.

A v1 record (``RawRecord``, ``AnonymisedRecord``, ``Observation``) carries one
entity: a batch of 1,000 single readings from 1,000 sensors was 1,000 messages
through every stage, each paying its own decode, bookkeeping and encode. A v2
batch (``RawBatch``, ``AnonymisedBatch``, ``ObservationBatch``) carries the v1
records of many entities column-wise: the entity is a column.

The batch form is *derived* from the member form so that the two never disagree:

* fields every member shares (city, source, lineage...) are written once;
* a member's other scalar field becomes an array with one item per member --
  a repeated string (metric, unit, zone...) as an index into the batch's
  ``dictionary`` (-1 for null), so it is decoded once per batch, not per member;
* a member's array field (values, times, event_times...) is concatenated over the
  members, with ``<field>_counts`` saying how many items each member had;
* a member's ``columns`` (rows column-wise) are concatenated row-wise: every member
  of one batch has the same column names and kinds, ``missing`` positions are
  re-based on the batch's rows, ``row_count`` says how many rows each member has.

``explode(implode(records))`` gives back the records exactly (the property the
unit tests hold), which is what lets a stage that knows only v1 read v2 topics,
and a stage's columnar fast path be checked against its per-record path.

Members are grouped by what they share (and, for ``columns``, by their column
signature): a list of records may give several batches. Which partition a batch
goes to is :func:`entity_partition` of its members' keys: one entity's data stays
on one partition and in order, in v1 and v2 topics alike.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

__all__ = [
    "BATCHES",
    "BatchSpec",
    "Batching",
    "batch_schema",
    "batching",
    "entity_partition",
    "explode",
    "implode",
    "spec_for_batch",
    "spec_for_member",
]

COLUMNS = "columns"
DICTIONARY = "dictionary"
COUNTS = "_counts"
ROW_COUNT = "row_count"
_KIND_ARRAY = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}


@dataclass(frozen=True)
class BatchSpec:
    """How one v1 record type is carried many to a message."""

    member: str  # v1 record name, e.g. "RawRecord"
    batch: str  # v2 record name, e.g. "RawBatch"
    shared: tuple[str, ...]  # fields equal for every member of one batch
    dictionary: tuple[str, ...] = ()  # string fields written as dictionary indexes
    doc: str = ""


BATCHES: tuple[BatchSpec, ...] = (
    BatchSpec(
        member="RawRecord",
        batch="RawBatch",
        shared=("city", "source", "dataset", "format", "lineage_id", "received_at", "attributes"),
        dictionary=("entity_type",),
        doc="What ingest accepted from a city source in one batch, for many entities: "
        "the RawRecords of the batch column-wise, the entity a column (personal data "
        "still in clear: only anonymise reads this topic). Derived from RawRecord by "
        "services/runtime/batches.py.",
    ),
    BatchSpec(
        member="AnonymisedRecord",
        batch="AnonymisedBatch",
        shared=(
            "city",
            "source",
            "dataset",
            "format",
            "lineage_id",
            "received_at",
            "attributes",
            "key_epoch",
            "policy_version",
        ),
        dictionary=("entity_type",),
        doc="AnonymisedRecords of many entities of one source batch, column-wise, the "
        "entity pseudonym a column. Derived from AnonymisedRecord by "
        "services/runtime/batches.py.",
    ),
    BatchSpec(
        member="Observation",
        batch="ObservationBatch",
        shared=("city", "source", "dataset", "lineage_id"),
        dictionary=(
            "domain",
            "metric",
            "unit",
            "entity_type",
            "zone",
            "key_epoch",
            "sector",
            "carrier",
        ),
        doc="Observations of many entities and metrics of one source batch, "
        "column-wise. Derived from Observation by services/runtime/batches.py.",
    ),
)


def spec_for_member(name: str) -> BatchSpec | None:
    """The batch form of v1 record ``name`` (short name), if it has one."""
    return next((s for s in BATCHES if s.member == name), None)


def spec_for_batch(name: str) -> BatchSpec | None:
    """The spec of v2 batch record ``name`` (short name), if it is one."""
    return next((s for s in BATCHES if s.batch == name), None)


def entity_partition(key: str | bytes, partitions: int) -> int:
    """The partition of an entity's key: CRC-32 modulo the partition count, what
    librdkafka's default (``consistent_random``) partitioner gives a keyed message,
    so a v1 record and the batch carrying it land on the same partition number."""
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) % partitions


# -- schema -------------------------------------------------------------------


def _is_array(field_type: Any) -> bool:
    return isinstance(field_type, dict) and field_type.get("type") == "array"


def batch_schema(spec: BatchSpec, member: dict[str, Any]) -> dict[str, Any]:
    """The v2 Avro schema derived from the v1 schema document ``member``."""
    fields: list[dict[str, Any]] = []
    dictionary_needed = False
    for field in member["fields"]:
        name, kind = field["name"], field["type"]
        if name in spec.shared:
            fields.append(copy.deepcopy(field))
        elif name == COLUMNS:
            fields.append(
                {
                    "name": COLUMNS,
                    "type": copy.deepcopy(kind),
                    "doc": "Every member's rows, concatenated; one name and kind for all members.",
                }
            )
        elif _is_array(kind):
            fields.append({"name": name, "type": copy.deepcopy(kind), "default": []})
            fields.append(
                {
                    "name": name + COUNTS,
                    "type": {"type": "array", "items": "int"},
                    "default": [],
                    "doc": f"How many items of `{name}` each member has, in member order.",
                }
            )
        elif name in spec.dictionary:
            dictionary_needed = True
            fields.append(
                {
                    "name": name,
                    "type": {"type": "array", "items": "int"},
                    "default": [],
                    "doc": "Per member: index into `dictionary`, -1 for null.",
                }
            )
        else:
            fields.append(
                {
                    "name": name,
                    "type": {"type": "array", "items": copy.deepcopy(kind)},
                    "default": [],
                }
            )
    if dictionary_needed:
        fields.append(
            {
                "name": DICTIONARY,
                "type": {"type": "array", "items": "string"},
                "default": [],
                "doc": "Every repeated string of the batch once.",
            }
        )
    return {
        "type": "record",
        "name": spec.batch,
        "namespace": "citeplus.v2",
        "doc": spec.doc,
        "fields": fields,
    }


# -- records ------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """The fields of a member type sorted by how a batch carries them."""

    shared: tuple[str, ...]
    dictionary: tuple[str, ...]
    scalars: tuple[str, ...]
    arrays: tuple[str, ...]
    has_columns: bool


def layout(spec: BatchSpec, member: dict[str, Any]) -> _Layout:
    """How ``member`` (the v1 schema document) is spread over the batch."""
    shared, dictionary, scalars, arrays = [], [], [], []
    has_columns = False
    for field in member["fields"]:
        name, kind = field["name"], field["type"]
        if name in spec.shared:
            shared.append(name)
        elif name == COLUMNS:
            has_columns = True
        elif _is_array(kind):
            arrays.append(name)
        elif name in spec.dictionary:
            dictionary.append(name)
        else:
            scalars.append(name)
    return _Layout(tuple(shared), tuple(dictionary), tuple(scalars), tuple(arrays), has_columns)


def _signature(record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((c["name"], c["kind"]) for c in record.get(COLUMNS, ()))


def _group_key(lay: _Layout, record: dict[str, Any]) -> tuple:
    shared = tuple(
        tuple(sorted(v.items())) if isinstance(v, dict) else v
        for v in (record.get(name) for name in lay.shared)
    )
    return (shared, _signature(record)) if lay.has_columns else (shared,)


def implode(lay: _Layout, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batches carrying ``records`` (v1 dicts), in first-seen order of their groups;
    members keep their order within a batch."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(_group_key(lay, record), []).append(record)
    return [_one_batch(lay, members) for members in groups.values()]


def _one_batch(lay: _Layout, members: list[dict[str, Any]]) -> dict[str, Any]:
    first = members[0]
    batch: dict[str, Any] = {name: first.get(name) for name in lay.shared}
    for name in lay.scalars:
        batch[name] = [m.get(name) for m in members]
    if lay.dictionary:
        words: dict[str, int] = {}
        for name in lay.dictionary:
            indexes = []
            for m in members:
                value = m.get(name)
                indexes.append(-1 if value is None else words.setdefault(value, len(words)))
            batch[name] = indexes
        batch[DICTIONARY] = list(words)
    for name in lay.arrays:
        items: list[Any] = []
        counts = []
        for m in members:
            values = m.get(name) or []
            items.extend(values)
            counts.append(len(values))
        batch[name] = items
        batch[name + COUNTS] = counts
    if lay.has_columns:
        batch[COLUMNS] = _concat_columns(members)
    return batch


def _concat_columns(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for position, column in enumerate(members[0][COLUMNS]):
        array = _KIND_ARRAY.get(column["kind"])
        merged = {"name": column["name"], "kind": column["kind"]}
        for kind_array in _KIND_ARRAY.values():
            merged[kind_array] = []
        merged["missing"] = []
        offset = 0
        for m in members:
            own = m[COLUMNS][position]
            if array is not None:
                merged[array].extend(own.get(array) or [])
            merged["missing"].extend(offset + i for i in own.get("missing") or [])
            offset += m[ROW_COUNT]
        out.append(merged)
    return out


def check(lay: _Layout, batch: dict[str, Any]) -> int:
    """The number of members, once the batch's arrays agree with one another; else
    ValueError saying what does not. Cheap (no member is built): a hostile or broken
    batch is refused whole before any fast path can take it for empty or short."""
    count = _member_count(lay, batch)
    for name in (*lay.scalars, *lay.dictionary):
        _exactly(batch, name, count)
    _check_dictionary(lay, batch)
    for name in lay.arrays:
        _check_counts(batch, name, count)
    if lay.has_columns and min(batch.get(ROW_COUNT) or [0]) < 0:
        raise ValueError("batch field 'row_count' holds a negative count")
    return count


def _check_dictionary(lay: _Layout, batch: dict[str, Any]) -> None:
    words = len(batch.get(DICTIONARY) or [])
    for name in lay.dictionary:
        indexes = batch.get(name) or []
        if indexes and (min(indexes) < -1 or max(indexes) >= words):
            raise ValueError(f"batch field {name!r} points past the dictionary of {words} words")


def _check_counts(batch: dict[str, Any], name: str, count: int) -> None:
    counts = _exactly(batch, name + COUNTS, count)
    items = len(batch.get(name) or [])
    if counts and min(counts) < 0:
        raise ValueError(f"batch field {name + COUNTS!r} holds a negative count")
    if sum(counts) != items:
        said = sum(counts)
        raise ValueError(f"batch field {name!r}: counts say {said} items, it has {items}")


def explode(lay: _Layout, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The v1 records a batch carries, in order (the inverse of :func:`implode`)."""
    count = check(lay, batch)
    members: list[dict[str, Any]] = [
        {name: copy.copy(batch.get(name)) for name in lay.shared} for _ in range(count)
    ]
    for name in lay.scalars:
        for m, value in zip(members, _exactly(batch, name, count), strict=True):
            m[name] = value
    words = batch.get(DICTIONARY) or []
    for name in lay.dictionary:
        for m, index in zip(members, _exactly(batch, name, count), strict=True):
            m[name] = None if index < 0 else words[index]
    for name in lay.arrays:
        items = batch.get(name) or []
        start = 0
        for m, n in zip(members, _exactly(batch, name + COUNTS, count), strict=True):
            m[name] = items[start : start + n]
            start += n
        if start != len(items):
            raise ValueError(f"batch field {name!r}: counts say {start} items, it has {len(items)}")
    if lay.has_columns:
        _split_columns(batch, members)
    return members


def _member_count(lay: _Layout, batch: dict[str, Any]) -> int:
    for name in (*lay.scalars, *lay.dictionary):
        return len(batch.get(name) or [])
    for name in lay.arrays:
        return len(batch.get(name + COUNTS) or [])
    return 0


def _exactly(batch: dict[str, Any], name: str, count: int) -> list[Any]:
    values = batch.get(name) or []
    if len(values) != count:
        raise ValueError(f"batch field {name!r} has {len(values)} items for {count} members")
    return values


def _split_columns(batch: dict[str, Any], members: list[dict[str, Any]]) -> None:
    starts = [0]
    for m in members:
        starts.append(starts[-1] + m[ROW_COUNT])
    for m in members:
        m[COLUMNS] = []
    for column in batch.get(COLUMNS) or []:
        for m, own in zip(members, _slice_column(column, starts), strict=True):
            m[COLUMNS].append(own)


def _slice_column(column: dict[str, Any], starts: list[int]) -> list[dict[str, Any]]:
    """One batch column cut back into its members' columns (``starts``: row offsets)."""
    array = _KIND_ARRAY.get(column["kind"])
    values = (column.get(array) or []) if array else []
    if array is not None and len(values) != starts[-1]:
        raise ValueError(
            f"column {column['name']!r} has {len(values)} values for {starts[-1]} rows"
        )
    missing = sorted(column.get("missing") or [])
    cursor = 0
    out = []
    for lo, hi in pairwise(starts):
        own_missing = []
        while cursor < len(missing) and missing[cursor] < hi:
            own_missing.append(missing[cursor] - lo)
            cursor += 1
        own = {"name": column["name"], "kind": column["kind"]}
        for kind_array in _KIND_ARRAY.values():
            own[kind_array] = values[lo:hi] if kind_array == array else []
        own["missing"] = own_missing
        out.append(own)
    return out


class Batching:
    """One v1 record type and its batch form, ready to implode and explode."""

    def __init__(self, spec: BatchSpec, member_document: dict[str, Any]):
        self.spec = spec
        self.layout = layout(spec, member_document)

    def implode(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """See :func:`implode`."""
        return implode(self.layout, records)

    def check(self, batch: dict[str, Any]) -> int:
        """See :func:`check`."""
        return check(self.layout, batch)

    def explode(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """See :func:`explode`."""
        return explode(self.layout, batch)

    def batch_of(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The one batch of ``records`` that share their :meth:`group_key` (the caller
        grouped them: not checked again)."""
        return _one_batch(self.layout, list(records))

    def group_key(self, record: dict[str, Any]) -> tuple:
        """What members of one batch share (records with equal keys implode to one
        batch): the runner forms its batches with it, keeping each entity's order."""
        return _group_key(self.layout, record)


@cache
def batching(name: str) -> Batching:
    """The :class:`Batching` of v1 record ``name`` or of v2 batch ``name`` (short names)."""
    from services.runtime.schemas import read_schema_files

    spec = spec_for_member(name) or spec_for_batch(name)
    if spec is None:
        raise KeyError(f"{name} has no batch form (batches: {[s.batch for s in BATCHES]})")
    documents = {doc["name"]: doc for doc in read_schema_files().values()}
    return Batching(spec, documents[spec.member])
