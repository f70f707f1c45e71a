"""One day everywhere: the warehouse's daily rollups, the federation API's P1D and
energy-analytics' released P1D all count the city's local day (real chDB).

Before, the daily rollup was a Paris day for every city (``toDate(ts,
'Europe/Paris')``) and energy's P1D a UTC day: a city in Nouméa got Paris days,
and the federation's energy P1D did not match the warehouse's day.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.energy.secrecy import SecrecyPolicy
from services.federation.queries import Question, _aggregate, aggregates_sql, rollup_sql
from services.publish.rows import Landed, observations_table, released_table
from services.runtime import localday
from services.warehouse.migrations import migrate
from testkit.energy import EnergyHarness, energy_observation

pytestmark = pytest.mark.integration

US = 1_000_000
HOUR = 3600 * US
PARIS, NOUMEA = "Europe/Paris", "Pacific/Noumea"
TIMEZONES = {"lyon": PARIS, "noumea": NOUMEA}
AUTUMN = localday.date_start(dt.date(2025, 10, 26), PARIS)  # 25 hours
START = AUTUMN - 30 * HOUR  # readings over four UTC days around it
HOURS = 96


def readings(city: str) -> dict:
    values = [float(1 + (h * 5) % 11) for h in range(HOURS)]
    record = energy_observation(f"m-{city}", "Z1", START, values, step_seconds=3600)
    return {**record, "city": city}


def brute_force_days(record: dict, zone: str) -> dict[dt.date, float]:
    out: dict[dt.date, float] = defaultdict(float)
    for i, value in enumerate(record["values"]):
        t = record["start"] + i * record["step_seconds"] * US
        out[dt.datetime.fromtimestamp(t / US, ZoneInfo(zone)).date()] += value
    return dict(out)


@pytest.fixture()
def warehouse(tmp_path: Path):
    from services.warehouse.chdb_embedded import ChdbWarehouse

    wh = ChdbWarehouse(tmp_path / "warehouse")
    migrate(wh)
    landed = [Landed(readings(city), "observations.v1", 0, i) for i, city in enumerate(TIMEZONES)]
    wh.insert_arrow("observations", observations_table(landed, timezones=TIMEZONES))
    yield wh
    wh.close()


def daily(wh, table: str) -> dict[tuple[str, dt.date], float]:
    rows = wh.query_arrow(
        f"SELECT city, day, sumMerge(total) AS kwh FROM {table} GROUP BY city, day"
    ).to_pylist()
    return {(r["city"], r["day"]): r["kwh"] for r in rows}


def test_rollups_count_each_city_in_its_own_zone(warehouse) -> None:
    expected = {
        (city, day): kwh
        for city, zone in TIMEZONES.items()
        for day, kwh in brute_force_days(readings(city), zone).items()
    }
    assert daily(warehouse, "observations_daily") == expected
    assert daily(warehouse, "observations_hourly") == expected  # each hour knows its day
    assert (
        expected[("lyon", dt.date(2025, 10, 26))]
        == sum(  # the 25-hour day
            readings("lyon")["values"][30 : 30 + 25]
        )
    )


def question(city: str, granularity: str = "P1D") -> Question:
    return Question(
        kind=0,
        cities=(city,),
        sources=((city, "enedis-courbes-charge"),),
        domains=("energy",),
        metrics=("active_energy_import",),
        zones=(),
        carriers=(),
        sectors=("*",),
        start_us=START - 48 * HOUR,
        end_us=START + (HOURS + 48) * HOUR,
        granularity=granularity,
        page_size=1000,
        fingerprint="test",
        after=None,
        datasets=(),
    )


def test_the_federation_p1d_of_readings_is_the_warehouse_day(warehouse) -> None:
    for city, zone in TIMEZONES.items():
        rows = warehouse.query_arrow(rollup_sql(question(city), TIMEZONES, 1000)).to_pylist()
        days = daily(warehouse, "observations_daily")
        for row in rows:
            start_us, end_us = row["window_start"] * US, row["window_end"] * US
            date = localday.local_date(start_us, zone)
            assert (start_us, end_us) == localday.date_bounds(date, zone)
            assert row["sum"] == days[(city, date)]
        assert len(rows) == len({d for c, d in days if c == city})


def test_the_federation_energy_p1d_is_the_warehouse_day(warehouse) -> None:
    """energy-analytics' released P1D, landed and asked through the federation's SQL,
    covers the same local day, to the kWh, as the warehouse's daily rollup."""
    h = EnergyHarness(
        now_us=START + 30 * 24 * HOUR,
        policies={"lyon": SecrecyPolicy(min_meters=1, dominance_share=1.0)},
        timezones=TIMEZONES,
    )
    h.batch(readings("lyon"))
    h.batch(energy_observation("m-lyon", "Z1", START + 20 * 24 * HOUR, [0.0]))  # closes them
    released = [
        Landed(r, "energy.aggregates.released.v2", 0, i) for i, r in enumerate(h.released.values())
    ]
    warehouse.insert_arrow("energy_aggregates_released", released_table(released))
    answer = warehouse.query_arrow(aggregates_sql(question("lyon"), 1000)).to_pylist()
    days = daily(warehouse, "observations_daily")
    city_total = [r for r in answer if r["zone"] == "*"]
    assert len(city_total) == len({d for c, d in days if c == "lyon"}) == 5
    for row in city_total:
        date = localday.local_date(row["start_ms"] * 1000, PARIS)
        assert (row["start_ms"] * 1000, row["end_ms"] * 1000) == localday.date_bounds(date, PARIS)
        assert row["energy_kwh"] == pytest.approx(days[("lyon", date)], abs=1e-6)
    autumn = next(r for r in city_total if r["start_ms"] * 1000 == AUTUMN)
    assert autumn["end_ms"] * 1000 - AUTUMN == 25 * HOUR
    # The first and last days of data are partial, and partners are told so.
    assert [bool(r["partial"]) for r in city_total] == [True, False, False, False, True]
    assert [_aggregate(r, "P1D").partial for r in city_total] == [True, False, False, False, True]
