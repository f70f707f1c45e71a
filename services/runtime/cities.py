"""City configuration: which sources a city has and how to read them.

One YAML file per city under ``deploy/cities/`` (``<code>.yaml``). The file is the
contract between a city's platform team and the node: ingest reads ``format``,
``entity`` and the format options; later stages read their own sections
(``privacy``, ``mapping``, ``sharing``), which this module keeps as raw dicts.
Anything else it does not know is refused, so that a typo never silently turns
a setting off.

Credentials are never written in these files, only a reference to them
(``env:VAR`` or ``file:/path``) resolved at run time by :func:`resolve_secret`.

A source whose transport does not say where an entity is or what it is (Linky
frames carry a meter serial, nothing else) may name an entity registry: a CSV
file ``entity,zone,sector`` beside the city files, read by :func:`load_registry`
and checked when the city loads, so a broken registry stops the node at start-up
rather than leaving meters without a zone later.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.runtime.city_catalogue import (
    CityMetadata,
    check_contact,
    check_frequency,
    check_insee,
    check_siren,
)
from services.runtime.errors import ConfigError
from services.runtime.yaml_config import ConfigReader, describe, parse_strict

FORMATS = (
    "csv",
    "ndjson",
    "json",
    "sdm-keyvalues",
    "ngsi-v2-normalized",
    "ngsi-ld",
    "linky-tic",
)
DOMAINS = ("energy", "mobility", "environment", "water", "waste", "parking", "weather", "lighting")
SDM_FORMATS = ("sdm-keyvalues", "ngsi-v2-normalized", "ngsi-ld")
LINKY_ENTITY_LABELS = ("ADSC", "ADCO")
DEFAULT_TIMEZONE = "Europe/Paris"
REGISTRY_HEADER = ("entity", "zone", "sector")

# Sections owned by later stages (anonymise, normalise, publish). They are kept as
# raw dicts and deliberately NOT validated here: each owning service validates its
# own section when it loads the city, so this module does not have to change
# whenever one of them grows a setting.
PASSTHROUGH_SECTIONS = ("privacy", "mapping", "sharing")

# City-level sections owned by one service, kept raw like PASSTHROUGH_SECTIONS:
# ``secrecy`` (energy-analytics: min_meters, dominance_share).
CITY_PASSTHROUGH_SECTIONS = ("secrecy",)
# ``contact``, ``insee``, ``siren``: catalogue facts (services/runtime/city_catalogue.py).
_CITY_KEYS = (
    "code",
    "name",
    "timezone",
    "sources",
    "contact",
    "insee",
    "siren",
    *CITY_PASSTHROUGH_SECTIONS,
)
_SOURCE_KEYS = (
    "id",
    "format",
    "dataset",
    "domain",
    "entity",
    "token",
    "csv",
    "json",
    "numeric",
    "registry",
    "rate_limit",
    "frequency",
    *PASSTHROUGH_SECTIONS,
)
_CSV_KEYS = ("separator", "decimal", "header", "encoding", "columns")
_JSON_KEYS = ("records",)
_RATE_KEYS = ("per_second", "burst")

_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CITY_CODE = re.compile(r"[a-z][a-z0-9-]*")
_ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
_FILE_REF = re.compile(r"file:(/.+)")


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV source is laid out; defaults follow RFC 4180."""

    separator: str = ","
    decimal: str = "."
    header: bool = True
    encoding: str = "utf-8"
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.header and not self.columns:
            raise ValueError("a CSV source without a header line must list its columns")


@dataclass(frozen=True)
class RateLimit:
    """How many HTTP batches a source may push: ``per_second`` on average, ``burst``
    at once after a quiet spell (a token bucket). One misbehaving gateway must not
    take the ingest capacity every other source of the node shares."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class SourceConfig:
    """One feed of one city: what it carries and how its transport is parsed.

    ``entity`` names what identifies an entity in a record: a field for
    csv/ndjson/json, ``id`` for Smart Data Models / NGSI, the ``ADSC`` or ``ADCO``
    label for Linky frames. ``json_records`` is a dotted path to the array of
    records inside a JSON document (``data.stations`` for a GBFS feed).
    ``registry`` is the absolute path of the source's entity registry (declared
    relative to the city file's folder), or None.
    """

    city: str
    id: str
    format: str
    dataset: str
    domain: str
    entity: str
    token: str
    csv: CsvOptions | None = None
    json_records: str | None = None
    numeric: tuple[str, ...] = ()
    registry: Path | None = None
    rate_limit: RateLimit | None = None
    privacy: dict[str, Any] | None = field(default=None, hash=False)
    mapping: dict[str, Any] | None = field(default=None, hash=False)
    sharing: dict[str, Any] | None = field(default=None, hash=False)
    # How often it is updated, for catalogues: an EU frequency code (None: derived).
    frequency: str | None = None


class RegistryEntry(NamedTuple):
    """Where an entity is (an IRIS-like zone code) and what it is (its sector)."""

    zone: str
    sector: str


def load_registry(path: Path) -> dict[str, RegistryEntry]:
    """Read an entity registry (``entity,zone,sector``), refusing anything ambiguous.

    A repeated entity would make its zone depend on which line wins, and an
    empty cell would put a meter nowhere: both are errors naming the line.
    """
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read the registry: {exc.strerror}", source=where) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("the registry is not valid UTF-8", source=where) from exc
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None or tuple(cell.strip() for cell in header) != REGISTRY_HEADER:
        raise ConfigError(
            f"the first line must be the header {','.join(REGISTRY_HEADER)}, "
            f"got {','.join(header or [])!r}",
            source=where,
            key="line 1",
        )
    entries: dict[str, RegistryEntry] = {}
    first_line: dict[str, int] = {}
    for record in rows:
        line = rows.line_num
        if not record:
            continue
        cells = [cell.strip() for cell in record]
        if len(cells) != len(REGISTRY_HEADER) or not all(cells):
            raise ConfigError(
                "expected three non-empty fields: entity, zone, sector",
                source=where,
                key=f"line {line}",
            )
        entity, zone, sector = cells
        if entity in entries:
            raise ConfigError(
                f"entity {entity!r} is listed twice (first on line {first_line[entity]})",
                source=where,
                key=f"line {line}",
            )
        entries[entity] = RegistryEntry(zone, sector)
        first_line[entity] = line
    if not entries:
        raise ConfigError("the registry lists no entity", source=where)
    return entries


class UnknownSourceError(ConfigError, KeyError):
    """A source id the city does not declare (a KeyError, for ``dict``-like use)."""

    __str__ = Exception.__str__  # KeyError would quote the whole message.


@dataclass(frozen=True)
class CityConfig:
    """A city and its sources, as declared in ``deploy/cities/<code>.yaml``."""

    code: str
    name: str
    timezone: str
    sources: tuple[SourceConfig, ...]
    path: str | None = None
    secrecy: dict[str, Any] | None = field(default=None, hash=False)
    metadata: CityMetadata = field(default_factory=CityMetadata)

    def source(self, source_id: str) -> SourceConfig:
        for source in self.sources:
            if source.id == source_id:
                return source
        known = ", ".join(s.id for s in self.sources)
        raise UnknownSourceError(
            f"city {self.code!r} has no source {source_id!r}; declared sources: {known}",
            source=self.path,
            key="sources",
        )


def load_city(path: Path) -> CityConfig:
    """Read and validate one city file; every error names the file and the key."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the city file: {exc.strerror}", source=where) from exc
    return _Reader(where).city(parse_strict(text, where), expected_code=path.stem)


def load_cities(directory: Path) -> dict[str, CityConfig]:
    """Load every ``*.yaml`` city file of a directory, keyed by city code."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError("the city configuration directory does not exist", source=str(directory))
    misnamed = sorted(directory.glob("*.yml"))
    if misnamed:
        raise ConfigError(
            "city files must end in .yaml; rename it (it would be ignored otherwise)",
            source=str(misnamed[0]),
        )
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise ConfigError(
            "no city file (*.yaml) found; add one file per city, e.g. paris.yaml",
            source=str(directory),
        )
    return {city.code: city for city in map(load_city, paths)}


def resolve_secret(ref: str) -> str:
    """Turn a credentials reference into the secret; the secret is never echoed."""
    env = _ENV_REF.fullmatch(ref)
    if env:
        value = os.environ.get(env.group(1))
        if not value:
            raise ConfigError(
                f"environment variable {env.group(1)} is not set (or empty); "
                "export it with the credential before starting the service",
                source=ref,
            )
        return value
    path = _FILE_REF.fullmatch(ref)
    if path:
        try:
            value = Path(path.group(1)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the credentials file: {exc.strerror}", source=ref
            ) from exc
        if not value:
            raise ConfigError("the credentials file is empty", source=ref)
        return value
    raise ConfigError(
        "not a credentials reference; expected env:VARIABLE or file:/absolute/path",
        source=_redact(ref),
    )


def _redact(ref: str) -> str:
    return ref.split(":", 1)[0] + ":…" if ":" in ref else "<literal>"


class _Reader(ConfigReader):
    """Validates one parsed city document, tracking the dotted key for errors."""

    def string(
        self, data: dict[str, Any], name: str, key: str, *, default: str | None = None
    ) -> str:
        if name not in data:
            if default is not None:
                return default
            raise self.fail(key, "required key is missing")
        value = data[name]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {describe(value)}")
        return value

    def choice(self, data: dict[str, Any], name: str, key: str, allowed: tuple[str, ...]) -> str:
        value = self.string(data, name, key)
        if value not in allowed:
            raise self.fail(key, f"{value!r} is not allowed; expected one of: {', '.join(allowed)}")
        return value

    def slug(self, data: dict[str, Any], name: str, key: str) -> str:
        value = self.string(data, name, key)
        if not _SLUG.fullmatch(value):
            raise self.fail(
                key,
                f"{value!r} must use lowercase letters, digits, '.', '_' or '-' "
                "(e.g. velo-compteurs)",
            )
        return value

    def city(self, document: Any, expected_code: str) -> CityConfig:
        data = self.mapping(document, None, _CITY_KEYS)
        code = self.string(data, "code", "code")
        if not _CITY_CODE.fullmatch(code):
            raise self.fail("code", f"{code!r} must be lowercase letters, digits or '-'")
        if code != expected_code:
            raise self.fail(
                "code",
                f"{code!r} must equal the file name stem {expected_code!r} ({expected_code}.yaml)",
            )
        name = self.string(data, "name", "name")
        timezone = self.string(data, "timezone", "timezone", default=DEFAULT_TIMEZONE)
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise self.fail(
                "timezone", f"{timezone!r} is not an IANA time zone (e.g. Europe/Paris)"
            ) from exc
        if "sources" not in data:
            raise self.fail("sources", "required key is missing")
        raw_sources = data["sources"]
        if not isinstance(raw_sources, list) or not raw_sources:
            raise self.fail("sources", f"expected a non-empty list, got {describe(raw_sources)}")
        sources: list[SourceConfig] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_sources):
            source = self.source(raw, f"sources[{i}]", code)
            if source.id in seen:
                raise self.fail(
                    f"sources[{i}].id",
                    f"duplicate source id {source.id!r} "
                    f"(already used by sources[{seen[source.id]}])",
                )
            seen[source.id] = i
            sources.append(source)
        secrecy = data.get("secrecy")
        if secrecy is not None and not isinstance(secrecy, dict):
            raise self.fail("secrecy", f"expected a mapping, got {describe(secrecy)}")
        return CityConfig(
            code,
            name,
            timezone,
            tuple(sources),
            path=self.where,
            secrecy=secrecy,
            metadata=self.metadata(data),
        )

    def metadata(self, data: dict[str, Any]) -> CityMetadata:
        """``contact``, ``insee`` and ``siren``, each checked when given."""
        checks = {"contact": check_contact, "insee": check_insee, "siren": check_siren}
        found: dict[str, str] = {}
        for name, check in checks.items():
            if name in data:
                problem = check(data[name])
                if problem:
                    raise self.fail(name, problem)
                found[name] = data[name]
        return CityMetadata(**found)

    def frequency(self, data: dict[str, Any], key: str) -> str | None:
        if "frequency" not in data:
            return None
        problem = check_frequency(data["frequency"])
        if problem:
            raise self.fail(key, problem)
        return str(data["frequency"])

    def source(self, raw: Any, key: str, city: str) -> SourceConfig:
        data = self.mapping(raw, key, _SOURCE_KEYS)
        source_id = self.slug(data, "id", f"{key}.id")
        fmt = self.choice(data, "format", f"{key}.format", FORMATS)
        entity = self.entity(data, f"{key}.entity", fmt)
        csv = self.csv(data.get("csv"), f"{key}.csv", fmt) if "csv" in data else None
        if fmt == "csv" and csv is None:
            csv = CsvOptions()
        json_records = self.json(data["json"], f"{key}.json", fmt) if "json" in data else None
        numeric: tuple[str, ...] = ()
        if "numeric" in data:
            if fmt not in ("csv", "ndjson", "json"):
                raise self.fail(
                    f"{key}.numeric", f"only csv, ndjson and json sources take 'numeric', not {fmt}"
                )
            numeric = self.string_list(data["numeric"], f"{key}.numeric")
        registry = self.registry(data, f"{key}.registry") if "registry" in data else None
        rate_limit = None
        if "rate_limit" in data:
            rate_limit = self.rate_limit(data["rate_limit"], f"{key}.rate_limit")
        sections: dict[str, dict[str, Any] | None] = {}
        for section in PASSTHROUGH_SECTIONS:
            value = data.get(section)
            if value is not None and not isinstance(value, dict):
                raise self.fail(f"{key}.{section}", f"expected a mapping, got {describe(value)}")
            sections[section] = value
        return SourceConfig(
            city=city,
            id=source_id,
            format=fmt,
            dataset=self.slug(data, "dataset", f"{key}.dataset"),
            domain=self.choice(data, "domain", f"{key}.domain", DOMAINS),
            entity=entity,
            token=self.token(data, f"{key}.token"),
            csv=csv,
            json_records=json_records,
            numeric=numeric,
            registry=registry,
            rate_limit=rate_limit,
            frequency=self.frequency(data, f"{key}.frequency"),
            **sections,
        )

    def rate_limit(self, raw: Any, key: str) -> RateLimit:
        data = self.mapping(raw, key, _RATE_KEYS)
        per_second = data.get("per_second")
        if (
            isinstance(per_second, bool)
            or not isinstance(per_second, int | float)
            or not (0 < per_second <= 100_000)
        ):
            raise self.fail(
                f"{key}.per_second",
                f"expected batches per second, a number above 0 such as 2 or 0.5, "
                f"got {describe(per_second)}",
            )
        burst = data.get("burst", max(1, math.ceil(per_second)))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise self.fail(
                f"{key}.burst", f"expected a whole number of batches >= 1, got {describe(burst)}"
            )
        return RateLimit(float(per_second), burst)

    def entity(self, data: dict[str, Any], key: str, fmt: str) -> str:
        if fmt in SDM_FORMATS:
            entity = self.string(data, "entity", key, default="id")
            if entity != "id":
                raise self.fail(key, f"{fmt} entities are identified by 'id', got {entity!r}")
            return entity
        if fmt == "linky-tic":
            entity = self.string(data, "entity", key, default=LINKY_ENTITY_LABELS[0])
            if entity not in LINKY_ENTITY_LABELS:
                raise self.fail(
                    key,
                    f"a Linky meter is identified by its ADSC (standard mode) or ADCO "
                    f"(historique mode) label, got {entity!r}",
                )
            return entity
        return self.string(data, "entity", key)

    def token(self, data: dict[str, Any], key: str) -> str:
        value = data.get("token")
        if value is None:
            raise self.fail(
                key, "required key is missing (a reference: env:VARIABLE or file:/path)"
            )
        if not isinstance(value, str) or not (
            _ENV_REF.fullmatch(value) or _FILE_REF.fullmatch(value)
        ):
            # Never echo the value: it may be a secret pasted by mistake.
            raise self.fail(
                key,
                "must be a credentials reference, env:VARIABLE or file:/absolute/path; "
                "never write the secret itself in a city file",
            )
        return value

    def registry(self, data: dict[str, Any], key: str) -> Path:
        value = self.string(data, "registry", key)
        relative = Path(value)
        if relative.is_absolute():
            raise self.fail(
                key,
                f"{value!r} must be relative to the city file's folder "
                "(e.g. registries/lyon-linky.csv), so the configuration can move as a whole",
            )
        path = (Path(self.where).parent / relative).resolve()
        if not path.is_file():
            raise self.fail(key, f"the registry file {str(path)!r} does not exist")
        try:
            load_registry(path)
        except ConfigError as exc:
            raise self.fail(key, f"invalid registry: {exc}") from exc
        return path

    def csv(self, raw: Any, key: str, fmt: str) -> CsvOptions:
        if fmt != "csv":
            raise self.fail(key, f"only csv sources take a 'csv' section, not {fmt}")
        data = self.mapping(raw, key, _CSV_KEYS)
        defaults = CsvOptions()
        separator = self.string(data, "separator", f"{key}.separator", default=defaults.separator)
        if len(separator) != 1 or separator in '"\r\n':
            raise self.fail(
                f"{key}.separator", f"expected one character such as ';' or ',', got {separator!r}"
            )
        decimal = self.string(data, "decimal", f"{key}.decimal", default=defaults.decimal)
        if decimal not in (".", ","):
            raise self.fail(f"{key}.decimal", f"expected '.' or ',', got {decimal!r}")
        if decimal == separator:
            raise self.fail(f"{key}.decimal", "the decimal mark must differ from the separator")
        header = data.get("header", defaults.header)
        if not isinstance(header, bool):
            raise self.fail(f"{key}.header", f"expected true or false, got {describe(header)}")
        encoding = self.string(data, "encoding", f"{key}.encoding", default=defaults.encoding)
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise self.fail(
                f"{key}.encoding", f"unknown text encoding {encoding!r} (e.g. utf-8, cp1252)"
            ) from exc
        columns = None
        if "columns" in data:
            if header:
                raise self.fail(
                    f"{key}.columns",
                    "'columns' names the fields of a file without a header; set header: false",
                )
            columns = self.string_list(data["columns"], f"{key}.columns")
        elif not header:
            raise self.fail(f"{key}.columns", "required when header is false: list the field names")
        return CsvOptions(separator, decimal, header, encoding, columns)

    def json(self, raw: Any, key: str, fmt: str) -> str:
        if fmt != "json":
            raise self.fail(key, f"only json sources take a 'json' section, not {fmt}")
        data = self.mapping(raw, key, _JSON_KEYS)
        records = self.string(data, "records", f"{key}.records")
        if any(not part for part in records.split(".")):
            raise self.fail(
                f"{key}.records", f"expected a dotted path such as data.stations, got {records!r}"
            )
        return records
