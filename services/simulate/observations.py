"""Air-quality and traffic observations in the forms the city files declare.

Smart Data Models entities are written in whichever of the three forms a
source declares (NGSI-v2 key-values, NGSI-v2 normalized, NGSI-LD normalized),
from one list of attributes, so every city's station looks the same whatever
its broker. An entity keeps one id per station or sensor across hours (the
pipeline keys per-entity order on it); its time is in ``dateObserved`` and, in
NGSI-LD, in each measured attribute's ``observedAt``. Paris's traffic loops use
the ``comptages-routiers-permanents`` CSV export of its open-data portal instead.

Time formats: NGSI-LD and NGSI-v2 normalized in UTC (``...Z``), key-values in
local time with its offset, the Paris CSV in local time with offset.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.runtime.cities import SourceConfig
from services.runtime.errors import ConfigError
from services.simulate.ambient import AirQuality, TrafficFlow, traffic_state
from services.simulate.population import CITY_NAMES, RoadSensor, Station
from services.simulate.timegrid import utc_iso

ENVIRONMENT_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
TRANSPORTATION_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld"
HOUR = timedelta(hours=1)
PARIS_TRAFFIC_COLUMNS = (
    "Identifiant arc",
    "Libelle",
    "Date et heure de comptage",
    "Débit horaire",
    "Taux d'occupation",
    "Etat trafic",
    "Identifiant noeud amont",
    "Libelle noeud amont",
    "Identifiant noeud aval",
    "Libelle noeud aval",
    "Etat arc",
    "Date debut dispo data",
    "Date fin dispo data",
    "geo_point_2d",
    "geo_shape",
)


@dataclass(frozen=True)
class AirBlock:
    """Hourly readings of a city's stations over one local day (None: no reading)."""

    city: str
    stations: list[Station]
    starts: list[datetime]  # UTC hour starts
    local: list[datetime]
    values: list[list[AirQuality | None]]  # per station, per hour


@dataclass(frozen=True)
class TrafficBlock:
    """Hourly counts of a city's road sensors over one local day (None: loop fault)."""

    city: str
    sensors: list[RoadSensor]
    starts: list[datetime]
    local: list[datetime]
    flows: list[list[TrafficFlow | None]]  # per sensor, per hour


@dataclass(frozen=True)
class Attribute:
    """One attribute of an entity; ``kind`` is its NGSI-v2 type, ``unit`` a UN/CEFACT
    code, ``measured`` marks the values that carry ``observedAt`` in NGSI-LD."""

    name: str
    value: Any
    kind: str = "Number"
    unit: str | None = None
    measured: bool = False


def entity(
    form: str, model: str, key: str, attributes: list[Attribute], observed: datetime, context: str
) -> dict[str, Any]:
    """One Smart Data Models entity in the given form."""
    if form == "sdm-keyvalues":
        return {"id": f"{model}-{key}", "type": model} | {a.name: a.value for a in attributes}
    if form == "ngsi-v2-normalized":
        body: dict[str, Any] = {"id": f"{model}-{key}", "type": model}
        for a in attributes:
            body[a.name] = {"type": a.kind, "value": a.value}
            if a.unit:
                body[a.name]["metadata"] = {"unitCode": {"type": "Text", "value": a.unit}}
        return body
    if form == "ngsi-ld":
        body = {"id": f"urn:ngsi-ld:{model}:{key}", "type": model}
        for a in attributes:
            if a.kind == "geo:json":
                body[a.name] = {"type": "GeoProperty", "value": a.value}
                continue
            value = {"@type": "DateTime", "@value": a.value} if a.kind == "DateTime" else a.value
            body[a.name] = {"type": "Property", "value": value}
            if a.unit:
                body[a.name]["unitCode"] = a.unit
            if a.measured:
                body[a.name]["observedAt"] = utc_iso(observed)
        body["@context"] = [context]
        return body
    raise ConfigError(f"the simulator cannot write Smart Data Models entities as {form!r}")


def air_entities(source: SourceConfig, block: AirBlock) -> bytes:
    """AirQualityObserved entities, station after station, hour after hour."""
    entities = []
    for station, readings in zip(block.stations, block.values, strict=True):
        for start, local, reading in zip(block.starts, block.local, readings, strict=True):
            if reading is None:
                continue
            attributes = [
                Attribute("dateObserved", _time(source.format, start, local), "DateTime"),
                *(
                    Attribute(name, round(value, 1), unit="GQ", measured=True)
                    for name, value in (
                        ("no2", reading.no2),
                        ("pm10", reading.pm10),
                        ("pm25", reading.pm25),
                        ("o3", reading.o3),
                    )
                ),
                Attribute("name", station.name, "Text"),
                Attribute("areaServed", CITY_NAMES[block.city], "Text"),
                Attribute("typeOfLocation", "outdoor", "Text"),
                Attribute(
                    "location",
                    {"type": "Point", "coordinates": [station.lon, station.lat]},
                    "geo:json",
                ),
            ]
            key = f"{block.city}-{station.code}"
            entities.append(
                entity(
                    source.format, "AirQualityObserved", key, attributes, start, ENVIRONMENT_CONTEXT
                )
            )
    return _json_array(entities)


def traffic_entities(source: SourceConfig, block: TrafficBlock) -> bytes:
    """TrafficFlowObserved entities: vehicles counted during each hour."""
    entities = []
    for sensor, flows in zip(block.sensors, block.flows, strict=True):
        for start, local, flow in zip(block.starts, block.local, flows, strict=True):
            if flow is None:
                continue
            end = start + HOUR
            attributes = [
                Attribute("dateObserved", _time(source.format, start, local), "DateTime"),
                Attribute("dateObservedFrom", utc_iso(start), "DateTime"),
                Attribute("dateObservedTo", utc_iso(end), "DateTime"),
                Attribute("intensity", round(flow.intensity), measured=True),
                Attribute("occupancy", round(flow.occupancy, 3), measured=True),
                Attribute(
                    "averageVehicleSpeed", round(flow.speed_kmh, 1), unit="KMH", measured=True
                ),
                Attribute("laneDirection", "forward", "Text"),
                Attribute("name", sensor.road, "Text"),
                Attribute(
                    "address",
                    {
                        "addressCountry": "FR",
                        "addressLocality": CITY_NAMES[block.city],
                        "streetAddress": sensor.road,
                    },
                    "StructuredValue",
                ),
                Attribute(
                    "location",
                    {"type": "LineString", "coordinates": [list(sensor.start), list(sensor.end)]},
                    "geo:json",
                ),
            ]
            key = f"{block.city}-{sensor.code}"
            entities.append(
                entity(
                    source.format,
                    "TrafficFlowObserved",
                    key,
                    attributes,
                    start,
                    TRANSPORTATION_CONTEXT,
                )
            )
    return _json_array(entities)


def paris_traffic_csv(source: SourceConfig, block: TrafficBlock) -> bytes:
    """The open-data export of Paris's permanent counting loops (BOM, ``;``, CRLF).

    Occupancy is in percent there, and a faulty loop gives an empty count and
    ``Inconnu``, as in the real export.
    """
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=source.csv.separator if source.csv else ";", lineterminator="\r\n"
    )
    writer.writerow(PARIS_TRAFFIC_COLUMNS)
    for sensor, flows in zip(block.sensors, block.flows, strict=True):
        (lon_a, lat_a), (lon_b, lat_b) = sensor.start, sensor.end
        point = f"{(lat_a + lat_b) / 2}, {(lon_a + lon_b) / 2}"
        shape = json.dumps({"coordinates": [[lon_a, lat_a], [lon_b, lat_b]], "type": "LineString"})
        for local, flow in zip(block.local, flows, strict=True):
            if flow is None:
                count, rate, state = "", "", traffic_state(None)
            else:
                percent = flow.occupancy * 100
                count = f"{round(flow.intensity)}.0"
                rate = f"{percent:.5f}".rstrip("0").rstrip(".")
                state = traffic_state(percent)
            writer.writerow(
                (
                    sensor.code,
                    sensor.road,
                    local.isoformat(timespec="seconds"),
                    count,
                    rate,
                    state,
                    *sensor.upstream,
                    *sensor.downstream,
                    "Ouvert",
                    "2005-01-01",
                    "2030-12-31",
                    point,
                    shape,
                )
            )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


AirRenderer = Callable[[SourceConfig, AirBlock], bytes]
TrafficRenderer = Callable[[SourceConfig, TrafficBlock], bytes]


def traffic_renderer(source: SourceConfig) -> TrafficRenderer:
    """The Paris CSV export for a csv source, Smart Data Models entities otherwise."""
    return paris_traffic_csv if source.format == "csv" else traffic_entities


def _time(form: str, start: datetime, local: datetime) -> str:
    if form == "sdm-keyvalues":
        return local.isoformat(timespec="seconds")
    return utc_iso(start)


def _json_array(entities: list[dict[str, Any]]) -> bytes:
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in entities]
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")
