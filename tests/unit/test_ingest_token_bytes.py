"""A token of any bytes gets an answer, never a crash: aiohttp hands header bytes that
are not UTF-8 over as lone surrogates (surrogateescape), and the token check ran
before anything else, so a crash there was a 500 to anyone without a token."""

from __future__ import annotations

import pytest

from services.ingest.auth import SourceTokens
from services.runtime.cities import CityConfig
from testkit.ingest_sources import parser_source


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> SourceTokens:
    monkeypatch.setenv("CITEPLUS_TOKEN_TEST", "right-token-" + "x" * 32)
    city = CityConfig(
        code="testville",
        name="Testville",
        timezone="Europe/Paris",
        sources=(parser_source("ndjson"),),
    )
    return SourceTokens({"testville": city})


@pytest.mark.parametrize("raw", [b"Bearer \xff", b"Bearer \xc3\x28abc", b"Bearer \xed\xa0\x80"])
def test_a_token_that_is_not_utf8_is_401(tokens: SourceTokens, raw: bytes) -> None:
    header = raw.decode("utf-8", "surrogateescape")  # what aiohttp gives the handler
    assert tokens.check("testville", "test", header).status == 401
    assert tokens.is_known(header) is False


def test_a_lone_surrogate_token_is_401(tokens: SourceTokens) -> None:
    assert tokens.check("testville", "test", "Bearer \ud800").status == 401


def test_the_right_token_still_passes(tokens: SourceTokens) -> None:
    assert tokens.check("testville", "test", "Bearer right-token-" + "x" * 32).status == 200
