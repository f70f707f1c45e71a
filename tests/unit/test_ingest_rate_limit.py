"""Per-source rate limits: the city file's declaration and the token bucket's
arithmetic, on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.rate_limit import SourceLimits, TokenBucket
from services.runtime.cities import RateLimit, load_city
from services.runtime.errors import ConfigError

CITY = """\
code: testville
name: Testville
sources:
  - {{id: meters, format: ndjson, dataset: d, domain: energy, entity: meter,
     token: "env:T"{limit}}}
  - {{id: air, format: ndjson, dataset: d, domain: environment, entity: id, token: "env:T"}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def city(tmp_path: Path, limit: str):
    path = tmp_path / "testville.yaml"
    path.write_text(CITY.format(limit=limit), encoding="utf-8")
    return load_city(path)


def test_a_burst_then_the_declared_pace() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(per_second=2.0, burst=3), clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # empty: one more in half a second
    clock.now += 0.5
    assert bucket.take() == 0.0 and bucket.take() == pytest.approx(0.5)
    clock.now += 60  # a quiet minute refills the burst, not more
    assert [bucket.take() for _ in range(4)][-1] == pytest.approx(0.5)


def test_only_sources_that_declare_a_limit_are_limited(tmp_path: Path) -> None:
    clock = Clock()
    limits = SourceLimits([city(tmp_path, ", rate_limit: {per_second: 0.5}")], clock)
    assert limits.wait_for("testville", "meters") == 0.0
    assert limits.wait_for("testville", "meters") == pytest.approx(2.0)  # burst defaults to 1
    assert all(limits.wait_for("testville", "air") == 0.0 for _ in range(100))


@pytest.mark.parametrize(
    ("limit", "key", "hint"),
    [
        (", rate_limit: {per_second: 0}", "sources[0].rate_limit.per_second", "above 0"),
        (", rate_limit: {per_second: fast}", "sources[0].rate_limit.per_second", "above 0"),
        (", rate_limit: {per_second: 1, burst: 0}", "sources[0].rate_limit.burst", ">= 1"),
        (", rate_limit: {per_minute: 1}", "sources[0].rate_limit.per_minute", "per_second"),
    ],
)
def test_a_bad_rate_limit_is_refused_with_its_key(tmp_path: Path, limit, key, hint) -> None:
    with pytest.raises(ConfigError) as caught:
        city(tmp_path, limit)
    assert caught.value.key == key and hint in str(caught.value)


def test_a_declared_limit_is_read(tmp_path: Path) -> None:
    meters = city(tmp_path, ", rate_limit: {per_second: 2.5, burst: 10}").source("meters")
    assert meters.rate_limit == RateLimit(2.5, 10)
