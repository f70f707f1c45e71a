"""RawBatch records built straight from a request's parsed rows.

The RawBatch of a group of entities is, by definition, the implosion of their
RawRecords (services/runtime/batches.py). Building every entity's RawRecord -- a
dict and a Column record with four arrays per column -- and then taking them apart
again cost as much as parsing the request: for single readings (one row per
entity) that is most of ingest's CPU. Here each entity's columns are typed once
and appended to the open batch of its (partition, attributes, column signature),
the grouping :func:`~services.runtime.batches.implode` would make.

tests/unit/test_ingest_shards.py holds the builder to that definition: for any
request, the batches here equal ``implode`` of the RawRecords ``raw_record`` gives,
partition by partition. Should RawRecord gain a field, that test fails until it is
built here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.ingest.batch import EntityRows
from services.ingest.records import raw_key, typed_values
from services.runtime.batches import entity_partition
from services.runtime.cities import SourceConfig

_ARRAY_OF = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}

Typed = list[tuple[str, str, list[Any], list[int]]]  # (name, kind, typed values, missing)


@dataclass
class _OpenBatch:
    """A RawBatch being filled, one member at a time."""

    batch: dict[str, Any]
    words: dict[str, int] = field(default_factory=dict)
    rows: int = 0

    def add(self, entity: EntityRows, typed: Typed) -> None:
        batch = self.batch
        batch["entity_id"].append(entity.entity_id)
        batch["row_count"].append(entity.row_count)
        kind = entity.entity_type
        batch["entity_type"].append(
            -1 if kind is None else self.words.setdefault(kind, len(self.words))
        )
        batch["event_times"].extend(entity.event_times_us)
        batch["event_times_counts"].append(len(entity.event_times_us))
        for column, (_, kind_of, values, missing) in zip(batch["columns"], typed, strict=True):
            column[_ARRAY_OF[kind_of]].extend(values)
            if missing:
                column["missing"].extend(self.rows + i for i in missing)
        self.rows += entity.row_count

    def finish(self) -> dict[str, Any]:
        self.batch["dictionary"] = list(self.words)
        return self.batch


def shared_fields(source: SourceConfig, lineage_id: str, received_at_us: int) -> dict[str, Any]:
    """What every RawBatch of one request holds once (beside its attributes)."""
    return {
        "city": source.city,
        "source": source.id,
        "dataset": source.dataset,
        "format": source.format,
        "lineage_id": lineage_id,
        "received_at": received_at_us,
    }


def _empty(
    source: SourceConfig,
    lineage_id: str,
    received_at_us: int,
    attributes: Mapping[str, str],
    typed: Typed,
) -> _OpenBatch:
    columns = []
    for name, kind, _, _ in typed:
        column: dict[str, Any] = {"name": name, "kind": kind, "missing": []}
        column.update({array: [] for array in _ARRAY_OF.values()})
        columns.append(column)
    return _OpenBatch(
        {
            **shared_fields(source, lineage_id, received_at_us),
            "attributes": dict(attributes),
            "entity_id": [],
            "entity_type": [],
            "row_count": [],
            "event_times": [],
            "event_times_counts": [],
            "columns": columns,
        }
    )


def raw_batches(
    entities: Iterable[EntityRows],
    source: SourceConfig,
    *,
    lineage_id: str,
    received_at_us: int,
    reference: Mapping[str, Mapping[str, str]],
    partitions: int,
) -> list[tuple[int, dict[str, Any]]]:
    """(partition, RawBatch) of every group of ``entities``: the partition of their
    raw.v1 key, their reference attributes and column signature shared; partitions
    in first-seen order, groups within one in first-seen order, members in order."""
    groups: dict[tuple, _OpenBatch] = {}
    first_seen: dict[int, int] = {}
    for entity in entities:
        partition = entity_partition(raw_key(source, entity.entity_id), partitions)
        first_seen.setdefault(partition, len(first_seen))
        attributes = reference.get(entity.entity_id) or {}
        typed = [(name, *typed_values(values)) for name, values in entity.columns.items()]
        signature = tuple((name, kind) for name, kind, _, _ in typed)
        group = (partition, tuple(sorted(attributes.items())), signature)
        open_batch = groups.get(group)
        if open_batch is None:
            open_batch = groups[group] = _empty(
                source, lineage_id, received_at_us, attributes, typed
            )
        open_batch.add(entity, typed)
    ordered = sorted(groups.items(), key=lambda item: first_seen[item[0][0]])
    return [(group[0], open_batch.finish()) for group, open_batch in ordered]
