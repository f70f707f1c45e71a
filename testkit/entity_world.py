"""A small city for entity and temporal queries: positions, types, personal sources.

Lyon (the node) hosts five sources: open air-quality stations and car parks (public
infrastructure), household meters the city (wrongly) marked open but declared
personal, household meters shared with paris, and internal water meters. Two days
of hourly readings from T0, and released hourly energy aggregates (zone z4
suppressed). ``FederationWorld`` serves it from an in-process federation server on
its own chDB warehouse, over mutual TLS, so tests and benches read it the way the
common API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.federation.certs import ensure_dev_certificates
from services.federation.client import FederationClient
from services.policy.federation import certificate_paths, load_federation
from services.runtime.cities import load_cities
from services.runtime.codec import Contracts
from services.runtime.config import load_node_config

T0 = 1_736_722_800_000_000  # 2025-01-13T00:00:00+01:00
HOUR_US = 3_600_000_000
HOURS = 48
OPEN = {"level": "open", "licence": "ODbL-1.0"}
PUBLIC_INFRASTRUCTURE = {"personal": False}
HOUSEHOLDS = {"personal": True}


@dataclass(frozen=True)
class Source:
    id: str
    domain: str
    metric: str
    unit: str
    entity_type: str
    sharing: dict[str, Any] | None
    privacy: dict[str, Any]
    # entity key -> (lat, lon) or None
    entities: dict[str, tuple[float, float] | None]


SOURCES = (
    Source(
        "air",
        "environment",
        "no2",
        "ug/m3",
        "AirQualityObserved",
        OPEN,
        PUBLIC_INFRASTRUCTURE,
        {"air-1": (45.7600, 4.8400), "air-2": (45.7500, 4.8500), "air-3": (45.7000, 4.9000)},
    ),
    Source(
        "parking",
        "parking",
        "available_spots",
        "1",
        "OffStreetParking",
        OPEN,
        PUBLIC_INFRASTRUCTURE,
        {"P-Bellecour": (45.7570, 4.8320), "P:Part Dieu/2": (45.7610, 4.8590), "P-nowhere": None},
    ),
    Source(
        "meters-open",
        "energy",
        "active_energy_import",
        "kWh",
        "ElectricityMeter",
        OPEN,  # a city mistake: personal data never leaves entity by entity
        HOUSEHOLDS,
        {"m-open-1": (45.7600, 4.8400), "m-open-2": (45.7501, 4.8501)},
    ),
    Source(
        "meters",
        "energy",
        "active_energy_import",
        "kWh",
        "ElectricityMeter",
        {"level": "shared", "partners": ["paris"]},
        HOUSEHOLDS,
        {"m-shared-1": (45.7600, 4.8400)},
    ),
    Source(
        "water",
        "water",
        "water_volume",
        "m3",
        "WaterMeter",
        None,  # internal
        HOUSEHOLDS,
        {"w-1": (45.7600, 4.8400)},
    ),
)
# Air station air-2 also measures pm10; internal water meter w-1 also a metric no one
# else has (a condition on it must tell nothing).
EXTRA_METRICS = {("air", "air-2"): ("pm10", "ug/m3"), ("water", "w-1"): ("leak_index", "1")}


def value(source: str, entity: str, metric: str, hour: int) -> float:
    """A reading, distinct per entity and hour (so latest values are recognisable)."""
    base = sum(ord(c) for c in f"{source}/{entity}/{metric}") % 50
    return float(base + hour % 24)


def write_city(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sources = []
    for source in SOURCES:
        entry: dict[str, Any] = {
            "id": source.id,
            "format": "ndjson",
            "dataset": f"{source.id}-dataset",
            "domain": source.domain,
            "entity": "id",
            "token": "env:CITEPLUS_TEST_TOKEN",
            "privacy": source.privacy,
        }
        if source.sharing:
            entry["sharing"] = source.sharing
        sources.append(entry)
    document = {"code": "lyon", "name": "Lyon", "timezone": "Europe/Paris", "sources": sources}
    path = directory / "lyon.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _series(source: Source, entity: str, metric: str, unit: str, hours: int) -> dict:
    position = source.entities[entity]
    return {
        "city": "lyon",
        "domain": source.domain,
        "metric": metric,
        "unit": unit,
        "entity_pseudonym": entity,
        "entity_type": source.entity_type,
        "zone": "z1" if entity.endswith("1") else "z2",
        "position": None if position is None else {"lat": position[0], "lon": position[1]},
        "start": T0,
        "step_seconds": 3600,
        "times": [],
        "values": [value(source.id, entity, metric, h) for h in range(hours)],
        "quality": [],
        "source": source.id,
        "dataset": f"{source.id}-dataset",
        "lineage_id": f"{source.id}-{entity}-{metric}",
        "key_epoch": "2025-01",
        "sector": None,
        "carrier": None,
    }


def observations(hours: int = HOURS) -> list[dict]:
    records = []
    for source in SOURCES:
        for entity in source.entities:
            records.append(_series(source, entity, source.metric, source.unit, hours))
            extra = EXTRA_METRICS.get((source.id, entity))
            if extra:
                records.append(_series(source, entity, *extra, hours))
    return records


def stations(count: int, hours: int) -> list[dict]:
    """``count`` more open air stations (benches): hourly NO2 over ``hours``, placed
    on a grid of about 100 m around Lyon's centre."""
    air = SOURCES[0]
    records = []
    for i in range(count):
        key = f"air-s{i:05d}"
        position = (45.70 + (i // 100) * 0.001, 4.80 + (i % 100) * 0.0013)
        spread = Source(**{**air.__dict__, "entities": {key: position}})
        records.append(_series(spread, key, air.metric, air.unit, hours))
    return records


def released(hours: int = HOURS) -> list[dict]:
    """Released hourly energy windows of zones z1 (shown) and z4 (suppressed)."""
    cells = []
    for zone in ("z1", "z4"):
        for hour in range(hours):
            start = T0 + hour * HOUR_US
            hidden = zone == "z4"
            cells.append(
                {
                    "city": "lyon",
                    "zone": zone,
                    "carrier": "electricity",
                    "sector": "*",
                    "granularity": "PT1H",
                    "window_start": start,
                    "window_end": start + HOUR_US,
                    "energy_kwh": None if hidden else 100.0 + hour,
                    "meter_count": None if hidden else 40,
                    "peak_kw": None if hidden else 12.5,
                    "suppressed": hidden,
                    "suppression_reason": "too-few-meters" if hidden else None,
                    "closed_by": "watermark",
                    "released_at": start + 26 * HOUR_US,
                    "partial": False,
                    "derived": False,
                }
            )
    return cells


def fill(warehouse: Any, hours: int = HOURS, extra_stations: int = 0) -> None:
    from services.publish.rows import Landed, observations_table, released_table

    records = observations(hours) + stations(extra_stations, hours)
    for first in range(0, len(records), 500):
        chunk = records[first : first + 500]
        landed = [Landed(r, "seed", 0, first + i) for i, r in enumerate(chunk)]
        warehouse.insert_arrow("observations", observations_table(landed))
    cells = [Landed(r, "seed", 0, i) for i, r in enumerate(released(hours))]
    warehouse.insert_arrow("energy_aggregates_released", released_table(cells))


class FederationWorld:
    """Lyon's federation server in this process, on a filled chDB warehouse."""

    def __init__(self, root: Path, hours: int = HOURS, extra_stations: int = 0):
        from services.federation.server import FederationServer
        from services.warehouse.chdb_embedded import ChdbWarehouse
        from services.warehouse.migrations import migrate

        root.mkdir(parents=True, exist_ok=True)
        node_file = root / "node.yaml"
        node_file.write_text(
            f"node: {{id: lyon, state_dir: '{root / 'state'}'}}\n"
            "federation: {listen: '127.0.0.1:0'}\n",
            encoding="utf-8",
        )
        self.node = load_node_config(node_file, env={})
        self.config = load_federation(self.node)
        ensure_dev_certificates(self.config.certs_dir, ["lyon", "paris", "nice"])
        write_city(root / "cities")
        self.warehouse = ChdbWarehouse(root / "warehouse")
        migrate(self.warehouse)
        fill(self.warehouse, hours, extra_stations)
        self.server = FederationServer(
            self.node, self.config, load_cities(root / "cities"), self.warehouse, Contracts({})
        ).start()

    def client(self, identity: str, on_behalf_of: str | None = None) -> FederationClient:
        """A client holding ``identity``'s certificate, relaying ``on_behalf_of``."""
        return FederationClient.connect(
            self.server.address,
            certificate_paths(self.config.certs_dir, identity),
            "lyon",
            on_behalf_of=on_behalf_of,
        )

    def close(self) -> None:
        self.server.stop(grace=1)
        self.warehouse.close()
