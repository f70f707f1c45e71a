"""Smart Data Models entities: NGSI-v2 key-values, NGSI-v2 normalized, NGSI-LD.

Context brokers and city platforms already publish these forms, so Cité+ takes
them as they are. Each entity becomes one row: attribute name -> value, with
structure (GeoJSON, addresses, per-phase dicts) as JSON text. What the forms
carry beside the value is kept as extra columns rather than dropped:
``<attr>@unitCode`` (the UN/CEFACT unit normalise converts from),
``<attr>@observedAt``, ``<attr>@datasetId`` and ``<attr>.<sub>`` for
sub-properties / metadata such as ``measurementType``. ``id`` and ``type`` are
the entity's identity, not columns.

Event time: the latest valid NGSI-LD ``observedAt``, else ``dateObserved`` when it
is an ISO 8601 time with an offset. A malformed or naive date is kept as text
and simply gives no event time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from services.ingest.batch import BatchBuilder, Cell, ParseResult
from services.ingest.formats import strict_json
from services.ingest.formats.json_format import document_error, load_document, safe_json
from services.ingest.values import iso_time_us, json_cell
from services.runtime.cities import SourceConfig

# NGSI-LD attribute type -> the member holding its value.
LD_VALUE_KEYS = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
_ENVELOPE = frozenset({"id", "type", "@context"})
_LD_QUALIFIERS = ("unitCode", "observedAt", "datasetId")
_TIME_ATTRIBUTE = "dateObserved"

Row = dict[str, Cell]


class _BadAttribute(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def parse(data: bytes, source: SourceConfig) -> ParseResult:
    """One row per entity, grouped per (id, type); a bad entity is rejected alone."""
    out = BatchBuilder()
    read = _read_payload(data)
    if isinstance(read, _Refusal):
        out.reject("payload", read.reason, read.message, data, detail=read.detail)
        return out.result()
    entities, strict = read
    flatten = _FLATTENERS[source.format]
    for number, item in enumerate(entities, start=1):
        found = _read_entity(item, flatten, strict)
        if isinstance(found, _Refusal):
            out.reject(
                f"item {number}",
                found.reason,
                found.message,
                found.original,
                detail=found.detail,
                fields=found.fields,
                entity=found.entity,
            )
        else:
            out.add_row(*found)
    return out.result()


@dataclass(frozen=True)
class _Refusal:
    """Why a payload or an entity is set aside (``message`` quotes no value of it)."""

    reason: str
    message: str
    original: bytes = b""
    detail: str | None = None
    fields: tuple[str, ...] = ()
    entity: str | None = None


class _EntityRow(NamedTuple):
    """An entity as :meth:`BatchBuilder.add_row` takes it."""

    entity_id: str
    entity_type: str | None
    row: Row
    event_time: int | None


def _read_payload(data: bytes) -> tuple[list[Any], bool] | _Refusal:
    """(the entities, whether the strict checks must look at each) or why the
    payload as a whole is refused."""
    try:
        document, strict = load_document(data)
    except (ValueError, UnicodeDecodeError) as exc:
        reason, message, detail = document_error(exc)
        return _Refusal(reason, message, detail=detail)
    entities = _entities(document)
    found = strict_json.problem(document) if strict and entities is None else None
    if found is not None:
        return _Refusal(found.reason, found.message, detail=found.detail)
    if entities is None:
        return _Refusal(
            "not-an-entity",
            "expected an entity (a JSON object with an 'id'), an array of entities, "
            "or a notification with a 'data' array",
        )
    return entities, strict


def _read_entity(
    item: Any, flatten: Callable[[dict[str, Any]], tuple[Row, int | None]], strict: bool
) -> _EntityRow | _Refusal:
    """One entity as a row, or why it is rejected (its neighbours are not)."""
    found = strict_json.problem(item) if strict else None
    if found is not None:
        return _Refusal(found.reason, found.message, safe_json(item), detail=found.detail)
    original = json.dumps(item, ensure_ascii=False).encode()
    if not isinstance(item, dict):
        return _Refusal("not-an-object", "an entity must be a JSON object", original)
    entity_id = item.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        return _Refusal("missing-entity", "the entity has no 'id' string", original)
    entity_type = item.get("type") if isinstance(item.get("type"), str) else None
    try:
        row, event_time = flatten(item)
    except _BadAttribute as exc:
        return _Refusal(
            "bad-attribute",
            "an attribute is not in NGSI-v2 normalized form "
            '{"type": ..., "value": ...}; is this source really ngsi-v2-normalized?',
            original,
            detail=f"entity {entity_id!r}: {exc}",
            fields=(exc.name,),
            entity=entity_id,
        )
    if not row:
        return _Refusal(
            "empty-entity",
            "the entity has no attribute",
            original,
            detail=f"entity {entity_id!r} has no attribute",
            entity=entity_id,
        )
    return _EntityRow(entity_id, entity_type, row, event_time)


def _entities(document: Any) -> list[Any] | None:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        data = document.get("data")
        is_notification = "subscriptionId" in document or document.get("type") == "Notification"
        if is_notification and isinstance(data, list):
            return data
        if "id" in document:
            return [document]
    return None


def _unwrap(value: Any) -> Any:
    """A JSON-LD typed literal ``{"@type": "DateTime", "@value": "..."}`` -> its value."""
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def _attributes(item: dict[str, Any]) -> Any:
    return ((name, value) for name, value in item.items() if name not in _ENVELOPE)


def _flatten_keyvalues(item: dict[str, Any]) -> tuple[Row, int | None]:
    row = {name: json_cell(_unwrap(value)) for name, value in _attributes(item)}
    return row, iso_time_us(row.get(_TIME_ATTRIBUTE))


def _flatten_v2_normalized(item: dict[str, Any]) -> tuple[Row, int | None]:
    row: Row = {}
    for name, attribute in _attributes(item):
        if not isinstance(attribute, dict) or "value" not in attribute:
            raise _BadAttribute(
                name,
                f"attribute {name!r} is not in NGSI-v2 normalized form "
                '{"type": ..., "value": ...}; is this source really ngsi-v2-normalized?',
            )
        row[name] = json_cell(attribute["value"])
        metadata = attribute.get("metadata")
        if isinstance(metadata, dict):
            for meta_name, meta in metadata.items():
                value = meta.get("value") if isinstance(meta, dict) else meta
                column = f"{name}@unitCode" if meta_name == "unitCode" else f"{name}.{meta_name}"
                row[column] = json_cell(value)
    return row, iso_time_us(row.get(_TIME_ATTRIBUTE))


def _ld_value_key(attribute: Any) -> str | None:
    """The member holding the value if ``attribute`` is a normalized NGSI-LD one."""
    kind = attribute.get("type") if isinstance(attribute, dict) else None
    return LD_VALUE_KEYS.get(kind) if isinstance(kind, str) else None


def _flatten_ld(item: dict[str, Any]) -> tuple[Row, int | None]:
    row: Row = {}
    observed: list[int] = []
    for name, attribute in _attributes(item):
        value_key = _ld_value_key(attribute)
        if value_key is None:
            # Key-values form (with @context), or a multi-instance array: as is.
            row[name] = json_cell(_unwrap(attribute))
            continue
        row[name] = json_cell(_unwrap(attribute.get(value_key)))
        for qualifier in _LD_QUALIFIERS:
            if qualifier in attribute:
                row[f"{name}@{qualifier}"] = json_cell(attribute[qualifier])
        time = iso_time_us(attribute.get("observedAt"))
        if time is not None:
            observed.append(time)
        for sub_name, sub in attribute.items():
            sub_key = _ld_value_key(sub)
            if sub_key is not None:
                row[f"{name}.{sub_name}"] = json_cell(_unwrap(sub.get(sub_key)))
    event_time = max(observed) if observed else iso_time_us(row.get(_TIME_ATTRIBUTE))
    return row, event_time


_FLATTENERS = {
    "sdm-keyvalues": _flatten_keyvalues,
    "ngsi-v2-normalized": _flatten_v2_normalized,
    "ngsi-ld": _flatten_ld,
}
