"""The developer portal's server side: the base URL its examples are built from (a
hostile Host or a forwarded header from a stranger never reaches them), the page's
strict policy, ``/`` leading to it, ``/portal/node.json``; and a guard on its script."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from services.api.portal import PORTAL_POLICY, Seen, base_url, node_info, own_url
from services.runtime.paths import REPO_ROOT
from testkit.api_shell import Clock, drive, shell_app, shell_node

FALLBACK = "http://127.0.0.1:8010"
PROXIES = frozenset({"10.0.0.7", "192.168.4.0/24"})
SCRIPT = REPO_ROOT / "services" / "api" / "assets" / "portal" / "portal.js"


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (Seen("http", "api.lyon.fr:8010", "203.0.113.9"), "http://api.lyon.fr:8010"),
        (Seen("https", "[2001:db8::1]:443", "203.0.113.9"), "https://[2001:db8::1]:443"),
        # A trusted proxy says what the client used.
        (
            Seen("http", "10.0.0.1:8010", "10.0.0.7", "https", "data.lyon.fr"),
            "https://data.lyon.fr",
        ),
        (
            Seen("http", "10.0.0.1:8010", "192.168.4.20", "https, http", "data.lyon.fr, x"),
            "https://data.lyon.fr",
        ),
        # Anyone else's forwarded headers are ignored: the Host they reached us with stands.
        (
            Seen("http", "api.lyon.fr", "203.0.113.9", "https", "evil.example"),
            "http://api.lyon.fr",
        ),
        # Hosts that are not hosts never reach the examples.
        (Seen("http", "evil.example/'$(rm -rf ~)", "203.0.113.9"), FALLBACK),
        (Seen("http", 'a.fr"><script>', "203.0.113.9"), FALLBACK),
        (Seen("http", "a.fr:99999", "203.0.113.9"), FALLBACK),
        (Seen("http", None, "203.0.113.9"), FALLBACK),
        (Seen("http", "10.0.0.1", "10.0.0.7", "javascript", "x.fr"), "http://10.0.0.1"),
        (Seen("http", "10.0.0.1", "10.0.0.7", "https", "x.fr/`id`"), "http://10.0.0.1"),
    ],
)
def test_the_examples_base_url_is_the_clients_own_and_never_a_hostile_one(seen, expected) -> None:
    assert base_url(seen, PROXIES, FALLBACK) == expected


def test_the_fallback_is_the_configured_listening_address(tmp_path: Path) -> None:
    assert own_url(shell_node(tmp_path, host="0.0.0.0", port=8123)) == "http://127.0.0.1:8123"
    assert own_url(shell_node(tmp_path, host="::1", port=8010)) == "http://[::1]:8010"
    assert own_url(shell_node(tmp_path, host="api.lyon.fr")) == "http://api.lyon.fr:8010"


def test_the_root_leads_to_the_portal_served_under_a_strict_policy(tmp_path: Path) -> None:
    node = shell_node(tmp_path, anonymous_rate=1000.0, anonymous_burst=1000, key_rate=70.0)
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        root = await client.get("/", allow_redirects=False)
        page = await client.get("/portal")
        script = await client.get("/portal/assets/portal.js")
        missing = await client.get("/portal/assets/node.json")
        info = await client.get("/portal/node.json", headers={"Host": "api.lyon.fr"})
        docs = await client.get("/docs")
        return (
            root.headers.get("Location"),
            page.status,
            dict(page.headers),
            await page.text(),
            script.headers["Content-Type"],
            missing.status,
            missing.headers["Content-Type"],
            await info.json(),
            docs.status,
        )

    location, status, headers, html, kind, missing, missing_kind, info, docs = drive(app, scenario)
    assert location == "/portal"
    assert status == 200 and docs == 200  # /docs stays as it was
    assert headers["Content-Security-Policy"] == PORTAL_POLICY
    assert "default-src 'none'" in PORTAL_POLICY and "unsafe" not in PORTAL_POLICY
    # Nothing from elsewhere and nothing inline: the page's own script and style only.
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert not re.findall(r"<[^>]*\son[a-z]+\s*=", html)  # no inline event handler
    assert kind.startswith("text/javascript")
    assert missing == 404 and missing_kind.startswith("application/json")  # ProblemDetails
    assert info["baseUrl"] == "http://api.lyon.fr"
    anonymous = {"perSecond": 1000.0, "burst": 1000, "per": "client address"}
    assert info["quotas"]["anonymous"] == anonymous
    assert info["quotas"]["key"]["perSecond"] == 70.0
    assert "citeplus api keys create" in info["keys"]["command"]
    assert info["links"]["openapi"] == "/openapi.json" and info["links"]["docs"] == "/docs"


def test_the_subscriptions_quota_is_the_node_files(tmp_path: Path) -> None:
    node = shell_node(tmp_path)
    assert node_info(node, FALLBACK)["quotas"]["subscriptionsPerKey"] == 20  # the default
    subscriptions = replace(node.api.subscriptions, per_key=7)
    node = replace(node, api=replace(node.api, subscriptions=subscriptions))
    assert node_info(node, FALLBACK)["quotas"]["subscriptionsPerKey"] == 7


def test_the_portal_script_never_writes_html() -> None:
    """Data from city files and peers is put in the page as text only (the browser test
    attacks it; this keeps an innerHTML from coming back unnoticed)."""
    script = SCRIPT.read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_a_shared_cache_cannot_keep_a_forwarded_hosts_base_url_for_others(tmp_path: Path) -> None:
    """node.json's baseUrl follows X-Forwarded-Host from a trusted proxy, which a cache
    in front of the node does not key on: stored once, a hostile forwarded host would
    be every visitor's examples (the curl that sends their key). Failed before: the
    answer was ``public, max-age`` with no Vary on the forwarded headers."""
    node = shell_node(tmp_path, trusted_proxies="127.0.0.1")
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient):
        forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
        info = await client.get("/portal/node.json", headers=forwarded)
        return (await info.json())["baseUrl"], dict(info.headers)

    base, headers = drive(app, scenario)
    assert base == "https://evil.example"  # what the trusted proxy said
    control = headers.get("Cache-Control", "")
    varies = {v.strip().lower() for v in headers.get("Vary", "").split(",")}
    kept_apart = {"x-forwarded-host", "x-forwarded-proto"} <= varies
    assert "no-store" in control or "private" in control or kept_apart
