"""What the common API's whole-node tests and bench ask and compare: NGSI-LD ids of
the seeded world, the warehouse's answers per source, and calls with or without a key.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

import httpx

from testkit.api_nodes import ApiNode
from testkit.api_world import SOURCES

BASE = "/ngsi-ld/v1"
ENERGY_TYPE = "CitePlusEnergyAggregate"
TYPE_OF = {source.id: source.entity_type for source in SOURCES}
# The response header that says how each node of the federation fared (one entry
# per node asked: ``lyon=answered, paris=timed-out``).
PEERS_HEADER = "Citeplus-Peers"


def ngsi_id(entity_type: str, city: str, key: str) -> str:
    """The NGSI-LD id the API gives an entity (docs/api.md): the key percent-encoded."""
    return f"urn:ngsi-ld:{entity_type}:{city}:{quote(key, safe='')}"


def expected_rows(nodes: Iterable[ApiNode], source: str) -> dict[str, dict]:
    """Warehouse rows (latest value per entity) of a source in every node, by NGSI-LD id."""
    rows = {}
    for node in nodes:
        for row in node.expected()["latest"]:
            if row["source"] == source:
                rows[ngsi_id(TYPE_OF[source], row["city"], row["entity"])] = row
    return rows


def headers_for(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def call(
    node: ApiNode, path: str, params: dict | None = None, key: str | None = None, **kwargs
) -> httpx.Response:
    """GET on the node's API; a generous timeout: a hang is a failure, not a wait."""
    return httpx.get(
        f"{node.url}{path}",
        params=params,
        headers={**headers_for(key), **kwargs.pop("headers", {})},
        timeout=kwargs.pop("timeout", 60),
        **kwargs,
    )


def entities(node: ApiNode, key: str | None = None, **params: str | int) -> list[dict]:
    """Every entity a query matches, page after page (limit 100), in the API's order."""
    found: list[dict] = []
    while True:
        response = call(
            node, f"{BASE}/entities", {**params, "limit": 100, "offset": len(found)}, key
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page
        if len(page) < 100:
            return found


def ids(documents: list[dict]) -> list[str]:
    return [document["id"] for document in documents]


def peer_outcomes(response: httpx.Response) -> dict[str, str]:
    """``{node: outcome}`` from the federation status header (``code=outcome, ...``)."""
    value = response.headers.get(PEERS_HEADER, "")
    outcomes = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        code, _, outcome = part.partition("=")
        outcomes[code.strip()] = outcome.split(";")[0].strip().strip('"')
    return outcomes
