"""Temporal entities as NGSI-LD temporal representations.

- normalized: each attribute an array of instances ``{type, value, observedAt, unitCode}``;
- concise: the same instances without ``type``;
- temporalValues (and keyValues, the simplified temporal form):
  ``{"type": "Property", "values": [[value, observedAt], ...]}``;
- aggregatedValues: ``{"type": "Property", "<method>": [[value, start, end], ...]}``.

A window whose value statistical secrecy suppressed keeps its place in a series with
the NGSI-LD Null (``urn:ngsi-ld:null``) as its value and ``suppressed: true``: the
value is absent, the gap is visible. Temporal forms carry no ``location`` (read the
entity for it).
"""

from __future__ import annotations

import math
from typing import Any

from services.api.ngsi.names import Names
from services.api.ngsi.represent import NGSI_NULL, entity_id, timestamp
from services.runtime.units import unit_code


def temporal_entity(item: Any, names: Names, fmt: str, mode: str, methods: tuple[str, ...]):
    """One TemporalEntity of the federation API in the asked representation."""
    entity = item.entity
    body: dict[str, Any] = {"id": entity_id(entity), "type": entity.entity_type}
    for series in item.series:
        name = names.attribute(entity.entity_type, series.metric)
        if mode == "aggregatedValues":
            body[name] = aggregated(series, methods)
        elif mode == "temporalValues" or fmt == "keyValues":
            body[name] = temporal_values(series)
        else:
            body[name] = instances(series, concise=fmt == "concise")
    return body


def _points(series: Any) -> list[tuple[Any, str, bool]]:
    suppressed = list(series.suppressed) or [False] * len(series.values)
    found = []
    for time, value, hidden in zip(series.times, series.values, suppressed, strict=False):
        if hidden or not math.isfinite(value):
            found.append((NGSI_NULL, timestamp(time), True))
        else:
            found.append((value, timestamp(time), False))
    return found


def instances(series: Any, concise: bool = False) -> list[dict[str, Any]]:
    code = unit_code(series.unit) if series.unit else None
    result = []
    for value, at, hidden in _points(series):
        instance: dict[str, Any] = {} if concise else {"type": "Property"}
        instance.update(value=value, observedAt=at)
        if code:
            instance["unitCode"] = code
        if hidden:
            instance["suppressed"] = True if concise else {"type": "Property", "value": True}
        result.append(instance)
    return result


def temporal_values(series: Any) -> dict[str, Any]:
    return {"type": "Property", "values": [[v, at] for v, at, _ in _points(series)]}


def aggregated(series: Any, methods: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "Property"}
    spans = [(bucket, timestamp(bucket.start), timestamp(bucket.end)) for bucket in series.buckets]
    for method in methods:
        body[method] = [
            [getattr(bucket, method), start, end]
            for bucket, start, end in spans
            if bucket.HasField(method) and math.isfinite(getattr(bucket, method))
        ]
    return body
