"""The common API as the public and as partners, end to end: its routes over the real
federation reader (gRPC, mutual TLS) to Lyon's federation server on a filled chDB
warehouse (testkit/entity_world.py). Every route and parameter that names, finds,
counts or describes entities is tried; what each audience receives is searched for
the household meters (personal sources: one the city wrongly marked open, one shared
with paris, one internal) and their metrics."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.api.app import build_app, default_parts
from services.api.keys import KeyStore, keys_path
from services.api.reader import FederationReader
from testkit.api_shell import Clock, shell_node
from testkit.entity_world import FederationWorld

E, T = "/ngsi-ld/v1/entities", "/ngsi-ld/v1/temporal/entities"
METERS = ("m-open-1", "m-open-2", "m-shared-1", "w-1")
METRICS = ("active_energy_import", "water_volume", "leak_index")
NEAR = "georel=near;maxDistance==50&geometry=Point&coordinates=[4.84,45.76]"


def probes() -> list[str]:
    """Every way the routes offer to name a meter: type, id, pattern, place, metric,
    value, count, catalogue, readings raw and aggregated."""
    ids = [f"urn:ngsi-ld:{t}:lyon:{k}" for t in ("ElectricityMeter", "WaterMeter") for k in METERS]
    found = [
        f"{E}?limit=1000",
        f"{E}?type=ElectricityMeter,WaterMeter&limit=1000&count=true",
        f"{E}?type=ElectricityMeter&limit=0&count=true",
        f"{E}?idPattern=.*m-.*&limit=1000&count=true",
        f"{E}?q=active_energy_import>=-1000000000&limit=1000",
        f"{E}?q=leak_index>=0|leak_index<0&count=true",
        f"{E}?attrs=active_energy_import,water_volume&limit=1000",
        f"{E}?{NEAR}&limit=1000",
        f"{E}?id={','.join(ids)}&count=true",
        "/ngsi-ld/v1/types?details=true",
        "/ngsi-ld/v1/attributes?details=true",
        f"{T}?type=ElectricityMeter,WaterMeter&lastN=5&count=true",
        f"{T}?idPattern=.*m-.*&lastN=5",
        f"{T}?{NEAR}&lastN=5",
        f"{T}?type=ElectricityMeter&options=aggregatedValues&aggrMethods=sum,max"
        "&aggrPeriodDuration=P1D&timerel=between&timeAt=2025-01-12T00:00:00Z"
        "&endTimeAt=2025-01-16T00:00:00Z",
    ]
    found += [f"{E}/{i}" for i in ids] + [f"{T}/{i}?lastN=5" for i in ids]
    found += ["/ngsi-ld/v1/types/ElectricityMeter", "/ngsi-ld/v1/types/WaterMeter"]
    found += [f"/ngsi-ld/v1/attributes/{m}" for m in METRICS]
    return found


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-privacy")
    world = FederationWorld(root / "world")
    reader = FederationReader(replace(world.config, listen=world.server.address))
    node = shell_node(root / "state", anonymous_rate=1000.0, anonymous_burst=1000)
    node = replace(node, api=replace(node.api, key_rate=1000.0, key_burst=1000))
    store = KeyStore(keys_path(node.state_dir))
    tokens = {partner: store.create("attack", partner=partner)[1] for partner in ("paris", "nice")}
    tokens["none"] = store.create("no partner")[1]
    parts = default_parts(node, CollectorRegistry(), Clock())
    # an application is bound to one event loop: each run of requests builds its own
    yield (lambda: build_app(node, reader=reader, parts=parts)), tokens
    reader.close()
    world.close()


def read_all(app, token: str | None) -> list[tuple[str, int, str]]:
    """(path, status, headers and body as text) of every probe, as ``token``'s holder."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def main() -> list[tuple[str, int, str]]:
        async with TestClient(TestServer(app())) as client:
            found = []
            for path in probes():
                response = await client.get(path, headers=headers)
                text = await response.text()
                found.append((path, response.status, f"{dict(response.headers)}\n{text}"))
            return found

    return asyncio.run(main())


def leaks(answers: list[tuple[str, int, str]], allowed: set[str]) -> list[tuple[str, str]]:
    """(path, word) of every meter or personal metric an answer names, beyond ``allowed``
    (error details naming the probe's own words are the caller's words, not leaks)."""
    found = []
    for path, status, text in answers:
        assert status < 500, (path, text)
        if status >= 400:
            continue
        found += [(path, w) for w in (*METERS, *METRICS) if w in text and w not in allowed]
    return found


def test_the_public_gets_nothing_of_a_personal_source_by_any_route(api) -> None:
    app, tokens = api
    for token in (None, tokens["none"]):
        answers = read_all(app, token)
        assert leaks(answers, set()) == []
        assert all(s in (200, 404) for _, s, _ in answers), [(p, s) for p, s, _ in answers]
        counted = [t for p, _, t in answers if "count=true" in p]
        assert all("'NGSILD-Results-Count': '0'" in t for t in counted), counted
    # and the open stations at the same place are served: the filter is on the source
    near = next(t for p, _, t in read_all(app, None) if p == f"{E}?{NEAR}&limit=1000")
    assert "air-1" in near


def test_a_partner_gets_the_meters_shared_with_it_and_no_other(api) -> None:
    app, tokens = api
    paris = read_all(app, tokens["paris"])
    assert leaks(paris, {"m-shared-1", "active_energy_import"}) == []
    assert any("m-shared-1" in t for p, s, t in paris if s == 200 and p.startswith(T)), (
        "the partner's own meter is served, raw readings included"
    )
    assert leaks(read_all(app, tokens["nice"]), set()) == []
