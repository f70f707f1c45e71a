"""Turn parsed entity rows into RawRecords and rejections into dead letters.

Pure functions: what goes on ``raw`` is decided here, tested without a broker.
A column gets one Avro kind for all its values (boolean, long, double, string)
so that later stages work on typed arrays, never per value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from services.ingest.batch import Cell, EntityRows, Rejection
from services.runtime import dlq
from services.runtime.cities import SourceConfig

_ARRAY_OF = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
_PLACEHOLDER: dict[str, Any] = {"string": "", "double": 0.0, "long": 0, "boolean": False}


def column_kind(values: Sequence[Cell]) -> str:
    """The narrowest Avro kind that holds every present value without loss."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds or kinds == {str}:
        return "string"
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "long" if all(-(2**63) <= v < 2**63 for v in values if v is not None) else "string"
    if kinds <= {int, float}:
        return "double"
    return "string"


def _as_string(value: Cell) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def typed_values(values: Sequence[Cell]) -> tuple[str, list[Any], list[int]]:
    """(kind, values as that kind with a placeholder where absent, absent positions):
    what a Column record (avro/Column.avsc) holds, before it is one."""
    if len(values) == 1:  # single readings: most columns of most requests
        return _typed_one(values[0])
    return _typed_many(values)


_ONE_KIND = {str: "string", bool: "boolean", float: "double"}
_LONG = range(-(2**63), 2**63)


def _typed_one(value: Cell) -> tuple[str, list[Any], list[int]]:
    """:func:`_typed_many` of one value, without its sets and passes (a unit test
    holds the two equal for every kind of cell)."""
    if value is None:
        return "string", [""], [0]
    kind = _ONE_KIND.get(type(value))
    if kind is not None:
        return kind, [value], []
    if type(value) is int and value in _LONG:
        return "long", [value], []
    return _typed_many([value])


def _typed_many(values: Sequence[Cell]) -> tuple[str, list[Any], list[int]]:
    kind = column_kind(values)
    placeholder = _PLACEHOLDER[kind]
    missing = [i for i, v in enumerate(values) if v is None]
    if kind == "string":
        typed: list[Any] = [placeholder if v is None else _as_string(v) for v in values]
    elif kind == "double":
        typed = [placeholder if v is None else float(v) for v in values]
    elif missing:
        typed = [placeholder if v is None else v for v in values]
    else:
        typed = list(values)
    return kind, typed, missing


def to_column(name: str, values: Sequence[Cell]) -> dict[str, Any]:
    """One Column record (avro/Column.avsc); absent values are listed in ``missing``."""
    kind, typed, missing = typed_values(values)
    column: dict[str, Any] = {"name": name, "kind": kind, "missing": missing}
    for array_kind, field in _ARRAY_OF.items():
        column[field] = typed if array_kind == kind else []
    return column


def column_values(column: dict[str, Any]) -> list[Cell]:
    """The inverse of :func:`to_column`: the values with ``None`` where missing."""
    values: list[Cell] = list(column[_ARRAY_OF[column["kind"]]])
    for i in column["missing"]:
        values[i] = None
    return values


def raw_record(
    entity: EntityRows,
    source: SourceConfig,
    *,
    lineage_id: str,
    received_at_us: int,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The RawRecord of one entity's rows of one batch (avro/RawRecord.avsc)."""
    return {
        "city": source.city,
        "source": source.id,
        "dataset": source.dataset,
        "format": source.format,
        "entity_id": entity.entity_id,
        "entity_type": entity.entity_type,
        "lineage_id": lineage_id,
        "received_at": received_at_us,
        "row_count": entity.row_count,
        "event_times": entity.event_times_us,
        "columns": [to_column(name, values) for name, values in entity.columns.items()],
        "attributes": dict(attributes or {}),
    }


def raw_key(source: SourceConfig, entity_id: str) -> str:
    """Keeps one entity's records in one partition, hence in order."""
    return f"{source.city}|{source.id}|{entity_id}"


def declared_fields(source: SourceConfig) -> frozenset[str]:
    """Field names the city file declares for a source: the only names a letter
    leaving the raw zone may carry (an undeclared JSON key may be an e-mail)."""
    names = {source.entity, *source.numeric, *(source.csv.columns or () if source.csv else ())}
    fields = (source.privacy or {}).get("fields")
    if isinstance(fields, dict):
        names.update(name for name in fields if isinstance(name, str))
    return frozenset(names)


def rejection_letters(
    rejection: Rejection,
    source: SourceConfig,
    lineage_id: str,
    pseudonymise: Callable[[str], str] | None = None,
    raw_topic: str = dlq.RAW_DLQ_TOPIC,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(raw letters, redacted letter) of input ingest could not read.

    The raw letters hold the original whole and the full error; the redacted one
    the position, declared field names, sizes and, when ingest holds the city's
    key, the entity's keyed pseudonym (no key: no id at all).
    """
    declared = declared_fields(source)
    fields = tuple(dict.fromkeys(f for f in rejection.fields if f in declared))
    undeclared = len(set(rejection.fields) - declared)
    note = f" ({undeclared} undeclared field name(s) withheld)" if undeclared else ""
    pseudonyms = (
        (pseudonymise(rejection.entity),)
        if rejection.entity is not None and pseudonymise is not None
        else ()
    )
    return dlq.split(
        dlq.Reject(
            stage="ingest",
            reason=rejection.reason,
            message=f"{rejection.message}{note} (batch {lineage_id})",
            detail=f"{rejection.detail or rejection.message} (batch {lineage_id})",
            original=rejection.original,
            city=source.city,
            source=source.id,
            position=rejection.position,
            fields=fields,
            pseudonyms=pseudonyms,
        ),
        raw_topic=raw_topic,
    )
