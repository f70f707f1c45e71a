"""An insert retried as is (its answer lost) counts once everywhere: in `observations`
and in every table a materialised view feeds from it (the hourly and daily rollups,
the latest values, the readings by entity), on the real chDB engine. Before
deploy/clickhouse/019_view_deduplication.sql the views wrote the retried blocks again
and the rollups doubled."""

from __future__ import annotations

from pathlib import Path

from services.publish.rows import Landed, observations_table
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.records import observation

FIGURES = {
    "observations": "SELECT count() AS n, round(sum(value), 6) AS total FROM observations",
    "observations_hourly": "SELECT countMerge(readings) AS n, round(sumMerge(total), 6) AS total "
    "FROM observations_hourly",
    "observations_daily": "SELECT countMerge(readings) AS n, round(sumMerge(total), 6) AS total "
    "FROM observations_daily",
    "observations_latest": "SELECT count() AS n, 0 AS total FROM observations_latest",
    "readings_by_entity": "SELECT count() AS n, round(sum(value), 6) AS total "
    "FROM readings_by_entity",
}


def figures(warehouse: ChdbWarehouse) -> dict[str, dict]:
    return {name: warehouse.query_arrow(sql).to_pylist()[0] for name, sql in FIGURES.items()}


def test_an_insert_retried_with_its_token_counts_once_in_every_view(tmp_path: Path) -> None:
    landed = [
        Landed(observation(points=24, entity=f"m{i}"), "observations.v1", 0, i) for i in range(3)
    ]
    table = observations_table(landed)
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        warehouse.insert_arrow("observations", table, dedup_token="observations.v1:0:0-2")
        once = figures(warehouse)
        warehouse.insert_arrow("observations", table, dedup_token="observations.v1:0:0-2")
        retried = figures(warehouse)
        # Another batch (another token) still lands: the window drops repeats only.
        later = observations_table(
            [Landed(observation(points=24, entity="m9"), "observations.v1", 0, 3)]
        )
        warehouse.insert_arrow("observations", later, dedup_token="observations.v1:0:3-3")
        grown = figures(warehouse)
    finally:
        warehouse.close()
    assert once["observations"]["n"] == 72 and once["observations_hourly"]["n"] == 72
    assert retried == once
    assert grown["observations"]["n"] == 96 and grown["observations_daily"]["n"] == 96
