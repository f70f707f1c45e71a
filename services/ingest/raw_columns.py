"""RawBatch records of single readings built column by column.

raw_batches (services/ingest/raw_batches.py) types each entity's columns and
appends the entity to the open batch of its (partition, attributes, column
signature). With one row per entity that is Python work per entity and column:
for a request of 1,000 sensors, the largest share of ingest's CPU. Here a column
is typed once for the whole request, and a member's row goes to its batch by
index; only what can differ between entities -- partition, reference attributes,
and the kind of a column whose values are not all of one kind -- is per entity.

The batches are exactly raw_batches' for the same entities: the same groups in the
same order with the same members, columns, kinds and ``missing`` positions. A
column's kind for one entity is what typed_values gives its one value; when every
value of a column gives the same kind the column is typed as a whole, else value
by value with typed_values itself. tests/unit/test_ingest_single_readings.py holds
the two builders equal.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from services.ingest.batch import Cell
from services.ingest.formats.csv_singles import SingleReadings
from services.ingest.raw_batches import shared_fields
from services.ingest.records import raw_key, typed_values
from services.runtime.cities import SourceConfig

_ARRAY_OF = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
_LONG_MIN, _LONG_END = -(2**63), 2**63
_NONE = type(None)

Pick = Callable[[Sequence[Any]], Sequence[Any]]


class _Column:
    """One column's values typed as typed_values types each entity's one value:
    one ``kind`` for all when they share it, else a kind per row in ``kinds``."""

    def __init__(self, name: str, values: list[Cell]) -> None:
        self.name = name
        self.kind: str | None = None
        self.kinds: list[str] = []
        self.absent: list[bool] | None = None  # per row, when a value may be absent
        self.typed: Sequence[Any] = values
        types = set(map(type, values))
        if types == {str}:
            self.kind = "string"
        elif types <= {str, _NONE}:
            self.kind = "string"
            self.typed = ["" if v is None else v for v in values]
            self.absent = [v is None for v in values]
        elif types == {float}:
            self.kind = "double"
        elif types == {bool}:
            self.kind = "boolean"
        elif types == {int} and min(values) >= _LONG_MIN and max(values) < _LONG_END:  # type: ignore[type-var]
            self.kind = "long"
        else:
            ones = [typed_values((value,)) for value in values]
            self.kinds = [kind for kind, _, _ in ones]
            self.typed = [typed[0] for _, typed, _ in ones]
            self.absent = [bool(missing) for _, _, missing in ones]

    def part(self, pick: Pick, first: int) -> dict[str, Any]:
        """The Column record of the rows ``pick`` takes (``first`` the first of them)."""
        kind = self.kind or self.kinds[first]
        missing = []
        if self.absent is not None:
            missing = [k for k, absent in enumerate(pick(self.absent)) if absent]
        column: dict[str, Any] = {"name": self.name, "kind": kind, "missing": missing}
        column.update({array: [] for array in _ARRAY_OF.values()})
        column[_ARRAY_OF[kind]] = list(pick(self.typed))
        return column


def entity_partitions(source: SourceConfig, entities: Sequence[str], partitions: int) -> list[int]:
    """:func:`~services.runtime.batches.entity_partition` of every entity's raw.v1
    key, in one pass: the same CRC-32 modulo the partition count, continued from
    the CRC of the key's ``city|source|`` head (a CRC runs on from any prefix's)."""
    crc32 = zlib.crc32
    prefix = crc32(raw_key(source, "").encode())  # the CRC of the key's common head, once
    return [crc32(entity, prefix) % partitions for entity in map(str.encode, entities)]


def single_reading_batches(
    readings: SingleReadings,
    source: SourceConfig,
    *,
    lineage_id: str,
    received_at_us: int,
    reference: Mapping[str, Mapping[str, str]],
    partitions: int,
) -> list[tuple[int, dict[str, Any]]]:
    """(partition, RawBatch) of ``readings`` as raw_batches gives them for the same
    entities, one row each, without entity type or event times: partitions in
    first-seen order, groups within one in first-seen order, members in order."""
    entities = readings.entities
    columns = [_Column(name, values) for name, values in readings.columns.items()]
    partition_of = entity_partitions(source, entities, partitions)
    attributes = [reference.get(entity) or {} for entity in entities] if reference else []
    shared = shared_fields(source, lineage_id, received_at_us)
    out = []
    for rows in _grouped(partition_of, attributes, columns):
        first = rows[0]
        pick = _picker(rows)
        count = len(rows)
        batch = {
            **shared,
            "attributes": dict(attributes[first] if attributes else {}),
            "entity_id": list(pick(entities)),
            "entity_type": [-1] * count,
            "row_count": [1] * count,
            "event_times": [],
            "event_times_counts": [0] * count,
            "columns": [column.part(pick, first) for column in columns],
            "dictionary": [],
        }
        out.append((partition_of[first], batch))
    return out


def _grouped(
    partition_of: list[int], attributes: list[Mapping[str, str]], columns: list[_Column]
) -> list[list[int]]:
    """The rows of each batch, in raw_batches' order: entities grouped by partition,
    attributes and column signature (a kind differs only in a column of several),
    partitions in first-seen order, groups within one in first-seen order."""
    keys: Sequence[Hashable] = partition_of
    if attributes:
        shared = [tuple(sorted(a.items())) for a in attributes]
        keys = list(zip(keys, shared, strict=True))
    varying = [column.kinds for column in columns if column.kind is None]
    if varying:
        keys = list(zip(keys, *varying, strict=True))
    groups: dict[Hashable, list[int]] = {}
    for row, key in enumerate(keys):
        members = groups.get(key)
        if members is None:
            groups[key] = [row]
        else:
            members.append(row)
    first_seen: dict[int, int] = {}
    for rows in groups.values():
        first_seen.setdefault(partition_of[rows[0]], len(first_seen))
    # sorted is stable: groups of one partition keep their order
    return sorted(groups.values(), key=lambda rows: first_seen[partition_of[rows[0]]])


def _picker(rows: list[int]) -> Pick:
    """What takes ``rows`` of a column, as a sequence (itemgetter of one index
    gives the value itself)."""
    if len(rows) > 1:
        return itemgetter(*rows)
    (row,) = rows
    return lambda values: (values[row],)
