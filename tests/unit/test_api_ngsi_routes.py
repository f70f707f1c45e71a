"""The NGSI-LD routes over an in-memory federation of two nodes (aiohttp's test client;
no broker, no warehouse): status codes, headers, representations, paging across
nodes, privacy of what an audience may see, and hostile requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.api.audience import Audience
from services.api.ngsi.routes import add_ngsi_routes
from testkit.api_reader import InMemoryReader, sample_federation

AQ = "/ngsi-ld/v1/entities?type=AirQualityObserved"
PARTNER = Audience(key_id="k1", application="app", partner="acme")


def make_app(reader: InMemoryReader, audience: Audience | None = None, **kwargs) -> web.Application:
    @web.middleware
    async def set_audience(request: web.Request, handler):
        if audience is not None:
            request["audience"] = audience
        return await handler(request)

    app = web.Application(middlewares=[set_audience])
    add_ngsi_routes(app, reader, **kwargs)
    return app


def get(app: Callable[[], web.Application], path: str, headers: dict[str, str] | None = None):
    """(status, headers, parsed body) of one GET (an application is bound to one loop,
    so each run builds its own)."""

    async def run() -> tuple[int, Any, Any]:
        async with TestClient(TestServer(app())) as client:
            response = await client.get(path, headers=headers or {})
            text = await response.text()
            return response.status, response.headers, json.loads(text) if text else None

    return asyncio.run(run())


def get_many(app: Callable[[], web.Application], paths: list[str], headers=None):
    async def run() -> list[tuple[int, Any, Any]]:
        async with TestClient(TestServer(app())) as client:
            found = []
            for path in paths:
                response = await client.get(path, headers=headers or {})
                found.append((response.status, response.headers, await response.json()))
            return found

    return asyncio.run(run())


@pytest.fixture()
def nodes():
    return sample_federation()


@pytest.fixture()
def app(nodes):
    reader = InMemoryReader(nodes)
    return lambda: make_app(reader, cache_ttl_s=0)


def test_entities_of_a_type_from_both_nodes_in_a_stable_order(app):
    status, headers, body = get(app, AQ + "&count=true")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in headers["Link"]
    assert headers["Citeplus-Peers"] == "lyon=answered, paris=answered"
    assert headers["NGSILD-Results-Count"] == "5"
    assert [e["id"] for e in body] == [
        "urn:ngsi-ld:AirQualityObserved:lyon:FR20004",
        "urn:ngsi-ld:AirQualityObserved:lyon:FR20017",
        "urn:ngsi-ld:AirQualityObserved:lyon:FR20062",
        "urn:ngsi-ld:AirQualityObserved:paris:FR04002",
        "urn:ngsi-ld:AirQualityObserved:paris:FR04143",
    ]
    first = body[0]
    assert first["no2"] == {
        "type": "Property",
        "value": 35.0,
        "observedAt": "2026-01-15T10:00:00Z",
        "unitCode": "GQ",
    }
    assert first["location"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [4.8357, 45.764]},
    }


def test_paging_across_nodes_gives_every_entity_once(app):
    pages = get_many(app, [f"{AQ}&limit=2&offset={o}" for o in (0, 2, 4)])
    _, _, whole = get(app, AQ + "&limit=100")
    assert [e["id"] for _, _, page in pages for e in page] == [e["id"] for e in whole]
    links = [headers["Link"] for _, headers, _ in pages]
    assert 'offset=2>; rel="next"' in links[0] and 'rel="prev"' not in links[0]
    assert 'offset=4>; rel="next"' in links[1] and 'offset=0>; rel="prev"' in links[1]
    assert 'rel="next"' not in links[2] and 'offset=2>; rel="prev"' in links[2]


def test_q_geo_and_attrs(app):
    _, _, high = get(app, AQ + "&q=no2>40")
    assert [e["id"].rsplit(":", 1)[1] for e in high] == ["FR20017", "FR04143"]
    _, _, ranged = get(app, AQ + "&q=(no2==30..55;pm10<20)|no2==61")
    assert [e["id"].rsplit(":", 1)[1] for e in ranged] == ["FR20004", "FR04143"]
    near = AQ + "&georel=near;maxDistance==2000&geometry=Point&coordinates=[4.835,45.764]"
    _, _, close = get(app, near)
    assert [e["id"].rsplit(":", 1)[1] for e in close] == ["FR20004"]
    _, _, only = get(app, AQ + "&attrs=pm10")
    assert [sorted(e) for e in only] == [["id", "pm10", "type"]] * 2
    _, _, places = get(app, AQ + "&attrs=location,no2&limit=1")
    assert sorted(places[0]) == ["id", "location", "no2", "type"]


def test_key_values_and_concise(app):
    _, _, simple = get(app, AQ + "&limit=1&options=keyValues")
    assert simple[0]["no2"] == 35.0
    assert simple[0]["location"] == {"type": "Point", "coordinates": [4.8357, 45.764]}
    _, _, concise = get(app, AQ + "&limit=1&format=concise")
    assert concise[0]["no2"] == {
        "value": 35.0,
        "observedAt": "2026-01-15T10:00:00Z",
        "unitCode": "GQ",
    }
    assert concise[0]["dataProvider"] == "lyon"


def test_json_ld_and_not_acceptable(app):
    status, headers, body = get(app, AQ + "&limit=1", {"Accept": "application/ld+json"})
    assert status == 200 and headers["Content-Type"].startswith("application/ld+json")
    assert "json-ld#context" not in headers["Link"] and 'rel="next"' in headers["Link"]
    assert body[0]["@context"].endswith("/ngsi-ld/v1/jsonldContexts/citeplus.jsonld")
    status, _, problem = get(app, AQ, {"Accept": "text/html"})
    assert status == 406 and problem["type"].endswith("/NotAcceptable")
    status, headers, context = get(app, "/ngsi-ld/v1/jsonldContexts/citeplus.jsonld")
    assert status == 200 and "@context" in context


def test_entity_by_id_and_not_found(app):
    status, _, body = get(
        app, "/ngsi-ld/v1/entities/urn:ngsi-ld:OffStreetParking:lyon:P%3ABellecour%2F2"
    )
    assert status == 200
    assert body["availableSpotNumber"]["value"] == 120.0
    assert body["availableSpotNumber"]["unitCode"] == "H87"
    status, headers, problem = get(
        app, "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:lyon:nope"
    )
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert problem["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    status, _, problem = get(app, "/ngsi-ld/v1/entities/not%20a%20uri")
    assert status == 400 and problem["type"].endswith("/BadRequestData")


def test_an_entity_the_public_may_not_see_answers_like_a_missing_one(nodes):
    hidden = "/ngsi-ld/v1/entities/urn:ngsi-ld:ACMeasurement:lyon:m-7f3a"
    missing = "/ngsi-ld/v1/entities/urn:ngsi-ld:ACMeasurement:lyon:m-0000"

    def public():
        return make_app(InMemoryReader(nodes))

    status, headers, problem = get(public, hidden)
    status_missing, headers_missing, problem_missing = get(public, missing)
    assert (status, status_missing) == (404, 404)
    assert problem["detail"].replace("m-7f3a", "X") == problem_missing["detail"].replace(
        "m-0000", "X"
    )
    assert set(headers) - {"Date"} == set(headers_missing) - {"Date"}
    _, _, listed = get(public, "/ngsi-ld/v1/entities?type=ACMeasurement&count=true")
    assert listed == []
    status, _, body = get(lambda: make_app(InMemoryReader(nodes), PARTNER), hidden)
    assert status == 200 and body["totalActiveEnergyImport"]["value"] == 1.5
    assert ("entities", "acme") in nodes["lyon"].calls and ("entities", "public") in nodes[
        "lyon"
    ].calls


def test_the_cache_never_serves_one_audience_what_another_was_answered(nodes):
    reader = InMemoryReader(nodes)
    shared = web.Application()
    audience: dict[str, Audience] = {"who": PARTNER}

    @web.middleware
    async def switch(request: web.Request, handler):
        request["audience"] = audience["who"]
        return await handler(request)

    shared.middlewares.append(switch)
    add_ngsi_routes(shared, reader, cache_ttl_s=3600)
    path = "/ngsi-ld/v1/entities?type=ACMeasurement"

    async def run() -> tuple[Any, Any, Any]:
        async with TestClient(TestServer(shared)) as client:
            partner = await (await client.get(path)).json()
            again = await (await client.get(path)).json()
            audience["who"] = Audience()
            public = await (await client.get(path)).json()
            return partner, again, public

    partner, again, public = asyncio.run(run())
    assert len(partner) == 1 and again == partner
    assert public == []
    assert [c for c in nodes["lyon"].calls if c[0] == "entities"] == [
        ("entities", "acme"),
        ("entities", "public"),
    ]


def test_energy_aggregates_suppressed_values_are_absent_and_flagged(app):
    _, _, cells = get(app, "/ngsi-ld/v1/entities?type=CitePlusEnergyAggregate")
    open_cell, hidden = cells
    assert (
        open_cell["id"]
        == "urn:ngsi-ld:CitePlusEnergyAggregate:lyon:69381~electricity~residential~PT1H"
    )
    assert (
        open_cell["energy_kwh"]["value"] == 812.5 and open_cell["energy_kwh"]["unitCode"] == "KWH"
    )
    assert "suppressed" not in open_cell
    assert not {"energy_kwh", "meter_count", "peak_kw"} & set(hidden)
    assert hidden["suppressed"]["value"] is True
    assert hidden["suppressionReason"]["value"] == "too-few-meters"


def test_a_peer_down_gives_a_partial_answer_with_its_status_and_is_not_cached(nodes):
    nodes["paris"].outcome = "unreachable"
    app = make_app(InMemoryReader(nodes), cache_ttl_s=3600)

    async def run() -> tuple[Any, Any]:
        async with TestClient(TestServer(app)) as client:
            down = await client.get(AQ)
            body = await down.json()
            nodes["paris"].outcome = "answered"
            back = await client.get(AQ)
            return (down.status, down.headers["Citeplus-Peers"], len(body)), (
                back.headers["Citeplus-Peers"],
                len(await back.json()),
            )

    down, back = asyncio.run(run())
    assert down == (200, "lyon=answered, paris=unreachable", 3)
    assert back == ("lyon=answered, paris=answered", 5)


def test_no_node_answering_is_a_503_not_an_empty_list(nodes):
    for node in nodes.values():
        node.outcome = "timed-out"
    status, _, problem = get(lambda: make_app(InMemoryReader(nodes)), AQ)
    assert status == 503 and "lyon=timed-out" in problem["detail"]


def test_types_and_attributes(app):
    _, _, types = get(app, "/ngsi-ld/v1/types")
    assert types["type"] == "EntityTypeList"
    assert types["typeList"] == [
        "AirQualityObserved",
        "CitePlusEnergyAggregate",
        "OffStreetParking",
    ]
    status, _, info = get(app, "/ngsi-ld/v1/types/AirQualityObserved")
    assert status == 200 and info["entityCount"] == 5
    assert [a["attributeName"] for a in info["attributeDetails"]] == ["location", "no2", "pm10"]
    assert get(app, "/ngsi-ld/v1/types/ACMeasurement")[0] == 404
    _, _, attributes = get(app, "/ngsi-ld/v1/attributes")
    assert "no2" in attributes["attributeList"]
    _, _, no2 = get(app, "/ngsi-ld/v1/attributes/no2")
    assert no2["attributeCount"] == 5 and no2["typeNames"] == ["AirQualityObserved"]
    _, _, detailed = get(app, "/ngsi-ld/v1/types?details=true")
    assert detailed[0]["typeName"] == "AirQualityObserved"


TEMPORAL = "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:lyon:FR20004"
RANGE = "timerel=between&timeAt=2026-01-15T00:00:00Z&endTimeAt=2026-01-15T04:00:00Z"


def test_temporal_representations(app):
    status, _, raw = get(app, f"{TEMPORAL}?{RANGE}&lastN=2")
    assert status == 200
    assert raw["no2"] == [
        {"type": "Property", "value": 34.0, "observedAt": "2026-01-15T03:30:00Z", "unitCode": "GQ"},
        {"type": "Property", "value": 35.0, "observedAt": "2026-01-15T03:45:00Z", "unitCode": "GQ"},
    ]
    _, _, values = get(app, f"{TEMPORAL}?{RANGE}&options=temporalValues")
    assert values["no2"]["values"][0] == [20.0, "2026-01-15T00:00:00Z"]
    _, _, hourly = get(
        app,
        f"{TEMPORAL}?{RANGE}&options=aggregatedValues&aggrMethods=sum,max&aggrPeriodDuration=PT1H",
    )
    assert hourly["no2"]["sum"][0] == [86.0, "2026-01-15T00:00:00Z", "2026-01-15T01:00:00Z"]
    assert hourly["no2"]["max"][-1] == [35.0, "2026-01-15T03:00:00Z", "2026-01-15T04:00:00Z"]
    _, _, simple = get(app, f"{TEMPORAL}?{RANGE}&lastN=1&options=keyValues")
    assert simple["no2"] == {"type": "Property", "values": [[35.0, "2026-01-15T03:45:00Z"]]}
    _, _, short = get(app, f"{TEMPORAL}?{RANGE}&lastN=1&format=concise")
    assert short["no2"] == [{"value": 35.0, "observedAt": "2026-01-15T03:45:00Z", "unitCode": "GQ"}]
    status, _, ld = get(app, f"{TEMPORAL}?{RANGE}&lastN=1", {"Accept": "application/ld+json"})
    assert status == 200 and ld["@context"].endswith("citeplus.jsonld")
    _, _, listed = get(
        app, f"/ngsi-ld/v1/temporal/entities?type=AirQualityObserved&{RANGE}&limit=1"
    )
    assert listed[0]["id"].endswith("FR20004") and len(listed[0]["no2"]) == 16


HOSTILE = [
    AQ + "&limit=5&limit=6",
    AQ + "&lmit=5",
    AQ + "&limit=-1",
    AQ + "&limit=99999999999999999999",
    AQ + "&offset=9999&limit=1000",
    AQ + "&q=" + "(" * 50 + "no2>1" + ")" * 50,
    AQ
    + "&q=no2=="
    + ",".join(str(i) for i in range(90))
    + ";pm10=="
    + ",".join(str(i) for i in range(90)),
    AQ + '&q=name=="x"',
    AQ + "&q=no2~=a.*",
    AQ + "&q=no2.value>3",
    AQ + "&q=no2>1e999",
    AQ + "&georel=intersects&geometry=Point&coordinates=[1,2]",
    AQ + "&georel=near;maxDistance==10&geometry=Point&coordinates=[45.7,200]",
    AQ + "&georel=near;maxDistance==10&geometry=Point&coordinates=NaN",
    AQ + "&georel=within&geometry=Polygon&coordinates=[[[1,2],[1,2]]]",
    AQ + "&georel=near;maxDistance==10&geometry=Point&coordinates=" + "[" * 1000 + "]" * 1000,
    AQ + "&options=keyValues,concise",
    AQ + "&idPattern=(?=x)",
    AQ + "&idPattern=[",
    "/ngsi-ld/v1/entities?type=Air%C3%A9Quality",
    "/ngsi-ld/v1/entities?type=" + "A" * 5000,
    "/ngsi-ld/v1/entities?type=A;B",
    "/ngsi-ld/v1/entities?id=%00",
    "/ngsi-ld/v1/entities?attrs=no2,,pm10",
    "/ngsi-ld/v1/entities?count=yes",
    "/ngsi-ld/v1/entities?csf=x",
    TEMPORAL + "?timerel=between&timeAt=2026-01-15T00:00:00",
    TEMPORAL + "?timerel=between&timeAt=2026-01-15T00:00:00Z",
    TEMPORAL + "?timerel=after&timeAt=yesterday",
    TEMPORAL + f"?{RANGE}&options=aggregatedValues&aggrMethods=stddev",
    TEMPORAL + f"?{RANGE}&options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration=P1M",
    TEMPORAL
    + f"?{RANGE}&options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration=PT1S&timeAt=x",
    TEMPORAL + "?lastN=0",
    TEMPORAL + f"?{RANGE}&aggrMethods=sum",
    "/ngsi-ld/v1/types?details=maybe",
    "/ngsi-ld/v1/types/AirQualityObserved?x=1",
    "/ngsi-ld/v1/subscriptions",
    "/ngsi-ld/v1/entityOperations/query",
]


def test_hostile_requests_are_400s_that_say_what_to_do(app):
    answers = get_many(app, HOSTILE)
    for path, (status, headers, problem) in zip(HOSTILE, answers, strict=True):
        assert 400 <= status < 500, (path, status, problem)
        assert headers["Content-Type"].startswith("application/json"), path
        assert problem["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/"), path
        assert problem["title"] and len(problem["detail"]) > 10, path
