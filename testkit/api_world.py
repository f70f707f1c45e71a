"""The cities, partners and readings the common API's whole-node tests and bench
serve: what each source is (entity type, personal or not), who it is shared with,
and the readings a node's warehouse is seeded with.

Two cities, each on its own node. Two partners that must never see each other's
data: ``enedis`` (the electricity operator, shared the household meters) and
``keolis`` (the transport operator, shared the car parks). Every city also has an
internal source (water, never leaves) and a personal source its city file marked
open by mistake (``linky-open``): the policy must still keep its entities from the
public. Seeded directly into the warehouse (no pipeline run), so that a module's
two nodes are up in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

T0_US = 1_736_722_800_000_000  # 2025-01-13T00:00:00+01:00 (23:00 UTC the day before)
HOUR_US = 3_600_000_000
STEP_S = 600
ZONES = ("z1", "z2")
CENTRES = {"lyon": (45.7640, 4.8357), "paris": (48.8566, 2.3522), "nice": (43.7102, 7.2620)}
PARTNER_A = "enedis"
PARTNER_B = "keolis"
OPEN_LICENCE = "Licence-Ouverte-2.0"
# An air station key as real open data spells it (a space and a slash): the NGSI-LD
# id percent-encodes it, and a client must get it back through the path.
ODD_KEY = "FR 20062/A"


@dataclass(frozen=True)
class Source:
    id: str
    domain: str
    dataset: str
    metric: str
    unit: str
    entity_type: str
    personal: bool
    located: bool  # a fixed public position (stations, car parks), never for homes


SOURCES = (
    Source(
        "air",
        "environment",
        "air-quality-observed",
        "no2",
        "µg/m3",
        "AirQualityObserved",
        False,
        True,
    ),
    Source(
        "traffic",
        "mobility",
        "traffic-flow-observed",
        "traffic_intensity",
        "count",
        "TrafficFlowObserved",
        False,
        True,
    ),
    Source(
        "parking",
        "parking",
        "parking-availability",
        "parking_available_spots",
        "count",
        "OffStreetParking",
        False,
        True,
    ),
    Source(
        "meters",
        "energy",
        "courbes-de-charge-10min",
        "active_energy_import",
        "kWh",
        "ElectricityConsumptionObserved",
        True,
        False,
    ),
    Source(
        "linky-open",
        "energy",
        "linky-open-by-mistake",
        "active_energy_import",
        "kWh",
        "ElectricityConsumptionObserved",
        True,
        False,
    ),
    Source(
        "water",
        "water",
        "water-consumption-observed",
        "water_volume",
        "m3",
        "WaterConsumptionObserved",
        True,
        False,
    ),
)
OPEN_SOURCES = ("air", "traffic")
# What the cities' files say for catalogues (services/runtime/city_catalogue.py).
CATALOGUE_FACTS = {
    "lyon": {
        "contact": "opendata@lyon.citeplus.example",
        "insee": "200046977",
        "siren": "200046977",
    },
    "paris": {"contact": "opendata@paris.citeplus.example", "insee": "75056", "siren": "217500016"},
    "nice": {"insee": "06088"},
}


def sharing_of(city: str, source: str) -> dict | None:
    """The sharing section of a source of ``city`` (None: internal).

    Each city's peers must be named beside the partner for a shared dataset to reach
    the partner through another node: a peer relaying a partner only narrows."""
    peers = [c for c in CENTRES if c != city]
    table: dict[str, dict | None] = {
        "air": {"level": "open", "licence": OPEN_LICENCE},
        "traffic": {"level": "open", "licence": "ODbL-1.0"},
        "parking": {"level": "shared", "partners": sorted([PARTNER_B, *peers])},
        "meters": {"level": "shared", "partners": sorted([PARTNER_A, *peers])},
        "linky-open": {"level": "open", "licence": OPEN_LICENCE},
        "water": None,
    }
    return table[source]


def write_city(directory: Path, code: str) -> Path:
    """The city file: every source with its sharing and its privacy declaration."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = []
    for source in SOURCES:
        entry: dict[str, Any] = {
            "id": source.id,
            "format": "ndjson",
            "dataset": source.dataset,
            "domain": source.domain,
            "entity": "id",
            "token": "env:CITEPLUS_TEST_TOKEN",
            "privacy": {"version": "2025-01", "personal": source.personal},
        }
        sharing = sharing_of(code, source.id)
        if sharing:
            entry["sharing"] = sharing
        sources.append(entry)
    document = {
        "code": code,
        "name": code.title(),
        "timezone": "Europe/Paris",
        **CATALOGUE_FACTS.get(code, {}),
        "sources": sources,
    }
    path = directory / f"{code}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")
    return path


def entity_key(city: str, source: str, zone: str, index: int) -> str:
    if source == "air" and zone == ZONES[0] and index == 0:
        return f"{city}-{ODD_KEY}"
    return f"{city}-{source}-{zone}-{index}"


def position(city: str, zone_index: int, index: int) -> dict[str, float]:
    """Stations on a small grid north-east of the city centre (about 1 km apart)."""
    lat, lon = CENTRES[city]
    return {"lat": round(lat + 0.009 * index, 6), "lon": round(lon + 0.013 * zone_index, 6)}


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def observation(city: str, source: Source, zone: int, index: int, days: int) -> dict:
    """A regular 10-minute series of one entity and metric over ``days`` days."""
    n = 144 * days
    key = entity_key(city, source.id, ZONES[zone], index)
    return {
        "city": city,
        "domain": source.domain,
        "metric": source.metric,
        "unit": source.unit,
        "entity_pseudonym": key,
        "entity_type": source.entity_type,
        "zone": ZONES[zone],
        "position": position(city, zone, index) if source.located else None,
        "start": T0_US,
        "step_seconds": STEP_S,
        "times": [],
        "values": [float(10 * (index + 1) + zone + (i % 12)) for i in range(n)],
        "quality": [],
        "source": source.id,
        "dataset": source.dataset,
        "lineage_id": f"{key}-{T0_US}",
        "key_epoch": "2025-01",
        "sector": "residential" if source.domain == "energy" else None,
        "carrier": "electricity" if source.domain == "energy" else None,
    }


def observations(city: str, days: int, entities: int) -> list[dict]:
    return [
        observation(city, source, zone, index, days)
        for source in SOURCES
        for zone in range(len(ZONES))
        for index in range(entities)
    ]
