"""A hostile client against the NGSI-LD routes (aiohttp's test client over an in-memory
federation; no broker, no warehouse): what the Host header and escaped ids can make
the API say, to the attacker and to the next caller of the same audience."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from services.api.ngsi.context import CONTEXT_PATH
from services.api.ngsi.routes import add_ngsi_routes
from testkit.api_reader import InMemoryReader, MemoryNode, entity, sample_federation

AQ = "/ngsi-ld/v1/entities?type=AirQualityObserved"
LD = {"Accept": "application/ld+json"}


def run(app: web.Application, requests: list[tuple[str, dict[str, str]]]) -> list[Any]:
    """(status, Link header, parsed body) of each GET, in order, on one server."""

    async def main() -> list[Any]:
        async with TestClient(TestServer(app)) as client:
            found = []
            for path, headers in requests:
                # sent as written: yarl would otherwise re-encode the escapes of the path
                url = URL(str(client.make_url("")).rstrip("/") + path, encoded=True)
                response = await client.session.get(url, headers=headers)
                text = await response.text()
                found.append((response.status, response.headers.get("Link", ""), json.loads(text)))
            return found

    return asyncio.run(main())


def routes_app(nodes: dict[str, MemoryNode], cache_ttl_s: float = 0) -> web.Application:
    app = web.Application()
    add_ngsi_routes(app, InMemoryReader(nodes), cache_ttl_s=cache_ttl_s)
    return app


def test_a_malformed_host_header_is_no_server_error_and_injects_nothing() -> None:
    """The context URL is built from the request's Host: a Host aiohttp cannot parse
    must not turn into a 500, and one carrying quotes or spaces must not reach the Link
    header or the @context of the body (a parameter injected into a cacheable answer)."""
    hostile = ["x:99999", "x:abc", 'x"; rel="next', "a b", "x>, <http://evil/ctx>"]
    requests = [(AQ, {"Host": host}) for host in hostile]
    requests += [(AQ, {"Host": host, **LD}) for host in hostile]
    answers = run(routes_app(sample_federation()), requests)
    for (_path, headers), (status, link, body) in zip(requests, answers, strict=True):
        assert status == 200, (headers, body)
        context = body[0]["@context"] if "Accept" in headers else link.split(">", 1)[0][1:]
        assert context.endswith(CONTEXT_PATH), (headers, context)
        assert not any(c in context for c in ' "<>,;'), (headers, context)
        if link:
            assert link.count("<") == 1 and link.count('rel="') == 1, (headers, link)


def test_a_well_formed_host_still_names_the_context_absolutely() -> None:
    [(status, link, _)] = run(routes_app(sample_federation()), [(AQ, {"Host": "api.lyon.fr"})])
    assert status == 200
    assert link.startswith(f"<http://api.lyon.fr{CONTEXT_PATH}>")


def test_two_ids_that_decode_to_the_same_path_are_not_served_from_one_cache_entry() -> None:
    """``a%2Fb`` and ``a/b`` are two entity keys. Escaped once more in the path, the
    id of one (the whole id escaped) and of the other (its key escaped) decode to the
    same path: a cache keyed on the decoded path served the first one's answer for
    the second, to everyone of the audience until it expired."""
    node = MemoryNode(
        entities=[
            entity("lyon", "a/b", "OffStreetParking", values={"available": 1.0}, unit="count"),
            entity("lyon", "a%2Fb", "OffStreetParking", values={"available": 2.0}, unit="count"),
        ]
    )
    base = "/ngsi-ld/v1/entities/"
    whole_escaped = base + "urn%3Angsi-ld%3AOffStreetParking%3Alyon%3Aa%252Fb"  # key a/b
    key_escaped = base + "urn:ngsi-ld:OffStreetParking:lyon:a%252Fb"  # key a%2Fb
    app = routes_app({"lyon": node}, cache_ttl_s=60)
    first, second = run(app, [(whole_escaped, {}), (key_escaped, {})])
    assert first[0] == 200 and second[0] == 200
    assert first[2]["id"] == "urn:ngsi-ld:OffStreetParking:lyon:a%2Fb"
    assert second[2]["id"] == "urn:ngsi-ld:OffStreetParking:lyon:a%252Fb"


def test_a_time_at_the_edge_of_the_calendar_is_a_400_that_says_why() -> None:
    """A zone offset pushing timeAt past year 1 or 9999 overflowed on its way to the
    federation's Timestamp: a 500 for a client's mistake."""
    temporal = "/ngsi-ld/v1/temporal/entities?type=AirQualityObserved&timerel="
    requests = [
        (temporal + "before&timeAt=0001-01-01T00:00:00%2B01:00", {}),
        (temporal + "after&timeAt=9999-12-31T23:59:59-05:00", {}),
        (temporal + "between&timeAt=2026-01-01T00:00:00Z&endTimeAt=9999-12-31T23:00:00-02:00", {}),
    ]
    for status, _, body in run(routes_app(sample_federation()), requests):
        assert status == 400, body
        assert "timeAt" in body["detail"] or "endTimeAt" in body["detail"]


def test_service_names_and_addresses_are_hosts_too() -> None:
    hosts = ["citeplus_api:8010", "10.0.0.7:8010", "[::1]:8010"]
    answers = run(routes_app(sample_federation()), [(AQ, {"Host": h}) for h in hosts])
    for host, (status, link, _) in zip(hosts, answers, strict=True):
        assert status == 200
        assert link.startswith(f"<http://{host}{CONTEXT_PATH}>"), link
