"""Query parameters of the NGSI-LD routes, parsed and checked before any call.

Each route accepts a known set; a parameter outside it, given twice, empty, too long
or malformed is a 400 ProblemDetails naming it and saying what is accepted. Nothing is
ignored silently: a typo such as ``lmit=5`` is refused rather than answered with
twenty entities.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import re2
from multidict import MultiMapping

from services.api.ids import TYPE_NAME, EntityId, is_uri, parse_id
from services.api.ngsi.geo import GeoQuery, parse_geo
from services.api.ngsi.names import Names
from services.api.ngsi.problems import NgsiError, bad_data, shown
from services.api.ngsi.q import Dnf, parse_q
from services.api.ngsi.represent import DESCRIPTIVE

MAX_PARAM_LENGTH = 4096
MAX_LIST = 50  # cities, types and metrics per federation query
MAX_PATTERN = 256
MAX_LIMIT = 1000
MAX_WINDOW = 10_000  # offset + limit: each node is read this far, then the merge is cut
DEFAULT_LIMIT = 20
FORMATS = {"normalized": "normalized", "keyValues": "keyValues", "simplified": "keyValues"}
FORMATS["concise"] = "concise"
ENTITY_PARAMS = frozenset(
    [
        "type",
        "id",
        "idPattern",
        "attrs",
        "q",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "limit",
        "offset",
        "count",
        "options",
        "format",
    ]
)
ONE_ENTITY_PARAMS = frozenset({"type", "attrs", "options", "format"})
UNSUPPORTED = frozenset(
    [
        "csf",
        "scopeQ",
        "lang",
        "pick",
        "omit",
        "join",
        "joinLevel",
        "containedBy",
        "datasetId",
        "expandValues",
        "entityMap",
        "local",
        "via",
        "orderBy",
        "collect",
        "sysAttrs",
    ]
)


@dataclass(frozen=True)
class Selection:
    """Which entities: what a federation EntityQuery carries, before paging."""

    types: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    ids: tuple[EntityId, ...] = ()
    key_pattern: str = ""
    attrs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    q: Dnf | None = None
    geo: GeoQuery | None = None
    nothing: bool = False  # the request can match no entity (unknown ids, attributes)


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    count: bool = False


@dataclass(frozen=True)
class EntityParams:
    selection: Selection
    page: Page
    format: str = "normalized"
    options: frozenset[str] = frozenset()


def single(query: MultiMapping[str], allowed: frozenset[str]) -> dict[str, str]:
    """Each parameter once, known to the route, not empty, of a sane length."""
    values: dict[str, str] = {}
    for name in query:
        if name in values or len(query.getall(name)) > 1:
            raise bad_data(f"parameter {shown(name)} is given twice; give it once")
        if name not in allowed:
            raise _unknown(name, allowed)
        value = query[name]
        if len(value) > MAX_PARAM_LENGTH:
            raise bad_data(f"parameter {name} is longer than {MAX_PARAM_LENGTH} characters")
        if value == "":
            raise bad_data(f"parameter {name} is empty; leave it out or give a value")
        values[name] = value
    return values


def _unknown(name: str, allowed: frozenset[str]) -> NgsiError:
    accepted = ", ".join(sorted(allowed)) or "none"
    if name in UNSUPPORTED:
        return NgsiError(
            "OperationNotSupported",
            f"parameter {name} of NGSI-LD is not supported here (accepted: {accepted})",
        )
    return bad_data(f"unknown parameter {shown(name)} (accepted here: {accepted})")


def entity_params(query: MultiMapping[str], names: Names) -> EntityParams:
    values = single(query, ENTITY_PARAMS)
    options, fmt = representation(values)
    return EntityParams(selection(values, names), page(values), fmt, options)


def representation(values: Mapping[str, str], temporal: bool = False) -> tuple[frozenset, str]:
    """``options`` and ``format``: one representation at most (normalized by default)."""
    # "count": how NGSI-LD 1.3 asked for the count (count=true since 1.4); clients of that
    # time (ngsildclient's temporal queries) still send it.
    allowed = {"keyValues", "simplified", "concise", "normalized", "count"}
    if temporal:
        allowed |= {"temporalValues", "aggregatedValues"}
    options = frozenset(_list(values, "options"))
    for option in options:
        if option not in allowed:
            raise bad_data(
                f"option {shown(option)} is unknown (accepted: {', '.join(sorted(allowed))})"
            )
    chosen = {FORMATS[o] for o in options if o in FORMATS}
    if "format" in values:
        if values["format"] not in FORMATS:
            raise bad_data("format is normalized, keyValues (or simplified) or concise")
        chosen.add(FORMATS[values["format"]])
    if len(chosen) > 1:
        raise bad_data(f"ask for one representation, not {' and '.join(sorted(chosen))}")
    return options, next(iter(chosen), "normalized")


def selection(values: Mapping[str, str], names: Names) -> Selection:
    types = _types(values)
    ids, unmatched = _ids(values)
    attrs = tuple(_list(values, "attrs"))
    for attr in attrs:
        _check_name(attr, "attrs")
    metrics = tuple(sorted({m for a in attrs for m in names.metrics(a, types)}))
    q = parse_q(values["q"], lambda a: names.metrics(a, types)) if "q" in values else None
    geo = parse_geo(
        values.get("georel"),
        values.get("geometry"),
        values.get("coordinates"),
        values.get("geoproperty"),
    )
    pattern, narrowed = id_pattern(values.get("idPattern"))
    cities: tuple[str, ...] = ()
    if narrowed:
        pattern_type, city = narrowed
        unmatched = unmatched or bool(types and pattern_type not in types)
        types, cities = (pattern_type,), (city,)
    nothing = unmatched or unmatched_attrs(attrs, metrics) or q == ()
    return Selection(types, cities, ids, pattern, attrs, metrics, q, geo, nothing)


def unmatched_attrs(attrs: tuple[str, ...], metrics: tuple[str, ...]) -> bool:
    """``attrs`` names only attributes no entity carries (no metric, no descriptive one)."""
    return bool(attrs) and not metrics and not set(attrs) & set(DESCRIPTIVE)


def _types(values: Mapping[str, str]) -> tuple[str, ...]:
    raw = values.get("type")
    if raw is None:
        return ()
    if any(c in raw for c in ";|()"):
        raise bad_data("type takes a comma-separated list of types; ; | ( ) are not supported")
    types = tuple(dict.fromkeys(_list(values, "type")))
    for name in types:
        if not TYPE_NAME.match(name):
            raise bad_data(f"type {shown(name)} is not an entity type name (letters, digits, _)")
    return types


def _ids(values: Mapping[str, str]) -> tuple[tuple[EntityId, ...], bool]:
    """Cité+ ids parsed; another URI names no entity here (``unmatched``), a non-URI is a 400."""
    raw = _list(values, "id")
    parsed: list[EntityId] = []
    for value in raw:
        if not is_uri(value):
            raise bad_data(f"id {shown(value)} is not a URI (urn:ngsi-ld:<Type>:<city>:<key>)")
        entity_id = parse_id(value)
        if entity_id is not None:
            parsed.append(entity_id)
    return tuple(dict.fromkeys(parsed)), bool(raw) and not parsed


def compile_pattern(raw: str) -> re2._Regexp:
    """An idPattern compiled by RE2, as the nodes (ClickHouse) run it: linear time,
    so a caller's pattern cannot hold a thread for ever (Python's re backtracks
    exponentially on patterns like ``.*(.|.)*!``)."""
    return re2.compile(raw, options=_RE2_OPTIONS)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 8 << 20


def id_pattern(raw: str | None) -> tuple[str, tuple[str, str] | None]:
    """idPattern matches whole ids; nodes match the entity key. A pattern that begins
    with ``.*``, or with the literal ``urn:ngsi-ld:<Type>:<city>:`` (which then also
    selects that type and city), is carried over to the key part of the id."""
    if raw is None:
        return "", None
    if len(raw) > MAX_PATTERN:
        raise bad_data(f"idPattern is longer than {MAX_PATTERN} characters")
    if re.search(r"\(\?[=!<]|\\[1-9]", raw):
        raise bad_data("idPattern: look-arounds and back-references are not supported (RE2)")
    try:
        re.compile(raw)
        compile_pattern(raw)
    except (re.error, re2.error) as error:
        raise bad_data(
            f"idPattern is not a regular expression the nodes run (RE2 syntax): {error}"
        ) from None
    body = raw.removeprefix("^")
    if body.startswith(".*"):
        return body, None
    literal = re.match(r"urn:ngsi-ld:([A-Za-z][A-Za-z0-9_]*):([a-z][a-z0-9-]*):", body)
    if literal and literal.end() < len(body):
        return body[literal.end() :], (literal.group(1), literal.group(2))
    raise bad_data(
        "idPattern must start with .* (matched against the entity key part of the id, "
        "e.g. .*FR04) or with urn:ngsi-ld:<Type>:<city>: followed by a pattern on the key"
    )


def _check_name(name: str, param: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name):
        raise bad_data(f"{param}: {shown(name)} is not an attribute name")


def _list(values: Mapping[str, str], name: str) -> list[str]:
    raw = values.get(name)
    if raw is None:
        return []
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise bad_data(f"{name} has an empty item; separate values with single commas")
    if len(items) > MAX_LIST:
        raise bad_data(f"{name} lists more than {MAX_LIST} values")
    return items


def page(values: Mapping[str, str], max_limit: int = MAX_LIMIT) -> Page:
    count = _boolean(values, "count") or "count" in _list(values, "options")
    limit = _integer(values, "limit", DEFAULT_LIMIT, 0, max_limit)
    offset = _integer(values, "offset", 0, 0, MAX_WINDOW)
    if limit == 0 and not count:
        raise bad_data("limit=0 only goes with count=true (to ask for the count alone)")
    if offset + limit > MAX_WINDOW:
        raise NgsiError(
            "TooManyResults",
            f"offset + limit is at most {MAX_WINDOW}; narrow the query (type, q, georel) "
            "to page deeper",
        )
    return Page(limit, offset, count)


def _boolean(values: Mapping[str, str], name: str) -> bool:
    raw = values.get(name, "false")
    if raw not in ("true", "false"):
        raise bad_data(f"{name} is true or false, got {shown(raw)}")
    return raw == "true"


def _integer(values: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or not low <= int(raw) <= high:
        raise bad_data(f"{name} is a whole number from {low} to {high}, got {shown(raw)}")
    return int(raw)
