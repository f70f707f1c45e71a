"""The README's questions (services/publish/questions.py) asked of what a whole node
wrote, each answer checked against the rows it came from, recomputed here in Python
with the cities' own days (their city files' time zones).

Used by a whole-node test that already runs simulate -> stages -> warehouse
(tests/integration/test_replay.py), so the questions are tested on rows of the
shape the pipeline writes, not on rows written for the test.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.publish.questions import QUESTIONS, question
from services.runtime.cities import load_cities
from services.runtime.paths import CITIES_DIR
from testkit.local_node import LocalNode

ENERGY = "metric = 'active_energy_import'"


def _rows(node: LocalNode, sql: str) -> list[dict[str, Any]]:
    return node.sql(sql).to_pylist()


def _utc(value: Any) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _readings(node: LocalNode, where: str) -> list[dict[str, Any]]:
    return _rows(
        node,
        "SELECT city, zone, sector, entity, ts, value, step_seconds FROM observations "
        f"WHERE {where}",
    )


def check_consumption_per_zone(node: LocalNode, zones: dict[str, str]) -> None:
    kwh: dict[tuple, float] = defaultdict(float)
    meters: dict[tuple, set] = defaultdict(set)
    for r in _readings(node, f"city = 'lyon' AND {ENERGY}"):
        key = (r["zone"], _utc(r["ts"]).astimezone(ZoneInfo(zones["lyon"])).date())
        kwh[key] += r["value"]
        meters[key].add(r["entity"])
    answer = _rows(node, question("consumption-per-zone-per-day").sql)
    assert answer, "the pipeline wrote no energy reading for Lyon"
    got = {(r["zone"], r["day"]): (r["kwh"], r["meters"]) for r in answer}
    assert set(got) == set(kwh)
    for key, (value, count) in got.items():
        assert value == pytest.approx(kwh[key], abs=0.051) and count == len(meters[key]), key


def _hourly(node: LocalNode, zones: dict[str, str]) -> dict[tuple, float]:
    """(city, local day, UTC hour) -> energy of the readings of at most an hour."""
    out: dict[tuple, float] = defaultdict(float)
    for r in _readings(node, f"{ENERGY} AND step_seconds <= 3600"):
        ts = _utc(r["ts"])
        day = ts.astimezone(ZoneInfo(zones[r["city"]])).date()
        out[(r["city"], day, ts.replace(minute=0, second=0, microsecond=0))] += r["value"]
    return out


def check_peak_hour(node: LocalNode, zones: dict[str, str]) -> None:
    best: dict[tuple, float] = {}
    for (city, day, _), value in _hourly(node, zones).items():
        best[(city, day)] = max(best.get((city, day), 0.0), value)
    answer = _rows(node, question("peak-hour-per-city").sql)
    assert {(r["city"], r["day"]) for r in answer} == set(best)
    hourly = _hourly(node, zones)
    for r in answer:
        assert r["peak_kwh"] == pytest.approx(best[(r["city"], r["day"])], abs=0.051)
        at = (r["city"], r["day"], _utc(r["peak_hour"]))
        assert hourly[at] == pytest.approx(best[(r["city"], r["day"])], rel=1e-9), at


def check_daily_profile(node: LocalNode, zones: dict[str, str]) -> None:
    per_hour: dict[tuple, float] = defaultdict(float)
    for (city, _, hour), value in _hourly(node, zones).items():
        per_hour[(city, hour)] += value
    by_hour_of_day: dict[tuple, list[float]] = defaultdict(list)
    for (city, hour), value in per_hour.items():
        by_hour_of_day[(city, hour.hour)].append(value)
    answer = _rows(node, question("daily-load-profile").sql)
    assert {(r["city"], r["hour_utc"]) for r in answer} == set(by_hour_of_day)
    for r in answer:
        values = by_hour_of_day[(r["city"], r["hour_utc"])]
        assert r["avg_kwh"] == pytest.approx(sum(values) / len(values), abs=0.051)


def check_no2(node: LocalNode) -> None:
    values: dict[tuple, list[float]] = defaultdict(list)
    for r in _readings(node, "metric = 'no2'"):
        hour = _utc(r["ts"]).replace(minute=0, second=0, microsecond=0)
        values[(r["city"], r["zone"], hour)].append(r["value"])
    over = {k for k, v in values.items() if round(sum(v) / len(v), 1) > 200}
    answer = _rows(node, question("no2-exceedances").sql)
    assert {(r["city"], r["zone"], _utc(r["hour"])) for r in answer} == over


def check_top_zones(node: LocalNode, zones: dict[str, str]) -> None:
    """Each zone's energy is the sum of its shown sector cells, as energy-analytics
    writes them (it writes no zone x '*' row), each cell a local day: recomputed from
    the readings per zone, sector and local day, with the cells' suppression flags."""
    cells = _rows(
        node,
        "SELECT city, zone, sector, window_start, suppressed FROM energy_aggregates FINAL "
        "WHERE granularity = 'P1D' AND carrier = 'electricity' AND zone != '*' AND sector != '*'",
    )
    withheld: dict[tuple, bool] = {}
    for c in cells:
        start = _utc(c["window_start"])
        day = start.astimezone(ZoneInfo(zones[c["city"]])).date()
        assert start == dt.datetime.combine(day, dt.time(), ZoneInfo(zones[c["city"]])), c
        withheld[(c["city"], c["zone"], c["sector"], day)] = c["suppressed"]
    energy: dict[tuple, float] = defaultdict(float)
    meters: dict[tuple, set] = defaultdict(set)
    electricity = f"{ENERGY} AND domain = 'energy' AND carrier IN ('', 'electricity')"
    for r in _readings(node, electricity):
        day = _utc(r["ts"]).astimezone(ZoneInfo(zones[r["city"]])).date()
        key = (r["city"], r["zone"], r["sector"], day)
        assert key in withheld, f"readings of {key} have no daily cell"
        energy[key] += r["value"]
        meters[key].add(r["entity"])
    expected: dict[tuple, dict[str, Any]] = {}
    day_meters: dict[tuple, int] = defaultdict(int)
    for (city, zone, sector, day), hidden in withheld.items():
        zone_total = expected.setdefault((city, zone), {"kwh": 0.0, "withheld": 0})
        if hidden:
            zone_total["withheld"] += 1
        else:
            zone_total["kwh"] += energy[(city, zone, sector, day)]
            day_meters[(city, zone, day)] += len(meters[(city, zone, sector, day)])
    answer = _rows(node, question("top-consuming-zones").sql)
    assert len(answer) == min(10, len(expected)) > 0
    for r in answer:
        want = expected[(r["city"], r["zone"])]
        assert r["kwh"] == pytest.approx(want["kwh"], abs=0.051), r
        assert r["withheld_cells"] == want["withheld"], r
        shown = [n for (c, z, _), n in day_meters.items() if (c, z) == (r["city"], r["zone"])]
        assert r["meters"] == max(shown, default=0), r
    left_out = [
        v["kwh"] for k, v in expected.items() if k not in {(r["city"], r["zone"]) for r in answer}
    ]
    assert min(r["kwh"] for r in answer) >= max(left_out, default=0.0) - 0.051


def check_dead_letters(node: LocalNode) -> None:
    counts: dict[tuple, int] = defaultdict(int)
    for r in _rows(node, "SELECT stage, reason, city FROM dead_letters"):
        counts[(r["stage"], r["reason"], r["city"])] += 1
    answer = _rows(node, question("dead-letters-by-reason").sql)
    assert {(r["stage"], r["reason"], r["city"]): r["records"] for r in answer} == counts


def check_every_question(node: LocalNode) -> None:
    """Every README question, on the node's own output."""
    zones = {code: city.timezone for code, city in load_cities(CITIES_DIR).items()}
    check_consumption_per_zone(node, zones)
    check_peak_hour(node, zones)
    check_no2(node)
    check_top_zones(node, zones)
    check_daily_profile(node, zones)
    check_dead_letters(node)
    checked = {
        "consumption-per-zone-per-day",
        "peak-hour-per-city",
        "no2-exceedances",
        "top-consuming-zones",
        "daily-load-profile",
        "dead-letters-by-reason",
    }
    assert {q.slug for q in QUESTIONS} == checked, "a new question needs its check here"
