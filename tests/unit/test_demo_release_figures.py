"""The demo's utility figure, measured: the share of released day cells withheld and
the share of the energy they hold, on a real chDB warehouse with hand-made rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.node.demo import SUPPRESSION_SQL
from services.publish.rows import Landed, observations_table, released_table
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.energy import energy_observation

T0 = 1_763_769_600_000_000  # 2025-11-22T00:00:00Z


def reading(meter: str, zone: str, kwh: float) -> dict:
    return energy_observation(meter, zone, T0, [kwh], step_seconds=86_400)


def released(zone: str, kwh: float | None) -> dict:
    return {
        "city": "lyon",
        "zone": zone,
        "carrier": "electricity",
        "sector": "residential",
        "granularity": "P1D",
        "window_start": T0,
        "window_end": T0 + 86_400_000_000,
        "energy_kwh": kwh,
        "meter_count": None if kwh is None else 12,
        "peak_kw": None,
        "suppressed": kwh is None,
        "suppression_reason": "min-meters" if kwh is None else None,
        "closed_by": "watermark",
        "released_at": T0,
    }


def test_suppressed_share_of_cells_and_energy(tmp_path: Path) -> None:
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        rows = [reading("a", "Z1", 30.0), reading("b", "Z2", 60.0), reading("c", "Z3", 10.0)]
        warehouse.insert_arrow(
            "observations", observations_table([Landed(r, "t", 0, i) for i, r in enumerate(rows)])
        )
        cells = [released("Z1", 30.0), released("Z2", 60.0), released("Z3", None)]
        cells.append({**released("*", 100.0), "sector": "*"})  # totals are not counted
        warehouse.insert_arrow(
            "energy_aggregates_released",
            released_table([Landed(c, "t", 0, i) for i, c in enumerate(cells)]),
        )
        [row] = warehouse.query_arrow(SUPPRESSION_SQL).to_pylist()
    finally:
        warehouse.close()
    assert row["day_cells"] == 3 and row["suppressed_cells"] == 1
    assert row["cells_suppressed_pct"] == pytest.approx(33.3)
    assert row["energy_suppressed_pct"] == pytest.approx(10.0)
    assert row["reasons"] == "min-meters"
