"""Building AnonymisedRecord dicts and normalise mappings for tests (no broker)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from services.normalise.mapping import compile_city
from services.normalise.transform import Normaliser
from services.normalise.vocabulary import load_vocabulary
from services.runtime.cities import CityConfig, SourceConfig, load_city

ARRAYS = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}


def column(name: str, values: list[Any], kind: str | None = None) -> dict[str, Any]:
    """A Column record; the kind is inferred from the first present value."""
    present = [v for v in values if v is not None]
    if kind is None:
        first = present[0] if present else ""
        kind = (
            "boolean"
            if isinstance(first, bool)
            else "long"
            if isinstance(first, int) and all(isinstance(v, int) for v in present)
            else "double"
            if isinstance(first, int | float)
            else "string"
        )
    placeholder = {"string": "", "double": 0.0, "long": 0, "boolean": False}[kind]
    typed = [placeholder if v is None else (float(v) if kind == "double" else v) for v in values]
    out = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": [], "booleans": []}
    out[ARRAYS[kind]] = typed
    out["missing"] = [i for i, v in enumerate(values) if v is None]
    return out


def record(
    city: str,
    source: str,
    columns: dict[str, list[Any]],
    *,
    entity: str = "pseudo-1",
    entity_type: str | None = None,
    attributes: dict[str, str] | None = None,
    event_times: list[int] | None = None,
    lineage: str = "lineage-1",
    received_at: int = 1_767_225_600_000_000,  # 2026-01-01: after every test reading
) -> dict[str, Any]:
    """An AnonymisedRecord dict (avro/AnonymisedRecord.avsc)."""
    rows = len(next(iter(columns.values()))) if columns else len(event_times or [])
    return {
        "city": city,
        "source": source,
        "dataset": "test-dataset",
        "format": "csv",
        "entity_pseudonym": entity,
        "entity_type": entity_type,
        "key_epoch": "2025-01",
        "policy_version": "test",
        "lineage_id": lineage,
        "received_at": received_at,
        "row_count": rows,
        "event_times": list(event_times or []),
        "columns": [column(name, values) for name, values in columns.items()],
        "attributes": dict(attributes or {}),
    }


def from_raw(raw: dict[str, Any], pseudonym: str | None = None) -> dict[str, Any]:
    """A RawRecord (services.ingest.records.raw_record) as anonymise would pass it on
    with every field kept: the entity id becomes the pseudonym."""
    out = {k: v for k, v in raw.items() if k != "entity_id"}
    out["entity_pseudonym"] = pseudonym or raw["entity_id"]
    out["key_epoch"] = "2025-01"
    out["policy_version"] = "test"
    return out


def city_file(tmp: Path, code: str, sources: list[dict[str, Any]]) -> CityConfig:
    """Write and load a city file with these sources (tokens filled in)."""
    for source in sources:
        source.setdefault("token", "env:CITEPLUS_TEST_TOKEN")
        source.setdefault("dataset", "test-dataset")
    path = tmp / f"{code}.yaml"
    path.write_text(
        yaml.safe_dump(
            {"code": code, "name": code.title(), "timezone": "Europe/Paris", "sources": sources},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return load_city(path)


def normaliser(*cities: CityConfig) -> Normaliser:
    vocabulary = load_vocabulary()
    mappings = {
        (city.code, source_id): mapping
        for city in cities
        for source_id, mapping in compile_city(city, vocabulary).items()
    }
    return Normaliser(vocabulary, mappings)


class Run:
    """Feeds records through a Normaliser with an in-memory state, like the stage."""

    def __init__(self, norm: Normaliser):
        self.norm = norm
        self.state: dict[str, Any] = {}
        self.dropped: dict[str, int] = {}

    def __call__(self, rec: dict[str, Any]) -> list[dict[str, Any]]:
        outcome = self.norm.normalise(rec, self.state.get)
        self.state.update(outcome.states)
        for reason, count in outcome.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        return outcome.observations


def points(observations: list[dict[str, Any]]) -> dict[tuple, tuple[float, int, int]]:
    """Every reading: (entity, metric, time) -> (value, step_seconds, quality)."""
    out = {}
    for o in observations:
        for k, value in enumerate(o["values"]):
            t = o["times"][k] if o["times"] else o["start"] + k * o["step_seconds"] * 1_000_000
            quality = o["quality"][k] if o["quality"] else 0
            out[(o["entity_pseudonym"], o["metric"], t)] = (value, o["step_seconds"], quality)
    return out


def source_config(code: str, fmt: str, source_id: str = "s", **extra: Any) -> SourceConfig:
    return SourceConfig(
        city=code,
        id=source_id,
        format=fmt,
        dataset="test-dataset",
        domain=extra.pop("domain", "energy"),
        entity=extra.pop("entity", "id"),
        token="env:CITEPLUS_TEST_TOKEN",
        **extra,
    )


# -- two sources used by the transform and stage tests ----------------------------------
T0 = 1_736_722_800_000_000  # 2025-01-13 00:00 Paris (23:00 UTC the day before)
MIN10 = 600_000_000

LINKY = {
    "id": "linky",
    "format": "linky-tic",
    "domain": "energy",
    "entity": "ADSC",
    "mapping": {
        "entity_type": "ElectricityMeter",
        "time": {"field": "DATE@time", "format": "linky"},
        "zone": {"attribute": "zone"},
        "sector": {"attribute": "sector"},
        "measures": {
            "EAST": {
                "metric": "active_energy_import",
                "unit": "Wh",
                "kind": "cumulative",
                "rollover": 1_000_000_000,
            }
        },
    },
}
CURVES = {
    "id": "curves",
    "format": "csv",
    "domain": "energy",
    "entity": "prm",
    "mapping": {
        "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
        "step": {"field": "pas", "format": "iso8601"},
        "zone": {"field": "iris"},
        "sector": {"field": "secteur", "values": {"residentiel": "residential"}},
        "measures": {
            "kwh": {"metric": "active_energy_import", "unit_field": "unite", "unit": "kWh"}
        },
    },
}


def linky(registers: list[int], first: int = 0, entity: str = "m1", **kwargs) -> dict:
    paris = ZoneInfo("Europe/Paris")
    stamps = []
    for k in range(first, first + len(registers)):
        local = datetime.fromtimestamp((T0 + k * MIN10) / 1e6, paris)
        season = "E" if local.utcoffset() == timedelta(hours=2) else "H"
        stamps.append(season + local.strftime("%y%m%d%H%M%S"))
    return record(
        "testville",
        "linky",
        {"DATE@time": stamps, "EAST": [f"{r % 10**9:09d}" for r in registers]},
        entity=entity,
        attributes={"zone": "693810202", "sector": "residential"},
        **kwargs,
    )


def curves(values, start="2025-01-13 00:00:00", unit="kWh", entity="p1", count=None, **kw):
    first = datetime.fromisoformat(start)
    n = count or len(values)
    stamps = [(first + k * timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S") for k in range(n)]
    units = unit if isinstance(unit, list) else [unit] * n
    return record(
        "testville",
        "curves",
        {
            "iris": ["751010203"] * n,
            "secteur": ["residentiel"] * n,
            "horodate": stamps,
            "pas": ["PT10M"] * n,
            "kwh": values,
            "unite": units,
        },
        entity=entity,
        **kw,
    )
