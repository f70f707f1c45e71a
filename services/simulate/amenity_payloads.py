"""Bike stations and counters, car parks, charging points and weather stations in the
forms their city files declare.

Smart Data Models sources (Angers's bike stations, Lyon's and Nice's car parks,
every city's charging points, Paris's and Nice's weather stations) get
BikeHireDockingStation / OffStreetParking / EVChargingStation / WeatherObserved
entities with a GeoJSON Point ``location`` ([lon, lat]); the other sources get their
portal's own export: Lyon's Vélo'v feed (one JSON object per station,
``lat``/``lng``), Bordeaux's car parks (a JSON array, ``geo_point_2d``) and Paris's
bike counters (the
``comptage-velo-donnees-compteurs`` CSV, ``"lat,lon"``). One reading per place and
hour of the local day; a reading's time is its hour's start.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.runtime.cities import SourceConfig
from services.runtime.errors import ConfigError
from services.simulate.amenities import (
    Place,
    air_temperature,
    counted_bikes,
    docked_bikes,
    free_chargers,
    free_spaces,
)
from services.simulate.observations import TRANSPORTATION_CONTEXT, Attribute, entity
from services.simulate.timegrid import utc_iso

PARKING_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
)
PARIS_BIKE_COLUMNS = (
    "Identifiant du compteur",
    "Nom du compteur",
    "Identifiant du site de comptage",
    "Nom du site de comptage",
    "Comptage horaire",
    "Date et heure de comptage",
    "Date d'installation du site de comptage",
    "Lien vers photo du site de comptage",
    "Coordonnées géographiques",
    "Identifiant technique compteur",
    "ID Photos",
    "test_lien_vers_photos_du_site_de_comptage_",
    "id_photo_1",
    "url_sites",
    "type_dimage",
    "mois_annee_comptage",
)
WEATHER_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld"
)
Level = Callable[[Place, datetime, random.Random], float]


@dataclass(frozen=True)
class AmenityBlock:
    """One local day of hourly levels (bikes docked or counted, free spaces) per place."""

    city: str
    places: tuple[Place, ...]
    starts: list[datetime]  # UTC hour starts
    local: list[datetime]
    levels: list[list[float]]  # per place, per hour

    @property
    def rows(self) -> int:
        return sum(len(row) for row in self.levels)


def levels_of(
    city: str,
    places: tuple[Place, ...],
    starts: list[datetime],
    local: list[datetime],
    level: Level,
    rng: random.Random,
) -> AmenityBlock:
    """Every place's level at every hour (drawn in place order, then hour order)."""
    levels = [[level(place, moment, rng) for moment in local] for place in places]
    return AmenityBlock(city, places, starts, local, levels)


def _point(place: Place) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [place.lon, place.lat]}


def _when(form: str, start: datetime, local: datetime) -> str:
    return local.isoformat(timespec="seconds") if form == "sdm-keyvalues" else utc_iso(start)


def bike_station_entities(source: SourceConfig, data: AmenityBlock) -> bytes:
    """BikeHireDockingStation entities, station after station, hour after hour."""
    entities = []
    for place, row in zip(data.places, data.levels, strict=True):
        for start, local, bikes in zip(data.starts, data.local, row, strict=True):
            attributes = [
                Attribute("observationDateTime", _when(source.format, start, local), "DateTime"),
                Attribute("availableBikeNumber", bikes, measured=True),
                Attribute("freeSlotNumber", place.capacity - bikes, measured=True),
                Attribute("totalSlotNumber", place.capacity, measured=True),
                Attribute("stationName", place.name, "Text"),
                Attribute("status", "working", "Text"),
                Attribute("location", _point(place), "geo:json"),
            ]
            key = f"{data.city}-{place.code}"
            entities.append(
                entity(
                    source.format,
                    "BikeHireDockingStation",
                    key,
                    attributes,
                    start,
                    TRANSPORTATION_CONTEXT,
                )
            )
    return _json_array(entities)


def car_park_entities(source: SourceConfig, data: AmenityBlock) -> bytes:
    """OffStreetParking entities, car park after car park, hour after hour."""
    entities = []
    for place, row in zip(data.places, data.levels, strict=True):
        for start, local, free in zip(data.starts, data.local, row, strict=True):
            attributes = [
                Attribute("occupancyModified", _when(source.format, start, local), "DateTime"),
                Attribute("availableSpotNumber", free, measured=True),
                Attribute("totalSpotNumber", place.capacity, measured=True),
                Attribute("name", place.name, "Text"),
                Attribute("category", ["public", "underground"], "StructuredValue"),
                Attribute("location", _point(place), "geo:json"),
            ]
            key = f"{data.city}-{place.code}"
            entities.append(
                entity(source.format, "OffStreetParking", key, attributes, start, PARKING_CONTEXT)
            )
    return _json_array(entities)


def charging_entities(source: SourceConfig, data: AmenityBlock) -> bytes:
    """EVChargingStation entities (the IRVE points as a city broker republishes them)."""
    entities = []
    for place, row in zip(data.places, data.levels, strict=True):
        for start, local, free in zip(data.starts, data.local, row, strict=True):
            attributes = [
                Attribute("observationDateTime", _when(source.format, start, local), "DateTime"),
                Attribute("availableCapacity", free, measured=True),
                Attribute("capacity", place.capacity, measured=True),
                Attribute("stationName", place.name, "Text"),
                Attribute("socketType", ["Type2", "Combo2"], "StructuredValue"),
                Attribute("location", _point(place), "geo:json"),
            ]
            key = f"{data.city}-{place.code}"
            entities.append(
                entity(
                    source.format, "EVChargingStation", key, attributes, start,
                    TRANSPORTATION_CONTEXT,
                )
            )  # fmt: skip
    return _json_array(entities)


def weather_entities(source: SourceConfig, data: AmenityBlock) -> bytes:
    """WeatherObserved entities: the air temperature of each station and hour."""
    entities = []
    for place, row in zip(data.places, data.levels, strict=True):
        for start, local, celsius in zip(data.starts, data.local, row, strict=True):
            attributes = [
                Attribute("dateObserved", _when(source.format, start, local), "DateTime"),
                Attribute("temperature", celsius, unit="CEL", measured=True),
                Attribute("name", place.name, "Text"),
                Attribute("location", _point(place), "geo:json"),
            ]
            key = f"{data.city}-{place.code}"
            entities.append(
                entity(source.format, "WeatherObserved", key, attributes, start, WEATHER_CONTEXT)
            )
    return _json_array(entities)


def velov_lines(source: SourceConfig, data: AmenityBlock) -> bytes:
    """Lyon's Vélo'v feed: one JSON object per station and reading, lat/lng."""
    lines = []
    for place, row in zip(data.places, data.levels, strict=True):
        for local, bikes in zip(data.local, row, strict=True):
            record = {
                "number": int(place.code),
                "name": place.name,
                "address": place.name.split(" / ")[-1],
                "status": "OPEN",
                "bike_stands": place.capacity,
                "available_bikes": bikes,
                "available_bike_stands": place.capacity - bikes,
                "last_update": local.isoformat(timespec="seconds"),
                "lat": place.lat,
                "lng": place.lon,
            }
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def bordeaux_car_parks(source: SourceConfig, data: AmenityBlock) -> bytes:
    """Bordeaux Métropole's car-park records: a JSON array, geo_point_2d {lon, lat}."""
    records = []
    for place, row in zip(data.places, data.levels, strict=True):
        for local, free in zip(data.local, row, strict=True):
            records.append(
                {
                    "ident": place.code,
                    "nom": place.name,
                    "etat": "LIBRE" if free else "COMPLET",
                    "libres": free,
                    "total": place.capacity,
                    "ts": local.isoformat(timespec="seconds"),
                    "geo_point_2d": {"lon": place.lon, "lat": place.lat},
                }
            )
    return _json_array(records)


def paris_bike_counts(source: SourceConfig, data: AmenityBlock) -> bytes:
    """Paris's comptage-velo-donnees-compteurs export (``;``, photos left empty)."""
    out = io.StringIO()
    separator = source.csv.separator if source.csv else ";"
    writer = csv.writer(out, delimiter=separator, lineterminator="\n")
    writer.writerow(PARIS_BIKE_COLUMNS)
    for place, row in zip(data.places, data.levels, strict=True):
        site = place.code.split("-")[0]
        for local, count in zip(data.local, row, strict=True):
            writer.writerow(
                (
                    place.code,
                    place.name,
                    site,
                    place.name.rsplit(" ", 1)[0],
                    f"{count}.0",
                    local.isoformat(timespec="seconds"),
                    "2012-02-22",
                    "",
                    f"{place.lat},{place.lon}",
                    f"X2H{site[-8:]}",
                    "",
                    "",
                    "",
                    f"https://www.eco-visio.net/Photos/{site}",
                    "jpg",
                    local.strftime("%Y-%m"),
                )
            )
    return out.getvalue().encode("utf-8")


Renderer = Callable[[SourceConfig, AmenityBlock], bytes]
_SDM = ("sdm-keyvalues", "ngsi-v2-normalized", "ngsi-ld")


def renderer(kind: str, source: SourceConfig) -> tuple[Renderer, Level]:
    """How a source of ``kind`` (bikes, counters, parking, charging, weather) is
    written, and its levels."""
    if kind == "bikes" and source.format in _SDM:
        return bike_station_entities, docked_bikes
    if kind == "bikes" and source.format == "ndjson":
        return velov_lines, docked_bikes
    if kind == "counters" and source.format == "csv":
        return paris_bike_counts, counted_bikes
    if kind == "parking" and source.format in _SDM:
        return car_park_entities, free_spaces
    if kind == "parking" and source.format == "json":
        return bordeaux_car_parks, free_spaces
    if kind == "charging" and source.format in _SDM:
        return charging_entities, free_chargers
    if kind == "weather" and source.format in _SDM:
        return weather_entities, air_temperature
    raise ConfigError(
        f"the simulator cannot write {kind} for {source.city}/{source.id} ({source.format})"
    )


def _json_array(items: list[dict[str, Any]]) -> bytes:
    lines = [json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in items]
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")
