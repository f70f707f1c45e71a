"""The common API's shell over HTTP (aiohttp's test server on loopback): CORS, ETag and
304, gzip, bounds, ProblemDetails for aiohttp's own refusals, 429 and usage metrics."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from services.api.keys import KeyStore, keys_path
from testkit.api_shell import BIG, PROBE, Clock, drive, shell_app, shell_node


@pytest.fixture
def node(tmp_path: Path):
    return shell_node(tmp_path, anonymous_rate=1000.0, anonymous_burst=1000, cache_ttl_s=30)


def test_a_browser_preflight_is_answered_without_a_key(node) -> None:
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        headers = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, link",
        }
        preflight = await client.options("/ngsi-ld/v1/entities", headers=headers)
        answer = await client.get(PROBE, headers={"Origin": "https://app.example"})
        return preflight.status, dict(preflight.headers), dict(answer.headers)

    status, preflight, answer = drive(app, scenario)
    assert status == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "GET" in preflight["Access-Control-Allow-Methods"]
    allowed = preflight["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "x-api-key" in allowed and "link" in allowed
    assert answer["Access-Control-Allow-Origin"] == "*"
    exposed = answer["Access-Control-Expose-Headers"]
    for header in ("Link", "NGSILD-Results-Count", "Citeplus-Peers", "ETag", "Retry-After"):
        assert header in exposed


def test_an_unchanged_answer_is_a_304_on_its_etag(node) -> None:
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        first = await client.get(PROBE)
        etag = first.headers["ETag"]
        again = await client.get(PROBE, headers={"If-None-Match": etag})
        weak = await client.get(PROBE, headers={"If-None-Match": f'"other", W/{etag}'})
        stale = await client.get(PROBE, headers={"If-None-Match": '"0123"'})
        return first, etag, again, await again.read(), weak.status, stale.status

    first, etag, again, body, weak, stale = drive(app, scenario)
    assert first.status == 200 and etag.startswith('"') and len(etag) == 34
    assert first.headers["Cache-Control"] == "public, max-age=30"
    assert "Authorization" in first.headers["Vary"]
    assert again.status == 304 and body == b"" and again.headers["ETag"] == etag
    assert weak == 304 and stale == 200


def test_keyed_answers_are_private_to_caches(node, tmp_path: Path) -> None:
    _, token = KeyStore(keys_path(tmp_path)).create("app")
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        return (await client.get(PROBE, headers={"X-API-Key": token})).headers

    assert drive(app, scenario)["Cache-Control"] == "private, max-age=30"


def test_gzip_when_the_client_accepts_it(node) -> None:
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        zipped = await client.get(BIG, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        plain = await client.get(BIG, headers={"Accept-Encoding": "identity"})
        refused = await client.get(BIG, headers={"Accept-Encoding": "gzip;q=0"})
        tag = zipped.headers["ETag"]
        revalidated = await client.get(
            BIG, headers={"Accept-Encoding": "gzip", "If-None-Match": tag}
        )
        return (
            zipped.headers.get("Content-Encoding"),
            await zipped.read(),
            plain.headers.get("Content-Encoding"),
            await plain.read(),
            refused.headers.get("Content-Encoding"),
            tag,
            plain.headers["ETag"],
            revalidated.status,
        )

    coding, zipped, plain_coding, plain, refused, zip_tag, plain_tag, revalidated = drive(
        app, scenario
    )
    assert coding == "gzip" and gzip.decompress(zipped) == plain
    assert len(zipped) < len(plain) / 5
    assert plain_coding is None and refused is None
    assert zip_tag == plain_tag[:-1] + '-gzip"'  # a strong tag per content coding
    assert revalidated == 304


def test_oversized_requests_get_414_and_431_with_what_to_do(tmp_path: Path) -> None:
    node = shell_node(tmp_path, max_url_bytes=1024, max_header_bytes=2048)
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        long_url = await client.get(PROBE, params={"q": "x" * 2000})
        big_headers = await client.get(PROBE, headers={f"X-H{i}": "y" * 100 for i in range(30)})
        fine = await client.get(PROBE, params={"q": "x" * 500})
        return (
            long_url.status,
            await long_url.json(),
            big_headers.status,
            await big_headers.json(),
            fine.status,
        )

    url_status, url_body, header_status, header_body, fine = drive(app, scenario)
    assert url_status == 414 and "narrow the query" in url_body["detail"]
    assert header_status == 431 and "2048" in header_body["detail"]
    assert fine == 200


def test_unknown_paths_and_methods_are_problem_details(node) -> None:
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        missing = await client.get("/ngsi-ld/v1/nothing-here")
        post = await client.post(PROBE, data=b"{}")
        return missing.status, await missing.json(), post.status, await post.json()

    missing, missing_body, post, post_body = drive(app, scenario)
    assert missing == 404 and missing_body["type"].endswith("/ResourceNotFound")
    assert "/openapi.json" in missing_body["detail"]
    assert post == 405 and post_body["type"].endswith("/OperationNotSupported")
    assert "read-only" in post_body["detail"]


def test_over_quota_is_a_429_with_whole_seconds_and_counted(tmp_path: Path) -> None:
    _, token = KeyStore(keys_path(tmp_path)).create("app", rate=0.25, burst=1)
    clock = Clock()
    app, parts = shell_app(shell_node(tmp_path, anonymous_rate=0.5, anonymous_burst=1), clock)

    async def scenario(client: TestClient):
        anonymous = [await client.get(PROBE) for _ in range(2)]
        keyed = [await client.get(PROBE, headers={"X-API-Key": token}) for _ in range(2)]
        clock.now += 4.0
        after = await client.get(PROBE, headers={"X-API-Key": token})
        return anonymous, keyed, await keyed[1].json(), after.status

    anonymous, keyed, body, after = drive(app, scenario)
    assert [r.status for r in anonymous] == [200, 429]
    assert anonymous[1].headers["Retry-After"] == "2"
    assert [r.status for r in keyed] == [200, 429]
    assert keyed[1].headers["Retry-After"] == "4"
    assert body["type"] == "urn:citeplus:errors:TooManyRequests" and "0.25" in body["detail"]
    assert after == 200
    key_id = token.split(".")[0]

    def counted(name: str, **labels: str) -> float | None:
        return parts.usage.registry.get_sample_value(f"citeplus_api_{name}_total", labels)

    assert counted("requests", key=key_id, status="2xx") == 2
    assert counted("requests", key=key_id, status="4xx") == 1
    assert counted("requests", key="anonymous", status="4xx") == 1
    assert counted("rejected", key=key_id, reason="quota") == 1
    assert counted("rejected", key="anonymous", reason="quota") == 1


def test_the_documentation_page_is_served_with_its_own_assets_only(node) -> None:
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        root = await client.get("/", allow_redirects=False)
        page = await client.get("/docs")
        script = await client.get("/docs/docs.js")
        style = await client.get("/docs/docs.css")
        missing = await client.get("/docs/..%2Fkeys.py")
        return root, page, await page.text(), script, style, missing.status

    root, page, html, script, style, missing = drive(app, scenario)
    assert root.status == 302 and root.headers["Location"] == "/portal"  # the developer portal
    assert page.status == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="/docs/docs.js"' in html and "http" not in html.replace("http-equiv", "")
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert style.headers["Content-Type"].startswith("text/css")
    assert missing == 404


def test_citeplus_status_counts_the_requests_answered(node) -> None:
    from prometheus_client import generate_latest

    from services.node.status import parse_metrics

    app, parts = shell_app(node, Clock())

    async def scenario(client: TestClient) -> None:
        for path in (PROBE, PROBE, "/nowhere"):
            await client.get(path)

    drive(app, scenario)
    assert parse_metrics(generate_latest(parts.usage.registry).decode()).records_in == 3
