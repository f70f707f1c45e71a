"""The common API of a live node (its federation server on a seeded chDB warehouse,
its ``api`` service reading through the federation API) against clients not written
here: Orange's ``ngsildclient`` (a real NGSI-LD client, run in an isolated
environment), Schemathesis fuzzing from the API's own /openapi.json, and a headless
Chromium rendering the documentation page the API serves. Every value the client
reads is held to the warehouse, read back with SQL when it was seeded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from testkit.api_checks import BASE, ENERGY_TYPE, call, expected_rows, ngsi_id
from testkit.api_nodes import start_world
from testkit.api_world import ODD_KEY, T0_US, position
from testkit.ngsild_venv import run_probe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

START = "2025-01-12T23:00:00Z"  # T0_US: the seeded readings' first day and the next
END = "2025-01-14T23:00:00Z"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",  # let the page fetch /openapi.json and draw it
]


@pytest.fixture(scope="module")
def lyon(infrastructure, tmp_path_factory):
    world = start_world(
        tmp_path_factory.mktemp("api-clients"), ("lyon",), infrastructure=infrastructure
    )
    try:
        yield world.nodes["lyon"]
    finally:
        world.stop()


def test_a_real_ngsild_client_reads_what_the_warehouse_holds(lyon) -> None:
    assert parse_time(START) == T0_US / 1_000_000
    station = ngsi_id("AirQualityObserved", "lyon", f"lyon-{ODD_KEY}")
    seen = run_probe(
        *("--url", lyon.url, "--type", "AirQualityObserved", "--entity", station),
        *("--attr", "no2", "--start", START, "--end", END),
    )
    assert {"AirQualityObserved", "TrafficFlowObserved", ENERGY_TYPE} <= set(seen["types"])
    assert "WaterConsumptionObserved" not in seen["types"]  # internal: never listed

    expected = expected_rows([lyon], "air")
    assert seen["count"] == len(expected) == 6
    assert sorted(e["id"] for e in seen["entities"]) == sorted(expected)
    for entity in seen["entities"]:
        row = expected[entity["id"]]
        assert entity["type"] == "AirQualityObserved"
        assert entity["no2"]["value"] == pytest.approx(row["latest"])
        assert parse_time(entity["no2"]["observedAt"]) == parse_time(row["observed_at"])

    # One entity by its id: a key with a space and a slash comes back through the path.
    assert seen["entity"]["id"] == station
    lat_lon = position("lyon", 0, 0)
    assert seen["entity"]["location"]["value"] == {
        "type": "Point",
        "coordinates": [pytest.approx(lat_lon["lon"]), pytest.approx(lat_lon["lat"])],
    }

    hourly = [r for r in lyon.expected()["hourly_air"] if r["entity"] == f"lyon-{ODD_KEY}"]
    assert len(hourly) == 48
    readings = readings_of(seen["temporal"], station, "no2")
    assert len(readings) == sum(r["readings"] for r in hourly) == 288
    by_hour: dict[str, float] = {}
    for value, at in readings:
        hour = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(parse_time(at)))
        by_hour[hour] = by_hour.get(hour, 0.0) + value
    assert by_hour == {r["hour"]: pytest.approx(r["sum"]) for r in hourly}

    # Aggregated per hour by the API: the warehouse's hourly sums and maxima, per station.
    aggregated = {troe["id"]: troe for troe in seen["aggregated"]}
    assert sorted(aggregated) == sorted(expected)
    sums = {bucket_start(b): b[0] for b in aggregated[station]["no2"]["sum"]}
    maxima = {bucket_start(b): b[0] for b in aggregated[station]["no2"]["max"]}
    assert sums == {parse_time(r["hour"]): pytest.approx(r["sum"]) for r in hourly}
    assert maxima == {parse_time(r["hour"]): pytest.approx(r["max"]) for r in hourly}


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time (with or without fractions)."""
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def bucket_start(bucket: list) -> float:
    """An aggregated value ``[value, start, end]`` of the simplified representation."""
    return parse_time(bucket[1])


def readings_of(troes: list[dict] | dict, entity: str, attribute: str) -> list[tuple[float, str]]:
    """``[(value, observedAt)]`` of one attribute in the simplified temporal form."""
    troes = troes if isinstance(troes, list) else [troes]
    troe = next(t for t in troes if t["id"] == entity)
    values = troe[attribute]["values"]
    return [(float(v[0]), v[1]) for v in values]


# -- the document and every answer against it --------------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_every_answer_matches_the_openapi_document(lyon) -> None:
    document = httpx.get(f"{lyon.url}/openapi.json", timeout=30).json()
    assert document["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {f"GET {BASE}/entities", f"GET {BASE}/temporal/entities"} <= labels, labels
    cases = st.one_of(
        *(op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode)
    )
    seen: set[int] = set()

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,  # the same cases at every run: a failure is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def exchange(case) -> None:
        response = case.call(base_url=lyon.url, timeout=60)
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    exchange()
    assert 200 in seen and 400 in seen, seen  # it reached answers and refusals


# -- the documentation page ---------------------------------------------------------------


def test_the_documentation_page_renders_in_chromium(lyon, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make setup` installs it (deploy/dev/system-packages.sh)"
    page = docs_page(lyon)
    html = httpx.get(page, timeout=30).text
    # Served by the API itself: no script, style or font from anywhere else (no CDN).
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html), html[:2000]
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    # The page drew the operations of /openapi.json.
    assert f"{BASE}/entities" in dom and f"{BASE}/temporal/entities" in dom


def docs_page(node) -> str:
    """The documentation page's URL, as the API's own root or document names it."""
    for path in ("/docs", "/"):
        response = call(node, path, headers={"Accept": "text/html"})
        if response.status_code == 200 and "text/html" in response.headers["content-type"]:
            return f"{node.url}{path}"
    raise AssertionError("no documentation page at /docs or /")
