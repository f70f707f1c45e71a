"""``GET /catalog`` over HTTP (aiohttp's test server, the real application): forms by
Accept and ?format, refusals as ProblemDetails, ETag/304, the nodes' outcomes, and
no node answering as a 503 that says to retry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from services.api.app import build_app, default_parts
from services.api.audience import Audience
from services.api.merge import ANSWERED, NodeStatus
from services.api.reader import NodeCatalog
from services.federation.protos import pb
from testkit.api_shell import Clock, drive, shell_node
from testkit.catalog_checks import graph_from_jsonld, graph_from_turtle
from testkit.catalog_data import sample_listing


class ListingReader:
    """Nodes' GetCatalog answers as given (``down``: these nodes do not answer)."""

    def __init__(self, down: tuple[str, ...] = ()):
        self.down, self.asked = down, []

    def catalogs(self, audience: Audience) -> list[NodeCatalog]:
        self.asked.append(audience.on_behalf_of)
        answers = []
        for node in ("lyon", "paris"):
            if node in self.down:
                answers.append(NodeCatalog(NodeStatus(node, "unreachable"), "x:1"))
                continue
            catalog = pb.Catalog(node=node, caller="api")
            catalog.datasets.extend(x.dataset for x in sample_listing() if x.node == node)
            answers.append(NodeCatalog(NodeStatus(node, ANSWERED), "x:1", catalog))
        return answers


def app_for(tmp_path: Path, reader: ListingReader):
    node = shell_node(tmp_path, anonymous_rate=1000.0, anonymous_burst=1000, cache_ttl_s=30)
    return build_app(node, reader, default_parts(node, CollectorRegistry(), Clock()))  # type: ignore[arg-type]


def test_forms_etag_and_peers(tmp_path: Path) -> None:
    reader = ListingReader()

    async def scenario(client: TestClient):
        plain = await client.get("/catalog")
        body = await plain.read()
        again = await client.get("/catalog", headers={"If-None-Match": plain.headers["ETag"]})
        turtle = await client.get("/catalog", headers={"Accept": "text/turtle"})
        by_format = await client.get("/catalog?format=ttl")
        return plain, body, again.status, turtle, await turtle.read(), await by_format.read()

    plain, body, again, turtle, turtle_body, by_format = drive(app_for(tmp_path, reader), scenario)
    assert plain.status == 200 and plain.content_type == "application/ld+json"
    assert plain.headers["Citeplus-Peers"] == "lyon=answered, paris=answered"
    assert again == 304
    assert turtle.content_type == "text/turtle" and turtle_body == by_format
    assert len(graph_from_jsonld(body)) == len(graph_from_turtle(turtle_body))
    assert reader.asked == ["public"]  # one read for all four: the answer is kept


def test_refusals_are_problem_details(tmp_path: Path) -> None:
    async def scenario(client: TestClient):
        html = await client.get("/catalog", headers={"Accept": "text/html"})
        rdf = await client.get("/catalog?format=rdfxml")
        return html.status, await html.json(), rdf.status, await rdf.json()

    html, html_body, rdf, rdf_body = drive(app_for(tmp_path, ListingReader()), scenario)
    assert html == 406 and "text/turtle" in html_body["detail"]
    assert rdf == 400 and "ttl, jsonld" in rdf_body["detail"]


def test_a_missing_node_is_named_and_its_answer_not_kept(tmp_path: Path) -> None:
    reader = ListingReader(down=("paris",))

    async def scenario(client: TestClient):
        first = await client.get("/catalog")
        await client.get("/catalog")
        return first.headers["Citeplus-Peers"], await first.json()

    peers, document = drive(app_for(tmp_path, reader), scenario)
    assert peers == "lyon=answered, paris=unreachable"
    assert {d["citeplus:city"] for d in document["dcat:dataset"]} == {"lyon"}
    assert document["citeplus:nodes"] == ["lyon"]
    assert len(reader.asked) == 2  # partial: asked again


def test_no_node_answering_is_a_503_saying_to_retry(tmp_path: Path) -> None:
    async def scenario(client: TestClient):
        answer = await client.get("/catalog")
        return answer.status, answer.headers.get("Retry-After"), await answer.json()

    status, retry, body = drive(app_for(tmp_path, ListingReader(down=("lyon", "paris"))), scenario)
    assert status == 503 and retry == "5" and "try again" in body["detail"]


def test_each_host_gets_its_own_urls_from_one_build(tmp_path: Path) -> None:
    reader = ListingReader()

    async def scenario(client: TestClient):
        bodies = []
        for host in ("a.example:8010", "b.example", 'evil"><x'):
            for fmt in ("jsonld", "ttl"):
                answer = await client.get(f"/catalog?format={fmt}", headers={"Host": host})
                bodies.append((host, fmt, answer.status, (await answer.read()).decode()))
        return bodies

    bodies = drive(app_for(tmp_path, reader), scenario)
    assert reader.asked == ["public"]  # one build: a Host never costs another
    for host, fmt, status, body in bodies:
        assert status == 200 and "citeplus-api.invalid" not in body, (host, fmt)
        if host.endswith(".example") or ":" in host:
            assert f"http://{host}/catalog/datasets/lyon/air" in body, (host, fmt)
        else:  # not a host: the node's own address, never the header echoed
            assert "evil" not in body and "http://127.0.0.1:8010/catalog" in body
    graph_from_turtle(bodies[1][3])  # still parses after the substitution


def test_requests_arriving_together_share_one_build(tmp_path: Path) -> None:
    reader = ListingReader()

    async def scenario(client: TestClient):
        answers = await asyncio.gather(*(client.get("/catalog?format=ttl") for _ in range(8)))
        return [a.status for a in answers]

    assert drive(app_for(tmp_path, reader), scenario) == [200] * 8
    assert reader.asked == ["public"]
