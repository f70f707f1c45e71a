"""The attacker's view of the developer portal, in headless Chromium: a city file (or a
peer) that puts markup in a dataset's title, description, publisher or keywords, a
``javascript:`` licence, an entity whose key is markup. The page must show all of it
as text: no element of theirs in the DOM, no link to a script URI, nothing run.

The portal and the real NGSI-LD routes are served in-process over an in-memory
federation (testkit.api_reader: no broker or warehouse needed for what a browser draws)
and a catalogue of the shape ``GET /catalog`` answers, written here with the payloads.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.api.ngsi.routes import add_ngsi_routes
from services.api.portal import add_portal
from testkit.api_reader import InMemoryReader, MemoryNode, entity
from testkit.api_shell import shell_node
from testkit.portal_browser import render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Runs when inserted as HTML: the handler marks the body (the page's policy may block the
# handler itself; the element in the DOM is the failure either way).
MARKUP = '<img src=x onerror="document.body.dataset.pwned=1">'
SCRIPT_URI = "javascript:document.body.dataset.pwned=2"
ETALAB = "https://www.etalab.gouv.fr/licence-ouverte-open-licence/"
CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
}
THEME = "http://publications.europa.eu/resource/authority/data-theme/"
FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"


def dataset(source: str, title: object, licence: str, entity_type: str) -> dict:
    base = "http://node.test/catalog"
    return {
        "@id": f"{base}/dataset/lyon/{source}",
        "@type": "dcat:Dataset",
        "dct:identifier": f"lyon/{source}",
        "dct:title": title,
        "dct:description": [{"@value": f"<script>bad()</script>{MARKUP}", "@language": "en"}],
        "dct:publisher": {
            "@id": f"{base}/publisher/lyon",
            "@type": "foaf:Agent",
            "foaf:name": f"Lyon {MARKUP}",
        },
        "dcat:theme": [{"@id": THEME + "ENVI"}],
        "dcat:keyword": [MARKUP],
        "dct:spatial": {"@id": "http://id.insee.fr/geo/commune/69123"},
        "dct:accrualPeriodicity": {"@id": FREQUENCY + "HOURLY"},
        "dcat:distribution": [
            {
                "@id": f"{base}/distribution/lyon/{source}/ngsi-ld",
                "@type": "dcat:Distribution",
                "dcat:accessURL": {"@id": f"/ngsi-ld/v1/entities?type={quote(entity_type)}"},
                "dct:license": {"@id": licence},
            }
        ],
    }


CATALOG = {
    "@context": CONTEXT,
    "@id": "http://node.test/catalog",
    "@type": "dcat:Catalog",
    "dct:title": "Cité+",
    "dcat:dataset": [
        dataset(
            "air",
            [{"@value": MARKUP, "@language": "en"}, {"@value": "Air", "@language": "fr"}],
            ETALAB,
            "AirQualityObserved",
        ),
        dataset("traffic", f"Traffic {MARKUP}", SCRIPT_URI, f"Traffic{MARKUP}"),
    ],
}


def hostile_federation() -> dict[str, MemoryNode]:
    lyon = MemoryNode(
        entities=[
            entity("lyon", MARKUP, values={"no2": 30.0}, observed="2026-01-15T11:50:00Z"),
            entity("lyon", "FR20004", values={"no2": 20.0}, observed="2026-01-15T11:50:00Z"),
        ]
    )
    start = datetime(2026, 1, 15, 0, 0)
    lyon.series[("lyon", MARKUP)] = {
        "no2": [(start + timedelta(minutes=10 * i), 20.0 + i % 7) for i in range(72)]
    }
    return {"lyon": lyon}


def portal_app(state: Path) -> web.Application:
    async def catalog(request: web.Request) -> web.Response:
        return web.json_response(CATALOG, content_type="application/ld+json")

    app = web.Application()
    add_portal(app, shell_node(state))
    add_ngsi_routes(app, InMemoryReader(hostile_federation()))
    app.router.add_get("/catalog", catalog)
    return app


def test_markup_from_city_files_and_entities_shows_as_text(tmp_path: Path) -> None:
    async def run():
        async with TestServer(portal_app(tmp_path)) as server:
            # Redrawn every 5 s: Chromium's virtual time (20 s) sees it drawn again.
            page = server.make_url("/portal").with_query(refresh=5)
            url = f"{page}#dataset={quote('lyon/air', safe='')}"
            return await asyncio.to_thread(render, url, tmp_path / "profile")

    page = asyncio.run(run())
    dom = page.dom
    assert page.attribute("data-state") == "ready", dom[:3000]
    assert page.attribute("data-datasets") == "2"
    # Their markup is text in the page, and nothing of it an element.
    assert "<img" not in dom and "<script>bad" not in dom, dom[:4000]
    assert "&lt;img src=x onerror=" in dom
    assert "&lt;script&gt;bad()&lt;/script&gt;" in dom
    assert page.attribute("data-pwned") is None
    # A licence that is a script URI is shown, never a link; the real one is a link.
    assert 'href="javascript:' not in dom
    assert f'href="{ETALAB}"' in dom
    # A type that is not a type name is never put into an example or a query.
    assert "Traffic&lt;img" not in dom and "Traffic%3Cimg" not in dom
    # The chart of the hostile entity drew its points; its id shows as text.
    assert int(page.attribute("data-points", "svg") or 0) >= 1, dom[-4000:]
    assert int(page.attribute("data-draws", "div") or 0) >= 2, dom[-4000:]
    assert quote(MARKUP, safe="") in dom or "%3Cimg" in dom
    assert page.attribute("data-errors") is None, dom[-2000:]
    assert page.console == []  # not a warning, not a policy violation
