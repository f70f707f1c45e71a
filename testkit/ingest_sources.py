"""A source of the test city for parser tests: only what a format needs, the rest fixed."""

from __future__ import annotations

from services.runtime.cities import SourceConfig


def parser_source(fmt: str, entity: str = "id", **options: object) -> SourceConfig:
    return SourceConfig(
        city="testville",
        id="test",
        format=fmt,
        dataset="test",
        domain="energy",
        entity=entity,
        token="env:CITEPLUS_TOKEN_TEST",
        **options,  # type: ignore[arg-type]
    )
