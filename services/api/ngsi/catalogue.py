"""``/types`` and ``/attributes``: what entity types and attributes an audience can read.

Built from one scan of the entities the audience may see (up to :data:`SCAN_LIMIT`
across the federation, merged like any page) and cached longer than entity pages:
types appear when a city opens a dataset, not every minute. Counts beyond the scan
are lower bounds, except ``/types/{type}``'s entityCount, which nodes count exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.api.ngsi.names import Names

SCAN_LIMIT = 10_000


@dataclass
class TypeInfo:
    count: int = 0
    attributes: dict[str, int] = field(default_factory=dict)


def summarise(entities: Iterable[Any], names: Names) -> dict[str, TypeInfo]:
    """Entity type -> entities seen and, per attribute name, how many carry it (pure)."""
    found: dict[str, TypeInfo] = {}
    for entity in entities:
        info = found.setdefault(entity.entity_type, TypeInfo())
        info.count += 1
        attributes = {names.attribute(entity.entity_type, a.metric) for a in entity.attributes}
        if entity.HasField("position"):
            attributes.add("location")
        for name in attributes:
            info.attributes[name] = info.attributes.get(name, 0) + 1
    return dict(sorted(found.items()))


def _list_id(kind: str, names: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"urn:ngsi-ld:{kind}:{digest}"


def type_list(types: dict[str, TypeInfo], details: bool) -> Any:
    if details:
        return [
            {
                "id": name,
                "type": "EntityType",
                "typeName": name,
                "attributeNames": sorted(info.attributes),
            }
            for name, info in types.items()
        ]
    return {
        "id": _list_id("EntityTypeList", types),
        "type": "EntityTypeList",
        "typeList": list(types),
    }


def type_info(name: str, info: TypeInfo, exact_count: int) -> dict[str, Any]:
    return {
        "id": name,
        "type": "EntityTypeInfo",
        "typeName": name,
        "entityCount": exact_count,
        "attributeDetails": [
            {
                "id": attr,
                "type": "Attribute",
                "attributeName": attr,
                "attributeTypes": ["GeoProperty" if attr == "location" else "Property"],
            }
            for attr in sorted(info.attributes)
        ],
    }


def attributes_of(types: dict[str, TypeInfo]) -> dict[str, dict[str, int]]:
    """Attribute name -> entity type -> entities carrying it."""
    found: dict[str, dict[str, int]] = {}
    for type_name, info in types.items():
        for attr, count in info.attributes.items():
            found.setdefault(attr, {})[type_name] = count
    return dict(sorted(found.items()))


def attribute_list(attributes: dict[str, dict[str, int]], details: bool) -> Any:
    if details:
        return [attribute_info(name, by_type) for name, by_type in attributes.items()]
    return {
        "id": _list_id("AttributeList", attributes),
        "type": "AttributeList",
        "attributeList": list(attributes),
    }


def attribute_info(name: str, by_type: dict[str, int]) -> dict[str, Any]:
    return {
        "id": name,
        "type": "Attribute",
        "attributeName": name,
        "attributeCount": sum(by_type.values()),
        "attributeTypes": ["GeoProperty" if name == "location" else "Property"],
        "typeNames": sorted(by_type),
    }
