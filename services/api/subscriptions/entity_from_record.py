"""A published record as the entity the API would answer: a federation ``Entity``.

Subscriptions notify NGSI-LD entities, and the API already turns federation
``Entity`` messages into NGSI-LD (services/api/ngsi/represent.py: names, units,
ids, location, observedAt, suppression). So a record of ``Subscribe`` (Avro, a
dict once decoded) is turned into that same message here, and represent.py does
the rest: one implementation of names and units for queries and notifications.

An Observation record is a series of one metric; its entity carries that metric's
latest value of the series (the state the record leaves the entity in), as a
query of the entity right after it would. Every reading of the series stays in the
temporal API. A released energy aggregate is one cell, keyed like the API's
(zone~carrier~sector~granularity), its three figures or their suppression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from services.api.ngsi.names import ENERGY_TYPE
from services.federation.protos import pb

AGGREGATES_SOURCE = "energy-aggregates"
ENERGY_UNITS = (("energy_kwh", "kWh"), ("meter_count", "1"), ("peak_kw", "kW"))


def _set_us(target: Any, micros: int) -> None:
    target.seconds, rest = divmod(int(micros), 1_000_000)
    target.nanos = rest * 1000


def _last_time_us(record: Mapping[str, Any]) -> int:
    values = record.get("values") or ()
    times = record.get("times") or ()
    if times:
        return int(times[-1])
    return int(record["start"]) + max(0, len(values) - 1) * int(record["step_seconds"]) * 1_000_000


def observation_entity(record: Mapping[str, Any], licence: str = "") -> Any | None:
    """The entity an Observation record updates, None for a series without a value."""
    values = record.get("values") or ()
    if not values:
        return None
    entity = pb.Entity(
        city=record["city"],
        dataset=f"{record['city']}/{record['source']}",
        entity=record["entity_pseudonym"],
        entity_type=record.get("entity_type") or "",
        zone=record.get("zone") or "",
        licence=licence,
        carrier=record.get("carrier") or "",
        sector=record.get("sector") or "",
    )
    position = record.get("position")
    if position:
        entity.position.lat, entity.position.lon = position["lat"], position["lon"]
    quality = record.get("quality") or ()
    attribute = entity.attributes.add(
        metric=record["metric"],
        unit=record.get("unit") or "",
        quality=quality[-1] if quality else 0,
    )
    value = float(values[-1])
    if math.isfinite(value):
        attribute.value = value
    _set_us(attribute.observed_at, _last_time_us(record))
    return entity


def aggregate_entity(record: Mapping[str, Any], licence: str = "") -> Any:
    """The energy-aggregate cell a released window updates."""
    key = "~".join(record[k] for k in ("zone", "carrier", "sector", "granularity"))
    entity = pb.Entity(
        city=record["city"],
        dataset=f"{record['city']}/{AGGREGATES_SOURCE}",
        entity=key,
        entity_type=ENERGY_TYPE,
        zone=record["zone"],
        licence=licence,
        carrier=record["carrier"],
        sector=record["sector"],
        granularity=record["granularity"],
    )
    suppressed = bool(record.get("suppressed"))
    for metric, unit in ENERGY_UNITS:
        attribute = entity.attributes.add(
            metric=metric,
            unit=unit,
            suppressed=suppressed,
            suppression_reason=(record.get("suppression_reason") or "") if suppressed else "",
        )
        value = record.get(metric)
        if value is not None and not suppressed:
            attribute.value = float(value)
        _set_us(attribute.observed_at, record["window_end"])
        _set_us(attribute.window_start, record["window_start"])
    return entity


def record_entity(record: Mapping[str, Any], licences: Mapping[str, str]) -> Any | None:
    """Either kind of published record as its entity (licence from the catalogue)."""
    if "entity_pseudonym" in record:
        dataset = f"{record['city']}/{record['source']}"
        return observation_entity(record, licences.get(dataset, ""))
    dataset = f"{record['city']}/{AGGREGATES_SOURCE}"
    return aggregate_entity(record, licences.get(dataset, ""))
