"""Rows of the shapes the pipeline lands in the warehouse, for the warehouse's and
the SQL door's tests (hand-computed answers in tests/integration/test_warehouse_backends.py)."""

from __future__ import annotations

from services.publish.rows import Landed
from testkit.records import observation


def lyon_day() -> list[Landed]:
    """Two zones of Lyon, hourly energy over one day; NO2 with one exceedance."""
    batch = []
    for meter, zone, base in (
        ("a", "693810101", 1.0),
        ("b", "693810101", 2.0),
        ("c", "693810102", 4.0),
    ):
        values = [base * (3.0 if h == 18 else 1.0) for h in range(24)]
        record = {
            **observation(points=24, entity=meter),
            "metric": "active_energy_import",
            "zone": zone,
            "step_seconds": 3600,
            "values": values,
            "sector": "residential",
        }
        batch.append(Landed(record, "observations.v1", 0, len(batch)))
    no2 = {
        **observation(points=3, entity="station-1"),
        "domain": "environment",
        "metric": "no2",
        "unit": "µg/m3",
        "zone": "693810101",
        "step_seconds": 3600,
        "values": [80.0, 240.0, 120.0],
    }
    batch.append(Landed(no2, "observations.v1", 0, len(batch)))
    return batch
