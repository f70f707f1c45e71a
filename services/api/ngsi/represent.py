"""Entities of the federation API as NGSI-LD entities: normalized, keyValues, concise.

The normalized form is built once; keyValues and concise are derived from it by two
pure rewrites, so the three always say the same thing. Attribute names come from the
vocabulary (:mod:`services.api.ngsi.names`), units are UN/CEFACT codes (``unitCode``),
the position is a GeoJSON Point (longitude first) in ``location``.

Energy aggregates (``CitePlusEnergyAggregate``) carry energy_kwh, meter_count and
peak_kw; a value that statistical secrecy suppressed is absent, and the entity says
``suppressed: true`` with ``suppressionReason``: nothing stands in for the value.
"""

from __future__ import annotations

import math
import time
from typing import Any

from services.api.ids import build_id
from services.api.ngsi.names import Names
from services.runtime.units import unit_code

NGSI_NULL = "urn:ngsi-ld:null"
# Attributes every entity may carry besides its measurements (see header()).
DESCRIPTIVE = (
    "location",
    "dataProvider",
    "license",
    "zone",
    "carrier",
    "sector",
    "granularity",
    "suppressed",
    "suppressionReason",
)


def timestamp(value: Any) -> str:
    """RFC 3339 UTC (``...Z``), as NGSI-LD ``observedAt`` is written: the same text as
    protobuf's ``ToJsonString`` (3, 6 or 9 fraction digits when needed), about twenty
    times faster, which matters for a month of hourly buckets."""
    seconds, nanos = value.seconds, value.nanos
    t = time.gmtime(seconds)
    text = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    if not nanos:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{text}.{nanos // 1000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def entity_id(entity: Any) -> str:
    return build_id(entity.entity_type, entity.city, entity.entity)


def geo_point(entity: Any) -> dict[str, Any] | None:
    if not entity.HasField("position"):
        return None
    return {"type": "Point", "coordinates": [entity.position.lon, entity.position.lat]}


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **{k: v for k, v in extra.items() if v}}


def date_time(value: Any) -> dict[str, str]:
    return {"@type": "DateTime", "@value": timestamp(value)}


def header(entity: Any) -> dict[str, Any]:
    """id, type, location and the descriptive properties every entity carries."""
    body: dict[str, Any] = {"id": entity_id(entity), "type": entity.entity_type}
    point = geo_point(entity)
    if point:
        body["location"] = {"type": "GeoProperty", "value": point}
    body["dataProvider"] = prop(entity.city)
    if entity.licence:
        body["license"] = prop(entity.licence)
    if entity.zone:
        body["zone"] = prop(entity.zone)
    for name in ("carrier", "sector", "granularity"):
        if getattr(entity, name):
            body[name] = prop(getattr(entity, name))
    return body


def normalized(entity: Any, names: Names) -> dict[str, Any]:
    """The normalized NGSI-LD entity (every attribute an object with its type)."""
    body = header(entity)
    reasons: list[str] = []
    for attribute in entity.attributes:
        if attribute.suppressed or not attribute.HasField("value"):
            reasons.append(attribute.suppression_reason or "suppressed")
            continue
        if not math.isfinite(attribute.value):
            continue
        body[names.attribute(entity.entity_type, attribute.metric)] = _measured(attribute)
    if reasons:
        body["suppressed"] = prop(True)
        body["suppressionReason"] = prop(sorted(set(reasons))[0])
    return body


def _measured(attribute: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "observedAt": timestamp(attribute.observed_at)
        if attribute.HasField("observed_at")
        else None,
        "unitCode": unit_code(attribute.unit) if attribute.unit else None,
    }
    if attribute.HasField("window_start"):
        extra["windowStart"] = prop(date_time(attribute.window_start))
    return prop(attribute.value, **extra)


def key_values(body: dict[str, Any]) -> dict[str, Any]:
    """keyValues (simplified): each attribute its value alone."""
    return {k: v["value"] if isinstance(v, dict) else v for k, v in body.items()}


def concise(body: dict[str, Any]) -> dict[str, Any]:
    """Concise: no ``type`` on attributes; a Property with nothing but its value is the
    value itself, a GeoProperty its GeoJSON (recognised by its GeoJSON ``type``)."""
    return {k: _concise_attribute(v) if isinstance(v, dict) else v for k, v in body.items()}


def _concise_attribute(attribute: dict[str, Any]) -> Any:
    if attribute.get("type") == "GeoProperty":
        return attribute["value"]
    rest = {
        k: _concise_attribute(v) if isinstance(v, dict) and "type" in v else v
        for k, v in attribute.items()
        if k != "type"
    }
    return rest["value"] if set(rest) == {"value"} and not isinstance(rest["value"], dict) else rest


def expand_concise(body: dict[str, Any]) -> dict[str, Any]:
    """Concise back to normalized, as a client would read it (the inverse of concise)."""
    return {k: v if k in ("id", "type") else _expand(v) for k, v in body.items()}


def _expand(value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and value.get("type") in ("Point", "Polygon"):
        return {"type": "GeoProperty", "value": value}
    if isinstance(value, dict) and "value" in value:
        return {
            "type": "Property",
            **{
                k: _expand(v) if isinstance(v, dict) and "value" in v else v
                for k, v in value.items()
            },
        }
    return {"type": "Property", "value": value}


def project(body: dict[str, Any], attrs: tuple[str, ...]) -> dict[str, Any]:
    """Only the attributes ``attrs`` names (NGSI-LD ``attrs``), with id and type; a
    suppressed cell keeps its flag so an absent value is never mistaken for no data."""
    if not attrs:
        return body
    keep = {"id", "type", "@context", "suppressed", "suppressionReason", *attrs}
    return {k: v for k, v in body.items() if k in keep}


def represent(entity: Any, names: Names, fmt: str, attrs: tuple[str, ...] = ()) -> dict[str, Any]:
    body = project(normalized(entity, names), attrs)
    if fmt == "keyValues":
        return key_values(body)
    if fmt == "concise":
        return concise(body)
    return body
