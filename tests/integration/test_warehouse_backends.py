"""One suite for both warehouse backends: the same DDL and the same SQL on chDB
(always) and on a ClickHouse server through clickhouse-connect (where
CLICKHOUSE_URL names one; reported as skipped otherwise)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from services.publish.questions import QUESTIONS, question
from services.publish.rows import Landed, aggregates_table, observations_table, released_table
from services.runtime.paths import REPO_ROOT
from services.warehouse.migrations import migrate
from testkit.records import T0, energy_aggregate, released_aggregate
from testkit.warehouse_rows import lyon_day

HOUR = 3_600_000_000


@pytest.fixture(params=["chdb", "clickhouse-server"])
def warehouse(request, tmp_path: Path):
    if request.param == "chdb":
        from services.warehouse.chdb_embedded import ChdbWarehouse

        wh = ChdbWarehouse(tmp_path / "warehouse")
    else:
        url = os.environ.get("CLICKHOUSE_URL")
        if not url:
            pytest.skip("no ClickHouse server: set CLICKHOUSE_URL to run this suite against one")
        import clickhouse_connect

        database = f"citeplus_test_{uuid.uuid4().hex[:8]}"
        clickhouse_connect.get_client(dsn=url).command(f"CREATE DATABASE {database}")
        from services.warehouse.clickhouse_server import ClickHouseServerWarehouse

        wh = ClickHouseServerWarehouse(url.rstrip("/") + f"/{database}")
    yield wh
    wh.close()


def test_migrations_are_idempotent(warehouse) -> None:
    first = migrate(warehouse)
    assert first and migrate(warehouse) == []


def test_insert_with_the_same_token_counts_once(warehouse) -> None:
    migrate(warehouse)
    table = observations_table(lyon_day())
    warehouse.insert_arrow("observations", table, dedup_token="observations.v1:0:0-3")
    warehouse.insert_arrow("observations", table, dedup_token="observations.v1:0:0-3")
    count = warehouse.query_arrow("SELECT count() AS n FROM observations").column("n")[0].as_py()
    assert count == 3 * 24 + 3


def test_derived_windows_land_flagged_and_older_records_read_false(warehouse) -> None:
    migrate(warehouse)
    quarter = {**energy_aggregate(), "granularity": "PT15M", "peak_kw": None, "derived": True}
    older = energy_aggregate()  # written before the field existed
    batch = [Landed(r, "energy.aggregates.v1", 0, k) for k, r in enumerate((quarter, older))]
    warehouse.insert_arrow("energy_aggregates", aggregates_table(batch), dedup_token="e:0:0-1")
    released = {**released_aggregate(), "peak_kw": None, "derived": True}
    landed = [Landed(released, "energy.aggregates.released.v2", 0, 0)]
    warehouse.insert_arrow("energy_aggregates_released", released_table(landed), dedup_token="r")
    rows = warehouse.query_arrow(
        "SELECT granularity, derived, peak_kw FROM energy_aggregates ORDER BY granularity"
    ).to_pylist()
    assert rows == [
        {"granularity": "PT15M", "derived": True, "peak_kw": None},
        {"granularity": "PT1H", "derived": False, "peak_kw": 310.2},
    ]
    flag = warehouse.query_arrow("SELECT derived FROM energy_aggregates_released").to_pylist()
    assert flag == [{"derived": True}]
    # and the federation API says so (no peak)
    from services.federation import queries
    from services.federation.generated.citeplus.federation.v1 import federation_pb2 as pb

    question = queries.Question(
        kind=pb.AGGREGATE_KIND_ENERGY_AGGREGATES,
        **{"cities": ("lyon",), "sources": (), "domains": (), "metrics": (), "zones": ()},
        **{"carriers": (), "sectors": (), "datasets": (), "after": None, "fingerprint": "f"},
        start_us=T0,
        end_us=T0 + HOUR,
        granularity="PT1H",
        page_size=10,
    )
    [page] = queries.run(warehouse, question, {"lyon": "Europe/Paris"}, None, node="n")
    [message] = page.energy
    assert message.derived is True and not message.HasField("peak_kw")


def run(warehouse, slug: str) -> list[dict]:
    return warehouse.query_arrow(question(slug).sql).to_pylist()


def test_analyst_questions_give_hand_computed_answers(warehouse) -> None:
    migrate(warehouse)
    warehouse.insert_arrow("observations", observations_table(lyon_day()))
    # Rows of the shape energy-analytics writes: zone x sector cells (no zone total),
    # one withheld; (the answers on a whole node's output: tests/integration/test_replay.py).
    aggregates = [
        Landed(
            {
                **energy_aggregate(),
                "granularity": "P1D",
                "zone": zone,
                "sector": sector,
                "energy_kwh": None if kwh is None else kwh,
                "meter_count": None if kwh is None else 12,
                "suppressed": kwh is None,
                "version": version,
            },
            "energy.aggregates.v1",
            0,
            i,
        )
        for i, (zone, sector, kwh, version) in enumerate(
            [
                ("693810101", "residential", 50.0, 1),
                ("693810101", "residential", 70.0, 2),
                ("693810101", "tertiary", 10.0, 1),
                ("693810102", "residential", 60.0, 1),
                ("693810102", "tertiary", None, 1),
                ("693810103", "residential", None, 1),  # a zone withheld whole
            ]
        )
    ]
    warehouse.insert_arrow("energy_aggregates", aggregates_table(aggregates))

    per_zone = run(warehouse, "consumption-per-zone-per-day")
    # Days are local (Europe/Paris): the day's last UTC hour is the next local day.
    assert [(r["zone"], r["kwh"], r["meters"]) for r in per_zone] == [
        ("693810102", 22 * 4.0 + 12.0, 1),  # 22 hours at 4 kWh, the 18:00 UTC hour at 12
        ("693810101", 22 * 3.0 + 9.0, 2),
        ("693810102", 4.0, 1),
        ("693810101", 3.0, 2),
    ]
    peak, next_day = run(warehouse, "peak-hour-per-city")  # local days: 23:00 UTC is the 23rd
    assert peak["city"] == "lyon" and peak["peak_hour"].hour == 18 and peak["peak_kwh"] == 21.0
    assert str(next_day["day"]) == "2025-11-23" and next_day["peak_kwh"] == 7.0
    [exceedance] = run(warehouse, "no2-exceedances")
    assert exceedance["no2_ugm3"] == 240.0 and exceedance["hour"].timestamp() * 1e6 == T0 + HOUR
    top = run(warehouse, "top-consuming-zones")
    assert [(r["zone"], r["kwh"], r["meters"], r["withheld_cells"]) for r in top] == [
        ("693810101", 80.0, 24, 0),
        ("693810102", 60.0, 12, 1),
        ("693810103", 0.0, 0, 1),
    ]
    profile = run(warehouse, "daily-load-profile")
    assert len(profile) == 24 and max(profile, key=lambda r: r["avg_kwh"])["hour_utc"] == 18


def test_readme_shows_every_question_verbatim() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [q.slug for q in QUESTIONS if q.sql not in readme]
    assert not missing, f"README.md lacks the SQL of {missing} (services/publish/questions.py)"
