"""What a hostile client of the common API gets: written from the attacker's side.

A revoked key is refused; a key bound to partner A cannot be made to act as partner B
(or as the node) by anything the client sends; an anonymous client cannot exceed its
rate by changing headers, by guessing keys, or by rotating addresses of one IPv6
subscriber; a failure never leaks a trace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from services.api.keys import KeyStore, keys_path
from testkit.api_shell import PROBE, Clock, drive, shell_app, shell_node

SPOOFING_HEADERS = (
    {"X-Forwarded-For": "203.0.113.{n}"},
    {"Forwarded": "for=198.51.100.{n}"},
    {"X-Real-IP": "192.0.2.{n}"},
    {"Citeplus-On-Behalf-Of": "partner-{n}"},
    {"User-Agent": "client-{n}"},
)


def issue(state: Path, **kwargs) -> str:
    return KeyStore(keys_path(state)).create(**kwargs)[1]


def test_a_revoked_key_is_refused_within_the_reload_bound(tmp_path: Path) -> None:
    node, clock = shell_node(tmp_path, keys_reload_s=1.0), Clock()
    token = issue(tmp_path, application="app")
    app, _ = shell_app(node, clock)
    key_id = token.split(".")[0]

    async def scenario(client: TestClient) -> list[int]:
        auth = {"Authorization": f"Bearer {token}"}
        statuses = [(await client.get(PROBE, headers=auth)).status]
        KeyStore(keys_path(tmp_path)).revoke(key_id)
        clock.now += 1.0  # the service looks at the file at most every keys_reload_s
        statuses.append((await client.get(PROBE, headers=auth)).status)
        statuses.append((await client.get(PROBE, headers={"X-API-Key": token})).status)
        return statuses

    assert drive(app, scenario) == [200, 401, 401]


def test_a_refused_key_never_falls_back_to_anonymous(tmp_path: Path) -> None:
    app, _ = shell_app(shell_node(tmp_path), Clock())
    token = issue(tmp_path, application="app")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    async def scenario(client: TestClient) -> list[tuple[int, str]]:
        answers = []
        for headers in (
            {"Authorization": f"Bearer {forged}"},
            {"X-API-Key": "k0000000000000000.guess"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": "Bearer"},
        ):
            response = await client.get(PROBE, headers=headers)
            answers.append((response.status, (await response.json())["type"]))
        return answers

    for status, kind in drive(app, scenario):
        assert status == 401 and kind == "urn:citeplus:errors:InvalidKey"


def test_a_partner_key_cannot_act_as_another_partner(tmp_path: Path) -> None:
    token_a = issue(tmp_path, application="a-app", partner="lyon")
    token_b = issue(tmp_path, application="b-app", partner="paris")
    app, _ = shell_app(shell_node(tmp_path), Clock())

    async def scenario(client: TestClient) -> tuple[list[dict], int]:
        seen = []
        for extra in (
            {"Citeplus-On-Behalf-Of": "paris"},
            {"citeplus-on-behalf-of": "paris", "NGSILD-Tenant": "paris"},
            {"X-Partner": "paris"},
        ):
            headers = {"Authorization": f"Bearer {token_a}", **extra}
            response = await client.get(PROBE, params={"partner": "paris"}, headers=headers)
            seen.append(await response.json())
        both = {"Authorization": f"Bearer {token_a}", "X-API-Key": token_b}
        return seen, (await client.get(PROBE, headers=both)).status

    seen, both = drive(app, scenario)
    assert {answer["partner"] for answer in seen} == {"lyon"}
    assert {answer["on_behalf_of"] for answer in seen} == {"lyon"}
    assert both == 400  # two different keys: refused, neither is picked


def test_anonymous_callers_are_the_public_audience_whatever_they_send(tmp_path: Path) -> None:
    app, _ = shell_app(shell_node(tmp_path), Clock())

    async def scenario(client: TestClient) -> dict:
        headers = {"Citeplus-On-Behalf-Of": "lyon", "NGSILD-Tenant": "lyon"}
        return await (await client.get(PROBE, headers=headers)).json()

    answer = drive(app, scenario)
    assert answer["key_id"] is None and answer["partner"] is None
    assert answer["on_behalf_of"] == "public"


@pytest.mark.parametrize("spoof", SPOOFING_HEADERS, ids=lambda h: next(iter(h)))
def test_anonymous_rate_holds_whatever_headers_say(tmp_path: Path, spoof: dict) -> None:
    node = shell_node(tmp_path, anonymous_rate=1.0, anonymous_burst=3)
    app, _ = shell_app(node, Clock())  # the clock never moves: no refill

    async def scenario(client: TestClient) -> list[int]:
        statuses = []
        for n in range(10):
            headers = {name: value.format(n=n) for name, value in spoof.items()}
            statuses.append((await client.get(PROBE, headers=headers)).status)
        return statuses

    statuses = drive(app, scenario)
    assert statuses[:3] == [200, 200, 200]
    assert set(statuses[3:]) == {429}


def test_guessing_keys_is_charged_to_the_anonymous_quota(tmp_path: Path) -> None:
    """Wrong keys are not a free way around the anonymous limit (nor a free oracle)."""
    node = shell_node(tmp_path, anonymous_rate=1.0, anonymous_burst=3)
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient) -> list[int]:
        statuses = []
        for n in range(10):
            guess = {"X-API-Key": f"k{n:016x}.guess{n}"}
            statuses.append((await client.get(PROBE, headers=guess)).status)
        return statuses

    statuses = drive(app, scenario)
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}


def test_a_key_shared_across_addresses_has_one_quota(tmp_path: Path) -> None:
    token = issue(tmp_path, application="app", rate=1.0, burst=2)
    app, _ = shell_app(shell_node(tmp_path, trusted_proxies="127.0.0.1"), Clock())

    async def scenario(client: TestClient) -> list[int]:
        statuses = []
        for n in range(5):
            headers = {"X-API-Key": token, "X-Forwarded-For": f"203.0.113.{n}"}
            statuses.append((await client.get(PROBE, headers=headers)).status)
        return statuses

    assert drive(app, scenario) == [200, 200, 429, 429, 429]


def test_an_unexpected_failure_leaks_no_trace(tmp_path: Path) -> None:
    app, _ = shell_app(shell_node(tmp_path), Clock())

    async def scenario(client: TestClient) -> tuple[int, str]:
        response = await client.get("/probe/boom")
        return response.status, await response.text()

    status, body = drive(app, scenario)
    assert status == 500
    assert "InternalError" in body and "incident" in body
    for leak in ("Traceback", "RuntimeError", "/srv/citeplus", "secret internal"):
        assert leak not in body


def test_no_key_acts_as_the_node_itself(tmp_path: Path) -> None:
    """A key bound to the node's own identity would ask the federation on behalf of the
    node, which may see its own cities' personal entity-level data: never served."""
    node = shell_node(tmp_path)
    identity = node.federation.identity or node.node.id
    token = issue(tmp_path, application="insider", partner=identity)
    app, _ = shell_app(node, Clock())

    async def scenario(client: TestClient) -> tuple[int, str]:
        response = await client.get(PROBE, headers={"Authorization": f"Bearer {token}"})
        return response.status, await response.text()

    status, body = drive(app, scenario)
    assert status == 401 and "this node" in body
