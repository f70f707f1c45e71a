"""Quotas of the common API: the token bucket's arithmetic on a clock the test moves,
Retry-After in whole seconds, and who an anonymous caller is."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.middlewares import client_key
from services.api.quotas import Quotas, Rate, TokenBucket, retry_after
from services.runtime.config import load_node_config
from services.runtime.errors import ConfigError
from testkit.api_shell import Clock


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(per_second=2.0, burst=3), clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0 and bucket.take() == pytest.approx(0.5)
    clock.now += 3600  # a quiet hour refills the burst, not more
    assert [bucket.take() for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]


def test_a_clock_going_back_does_not_mint_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(1.0, 1), clock)
    assert bucket.take() == 0.0
    clock.now -= 100
    assert bucket.take() > 0


@pytest.mark.parametrize(("wait", "seconds"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (7.2, 8)])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, seconds: int) -> None:
    assert retry_after(wait) == seconds


def test_keys_and_addresses_have_their_own_buckets() -> None:
    clock = Clock()
    quotas = Quotas(Rate(1.0, 1), Rate(10.0, 2), clock)
    assert quotas.for_address("192.0.2.1") == 0.0
    assert quotas.for_address("192.0.2.1") > 0
    assert quotas.for_address("192.0.2.2") == 0.0
    assert [quotas.for_key("k1") == 0.0 for _ in range(3)] == [True, True, False]
    assert quotas.for_key("k2") == 0.0
    own = Rate(100.0, 5)  # a key created with its own --rate
    assert all(quotas.for_key("k1", own) == 0.0 for _ in range(5))


def test_anonymous_buckets_are_bounded_in_number() -> None:
    clock = Clock()
    quotas = Quotas(Rate(1.0, 1), Rate(10.0, 2), clock, max_anonymous=3)
    for n in range(10):
        quotas.for_address(f"192.0.2.{n}")
    assert len(quotas._addresses) == 3


def test_an_anonymous_caller_is_its_peer_address() -> None:
    none: frozenset[str] = frozenset()
    assert client_key("192.0.2.7", ["203.0.113.1"], none) == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7", [], none) == "192.0.2.7"
    assert client_key(None, [], none) == "unknown"


def test_ipv6_callers_are_counted_per_64() -> None:
    none: frozenset[str] = frozenset()
    one = client_key("2001:db8:1:2::1", [], none)
    assert one == client_key("2001:db8:1:2:ffff:ffff:ffff:ffff", [], none) == "2001:db8:1:2::/64"
    assert one != client_key("2001:db8:1:3::1", [], none)


def test_forwarded_addresses_are_believed_from_trusted_proxies_only() -> None:
    proxies = frozenset({"10.0.0.1", "10.0.0.2"})
    chain = ["198.51.100.9", "203.0.113.5", "10.0.0.2"]  # client-claimed, real client, proxy
    assert client_key("10.0.0.1", chain, proxies) == "203.0.113.5"
    assert client_key("192.0.2.7", chain, proxies) == "192.0.2.7"
    assert client_key("10.0.0.1", [], proxies) == "10.0.0.1"


def test_compressed_bodies_are_reused_and_bounded() -> None:
    import asyncio
    import gzip

    from services.api.compressed import CompressedBodies
    from services.api.middlewares import body_tag

    bodies = CompressedBodies(max_bytes=3000)
    import random

    texts = [random.Random(n).randbytes(1000) for n in range(5)]  # ~1 KB compressed each

    async def scenario() -> None:
        first = await bodies.get(body_tag(texts[0]), texts[0])
        assert gzip.decompress(first) == texts[0]
        assert await bodies.get(body_tag(texts[0]), texts[0]) is first  # compressed once
        for text in texts[1:]:
            await bodies.get(body_tag(text), text)
        large = random.Random(9).randbytes(200_000)  # compressed on a worker thread
        assert gzip.decompress(await bodies.get(body_tag(large), large)) == large

    asyncio.run(scenario())
    assert 0 < len(bodies) < 5 and bodies._size <= 3000


def test_trusted_proxies_may_be_given_as_ranges() -> None:
    """A load balancer pool is a range (10.0.0.0/24, fd00::/64): listed so, its
    forwarded addresses are believed; before, a range matched nothing, silently, and every
    client behind the pool shared the pool's one anonymous bucket."""
    proxies = frozenset({"10.0.0.0/24", "fd00::/64"})
    chain = ["198.51.100.9", "203.0.113.5", "10.0.0.2"]
    assert client_key("10.0.0.1", chain, proxies) == "203.0.113.5"
    assert client_key("fd00::7", ["203.0.113.5"], proxies) == "203.0.113.5"
    assert client_key("10.0.1.1", chain, proxies) == "10.0.1.1"  # outside the range


def test_a_trusted_proxy_that_is_not_an_address_or_range_is_refused_at_start(
    tmp_path: Path,
) -> None:
    node_file = tmp_path / "node.yaml"
    node_file.write_text("api: {trusted_proxies: '10.0.0.1, proxy.internal'}\n")
    with pytest.raises(ConfigError) as refused:
        load_node_config(node_file)
    assert "api.trusted_proxies" in str(refused.value) and "proxy.internal" in str(refused.value)
