"""One meter's energy Observation as normalise writes it, for the energy tests
(unit and broker alike): only what a test varies is a parameter."""

from __future__ import annotations

from typing import Any


def energy_observation(
    meter: str,
    zone: str,
    start: int,
    values: list[float],
    *,
    step_seconds: int = 600,
    sector: str = "residential",
) -> dict[str, Any]:
    """Interval energy (kWh) of ``meter`` from ``start`` (UTC µs), one value per step."""
    return {
        "city": "lyon",
        "domain": "energy",
        "metric": "active_energy_import",
        "unit": "kWh",
        "entity_pseudonym": meter,
        "entity_type": "ElectricityMeter",
        "zone": zone,
        "position": None,
        "start": start,
        "step_seconds": step_seconds,
        "times": [],
        "values": values,
        "quality": [],
        "source": "enedis-courbes-charge",
        "dataset": "courbes-de-charge-10min",
        "lineage_id": "test",
        "key_epoch": "2025-11",
        "sector": sector,
        "carrier": "electricity",
    }
