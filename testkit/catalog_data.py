"""Federation ``Dataset`` messages as nodes list them, for the catalogue's unit tests."""

from __future__ import annotations

from typing import Any

from services.api.catalog.build import Listed
from services.federation.protos import pb

LYON = pb.Publisher(
    name="Lyon",
    contact_email="opendata@lyon.citeplus.example",
    insee="200046977",
    siren="200046977",
)
PARIS = pb.Publisher(name="Paris", insee="75056", siren="217500016")
T0 = 1_736_722_800  # 2025-01-12T23:00:00Z


def dataset(city: str, source: str, publisher: Any, **fields: Any) -> Any:
    entry = pb.Dataset(
        id=f"{city}/{source}",
        city=city,
        source=source,
        name=fields.pop("name", source),
        domain=fields.pop("domain", "environment"),
        publisher=publisher,
        frequency=fields.pop("frequency", "CONT"),
        **fields,
    )
    if entry.metrics:
        entry.coverage.first.seconds, entry.coverage.last.seconds = T0, T0 + 86_400
        entry.coverage.count = 288
    return entry


def sample_listing() -> list[Listed]:
    """Two nodes' listings: open (both licences), shared, aggregates, withheld, no data."""
    lyon = [
        dataset(
            "lyon",
            "air",
            LYON,
            name="air-quality-observed",
            metrics=["no2", "pm10"],
            level=pb.SHARING_LEVEL_OPEN,
            licence="ODbL-1.0",
            entity_types=["AirQualityObserved"],
            topic="public.observations.v1",
            schema_subject="public.observations.v1-value",
            record_type="citeplus.v1.Observation",
        ),
        dataset(
            "lyon",
            "meters",
            LYON,
            domain="energy",
            metrics=["active_energy_import"],
            level=pb.SHARING_LEVEL_SHARED,
            entity_types=["ElectricityConsumptionObserved"],
            topic="shared.observations.v1.enedis",
            frequency="DAILY",
        ),
        dataset(
            "lyon",
            "energy-aggregates",
            LYON,
            domain="energy",
            metrics=["energy_kwh"],
            level=pb.SHARING_LEVEL_OPEN,
            licence="Licence-Ouverte-2.0",
            frequency="DAILY",
            entity_types=["CitePlusEnergyAggregate"],
            topic="public.energy.aggregates.v2",
        ),
    ]
    paris = [
        dataset(
            "paris",
            "linky-open",
            PARIS,
            domain="energy",
            metrics=["active_energy_import"],
            level=pb.SHARING_LEVEL_OPEN,
            licence="Licence-Ouverte-2.0",
            entities_withheld=True,
            entity_types=["ElectricityConsumptionObserved"],
        ),
        dataset(
            "paris",
            "traffic",
            PARIS,
            domain="mobility",
            level=pb.SHARING_LEVEL_OPEN,
            licence="CC-BY-4.0",
        ),
    ]
    return [Listed("lyon", "127.0.0.1:7443", d) for d in lyon] + [
        Listed("paris", "10.0.0.2:7443", d) for d in paris
    ]
