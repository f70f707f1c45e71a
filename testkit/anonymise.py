"""Builders shared by the anonymise unit tests: city files with a privacy
section, policies and RawRecords (column-wise, as ingest writes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.anonymise.policy import Policy, parse_policy
from services.ingest.records import to_column
from services.privacy.pseudonym import Pseudonymiser
from services.runtime.cities import load_city

T0 = 1_736_755_200_000_000  # 2025-01-13T08:00:00Z
TEN_MINUTES = 600_000_000


def city_file(
    tmp_path: Path,
    privacy: Any,
    *,
    entity: str = "meter",
    code: str = "testville",
    domain: str = "environment",
    mapping: dict[str, Any] | None = None,
) -> Path:
    """A city file with one ndjson source whose privacy section is ``privacy``
    (and, if given, its normalise ``mapping``).

    The domain defaults to one where ``privacy.personal`` is optional, so that a
    test names it only when it is what the test is about."""
    source: dict[str, Any] = {
        "id": "meters",
        "format": "ndjson",
        "dataset": "load-curves",
        "domain": domain,
        "entity": entity,
        "token": "env:CITEPLUS_TOKEN_TEST",
    }
    if privacy is not None:
        source["privacy"] = privacy
    if mapping is not None:
        source["mapping"] = mapping
    document = {"code": code, "name": code.title(), "sources": [source]}
    path = tmp_path / f"{code}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
    return path


def policy_of(tmp_path: Path, privacy: Any, **kwargs: Any) -> Policy:
    path = city_file(tmp_path, privacy, **kwargs)
    city = load_city(path)
    return parse_policy(city.sources[0], city, 0)


def raw(
    columns: dict[str, list[Any]],
    *,
    entity: str = "04512345678901",
    city: str = "testville",
    source: str = "meters",
    attributes: dict[str, str] | None = None,
    event_times: list[int] | None = None,
    received_at: int = T0,
) -> dict[str, Any]:
    rows = len(next(iter(columns.values()))) if columns else 0
    return {
        "city": city,
        "source": source,
        "dataset": "load-curves",
        "format": "ndjson",
        "entity_id": entity,
        "entity_type": None,
        "lineage_id": "lineage-1",
        "received_at": received_at,
        "row_count": rows,
        "event_times": event_times or [],
        "columns": [to_column(name, values) for name, values in columns.items()],
        "attributes": dict(attributes or {}),
    }


def pseudonymiser(epoch: str = "2025-01", key: bytes = b"k" * 32) -> Pseudonymiser:
    return Pseudonymiser(key, epoch)


def column_named(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in record["columns"] if c["name"] == name)


def values_of(record: dict[str, Any], name: str) -> list[Any]:
    from services.anonymise.columns import cells

    return cells(column_named(record, name))
