"""Where notifications may go, judged without a broker: every address form of the
inside of a network is refused unless the operator allowed it, names are judged by
every address they resolve to, and the notifier's resolver hands out only addresses
it checked (a DNS answer that changes after the subscription was created)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from services.api.subscriptions.targets import (
    CheckedResolver,
    TargetPolicy,
    TargetRefused,
    check_target,
    checked_connector,
    embedded_ipv4,
    parse_target,
    why_forbidden,
)
from services.runtime.errors import ConfigError

NONE = TargetPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "::",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "fc00::1",
        "fd12:3456::1",
        "100.64.0.1",
        "224.0.0.251",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)
def test_inside_addresses_are_refused(address: str) -> None:
    assert why_forbidden(ipaddress.ip_address(address), NONE) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert why_forbidden(ipaddress.ip_address(address), NONE) is None


def test_the_operator_allows_addresses_and_ranges_and_nothing_more() -> None:
    policy = TargetPolicy.parse("127.0.0.1, 10.1.0.0/16")
    assert why_forbidden(ipaddress.ip_address("127.0.0.1"), policy) is None
    assert why_forbidden(ipaddress.ip_address("::ffff:127.0.0.1"), policy) is None
    assert why_forbidden(ipaddress.ip_address("10.1.200.3"), policy) is None
    assert why_forbidden(ipaddress.ip_address("127.0.0.2"), policy) is not None
    assert why_forbidden(ipaddress.ip_address("10.2.0.1"), policy) is not None
    assert TargetPolicy.parse("").allowed == ()
    with pytest.raises(ConfigError, match="localhost"):
        TargetPolicy.parse("127.0.0.1,localhost")


def test_embedded_ipv4_forms() -> None:
    assert str(embedded_ipv4(ipaddress.ip_address("::ffff:1.2.3.4"))) == "1.2.3.4"
    assert str(embedded_ipv4(ipaddress.ip_address("64:ff9b::102:304"))) == "1.2.3.4"
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1111")) is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://0177.0.0.01/",
        "http://127.1/",
        "http://127.0.0.1./",
        "http://user@example.org/",
        "http://:pw@example.org/",
        "javascript:alert(1)",
        "ftp://example.org/",
        "http:///path",
        "http://exa mple.org/",
        "http://example.org:0/",
        "http://example.org:70000/",
        "https://" + "a" * 3000 + ".org/",
    ],
)
def test_urls_that_hide_their_target_are_refused(uri: str) -> None:
    with pytest.raises(TargetRefused):
        parse_target(uri)


def test_a_plain_url_parses() -> None:
    target = parse_target("HTTPS://Receiver.Example.org/notify?x=1")
    assert (target.scheme, target.host, target.port, target.literal) == (
        "https",
        "receiver.example.org",
        443,
        None,
    )
    assert parse_target("http://[2606:4700::1111]:8080/").literal is not None


@pytest.mark.parametrize("uri", ["http://localhost/", "http://LOCALHOST:8010/", "http://[::1]/"])
def test_names_and_literals_of_loopback_are_refused_without_an_allowance(uri: str) -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        asyncio.run(check_target(uri, NONE))


def test_a_name_is_refused_when_any_of_its_addresses_is_inside() -> None:
    class Answers:
        """A name server whose answer the attacker controls (public + loopback)."""

        def __init__(self, addresses: list[str]):
            self.addresses = addresses

        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
            return [
                {"hostname": host, "host": a, "port": port, "family": family, "proto": 0}
                for a in self.addresses
            ]

        async def close(self) -> None:
            pass

    both = CheckedResolver(NONE, Answers(["93.184.215.14", "127.0.0.1"]))  # type: ignore[arg-type]
    with pytest.raises(TargetRefused, match="loopback"):
        asyncio.run(both.resolve("rebind.example", 80))
    public = CheckedResolver(NONE, Answers(["93.184.215.14"]))  # type: ignore[arg-type]
    assert [r["host"] for r in asyncio.run(public.resolve("ok.example", 80))] == ["93.184.215.14"]
    # Rebinding: the same name later answering the metadata address is refused at send time.
    public._inner = Answers(["169.254.169.254"])  # type: ignore[assignment]
    with pytest.raises(TargetRefused, match="link-local"):
        asyncio.run(public.resolve("ok.example", 80))


def test_the_notifiers_connector_refuses_a_name_that_resolves_inside() -> None:
    """A real server on loopback, reached by name: refused unless 127.0.0.1 is allowed."""
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    async def received(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def scenario(policy: TargetPolicy) -> int:
        app = web.Application()
        app.router.add_post("/notify", received)
        async with (
            TestServer(app, host="127.0.0.1") as server,
            ClientSession(connector=checked_connector(policy)) as session,
        ):
            url = f"http://localhost:{server.port}/notify"
            async with session.post(url, json={}, allow_redirects=False) as response:
                return response.status

    with pytest.raises(TargetRefused, match="loopback"):
        asyncio.run(scenario(NONE))
    assert asyncio.run(scenario(TargetPolicy.parse("127.0.0.1"))) == 204
