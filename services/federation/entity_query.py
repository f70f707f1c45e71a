"""QueryEntities and QueryTemporal requests, checked field by field before any SQL.

Every error is INVALID_ARGUMENT naming the field (as QueryAggregates does), or
PERMISSION_DENIED for a dataset the caller may not read at entity level. The
bounds keep one call one bounded warehouse query:

- ``limit`` 1 to 1000 (default 20), ``offset`` at most 10,000 (page further with
  filters: cities, types, a pattern);
- lists: 50 cities, 50 types, 50 metrics, 1000 entity references, 200 datasets;
  ``any_of`` at most 10 groups of 10 conditions, values finite;
- ``entity_pattern``: RE2 syntax (ClickHouse ``match``, linear time, no
  back-references or look-arounds), at most 256 characters, matched in full;
- ``geo``: coordinates in range; NEAR within 1 m to 100 km of its point; WITHIN a
  ring of 3 to 1000 points;
- temporal: ``start`` and ``end`` between 2000 and 2100; raw readings over at most
  31 days, aggregated ones over at most 366; an absent bound is the other one
  minus (plus) that span, both absent: the span up to the newest reading the caller may read;
  ``last_n`` at most 10,000; ``period`` at least 1 s and at most 10,000 buckets;
  ``methods`` empty means all four; at most 100 entities per call (``limit``), each
  series at most 10,000 raw readings and the call 1,000,000.

Metric names are checked for their form only: a metric the caller may not see and a
metric that does not exist give the same (empty) answer, so a condition on a hidden
metric tells nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import grpc

from services.federation.calls import Caller, FederationError, invalid
from services.federation.catalog import AGGREGATES_SOURCE, DatasetInfo, Datasets
from services.federation.protos import pb
from services.federation.queries import MAX_YEAR_US, MIN_YEAR_US, timestamp_us
from services.policy.federation import CODE

ENERGY_TYPE = "CitePlusEnergyAggregate"
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_OFFSET = 10_000
MAX_PATTERN = 256
MAX_GROUPS = 10
MAX_CONDITIONS = 10
MAX_REFS = 1000
MAX_ENTITY_KEY = 256
MAX_NEAR_M = 100_000.0
MAX_RING = 1000
MAX_LAST_N = 10_000
MAX_TEMPORAL_LIMIT = 100
MAX_BUCKETS = 10_000
DAY_US = 86_400_000_000
RAW_SPAN_US = 31 * DAY_US
AGGREGATED_SPAN_US = 366 * DAY_US
LISTS = {"cities": 50, "entity_types": 50, "metrics": 50, "datasets": 200}

_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_METRIC = re.compile(r"^[a-z0-9][a-z0-9_.]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RE2 refuses these; said here in words rather than as ClickHouse's compile error.
_NOT_RE2 = re.compile(r"\\[1-9]|\(\?[=!<]|\(\?P?<?=|\\[gk]<")
OPERATORS = {
    pb.COMPARISON_EQ: "=",
    pb.COMPARISON_NE: "!=",
    pb.COMPARISON_LT: "<",
    pb.COMPARISON_LE: "<=",
    pb.COMPARISON_GT: ">",
    pb.COMPARISON_GE: ">=",
}
METHODS = {
    pb.AGGREGATE_METHOD_SUM: "sum",
    pb.AGGREGATE_METHOD_AVG: "avg",
    pb.AGGREGATE_METHOD_MIN: "min",
    pb.AGGREGATE_METHOD_MAX: "max",
}


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str  # a SQL comparison operator of OPERATORS
    value: float


@dataclass(frozen=True)
class Geo:
    relation: str  # "near" | "within"
    lat: float = 0.0
    lon: float = 0.0
    max_m: float = 0.0
    min_m: float = 0.0
    ring: tuple[tuple[float, float], ...] = ()  # (lon, lat), as pointInPolygon takes them


@dataclass(frozen=True)
class Scope:
    """What the answer may read: observation datasets (city, source) and the cities
    whose energy aggregates it includes; ``ids`` name them for the audit line."""

    sources: tuple[tuple[str, str], ...]
    aggregate_cities: tuple[str, ...]
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """A validated EntityQuery: which entities, in which order and page."""

    scope: Scope
    entity_types: tuple[str, ...]
    refs: tuple[tuple[str, str], ...]
    pattern: str
    metrics: tuple[str, ...]
    any_of: tuple[tuple[Condition, ...], ...]
    geo: Geo | None
    limit: int
    offset: int
    count: bool

    @property
    def condition_metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.metric for group in self.any_of for c in group))

    @property
    def wants_observations(self) -> bool:
        types = self.entity_types
        return bool(self.scope.sources) and (not types or any(t != ENERGY_TYPE for t in types))

    @property
    def wants_aggregates(self) -> bool:
        types = self.entity_types
        return bool(self.scope.aggregate_cities) and (not types or ENERGY_TYPE in types)

    @property
    def empty(self) -> bool:
        return not (self.wants_observations or self.wants_aggregates)


@dataclass(frozen=True)
class TemporalRequest:
    """A validated TemporalQuery: the entities, the range, raw or per period."""

    selection: Selection
    start_us: int
    end_us: int
    last_n: int
    period_us: int  # 0: raw readings
    methods: tuple[str, ...]


def _strings(request: Any, name: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    values = tuple(getattr(request, name))
    if len(values) > LISTS[name]:
        raise invalid(name, f"at most {LISTS[name]} values, got {len(values)}")
    for value in values:
        if not pattern.match(value):
            raise invalid(name, f"{value[:80]!r} is not a valid value")
    return tuple(dict.fromkeys(values))


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise invalid(name, "must be a finite number")
    return float(value)


def _refs(request: Any) -> tuple[tuple[str, str], ...]:
    if len(request.entities) > MAX_REFS:
        raise invalid("entities", f"at most {MAX_REFS} references, got {len(request.entities)}")
    refs = []
    for ref in request.entities:
        if not CODE.match(ref.city):
            raise invalid("entities.city", f"{ref.city[:40]!r} is not a city code")
        if not ref.entity or len(ref.entity) > MAX_ENTITY_KEY or _CONTROL.search(ref.entity):
            raise invalid(
                "entities.entity",
                f"an entity key of 1 to {MAX_ENTITY_KEY} characters without control characters",
            )
        refs.append((ref.city, ref.entity))
    return tuple(dict.fromkeys(refs))


def _pattern(request: Any) -> str:
    pattern = request.entity_pattern
    if len(pattern) > MAX_PATTERN:
        raise invalid("entity_pattern", f"at most {MAX_PATTERN} characters, got {len(pattern)}")
    if _CONTROL.search(pattern):
        raise invalid("entity_pattern", "control characters are not allowed")
    if _NOT_RE2.search(pattern):
        raise invalid(
            "entity_pattern",
            "RE2 syntax only: no back-references or look-arounds (matched in full, linear time)",
        )
    return pattern


def _any_of(request: Any) -> tuple[tuple[Condition, ...], ...]:
    if len(request.any_of) > MAX_GROUPS:
        raise invalid("any_of", f"at most {MAX_GROUPS} groups, got {len(request.any_of)}")
    groups = []
    for group in request.any_of:
        if not group.all_of:
            raise invalid("any_of.all_of", "a group needs at least one condition")
        if len(group.all_of) > MAX_CONDITIONS:
            raise invalid("any_of.all_of", f"at most {MAX_CONDITIONS} conditions per group")
        conditions = []
        for condition in group.all_of:
            if not _METRIC.match(condition.metric):
                raise invalid("any_of.metric", f"{condition.metric[:80]!r} is not a metric name")
            if condition.op not in OPERATORS:
                raise invalid("any_of.op", "EQ, NE, LT, LE, GT or GE")
            value = _finite("any_of.value", condition.value)
            conditions.append(Condition(condition.metric, OPERATORS[condition.op], value))
        groups.append(tuple(conditions))
    return tuple(groups)


def _point(name: str, point: Any) -> tuple[float, float]:
    lat, lon = _finite(f"{name}.lat", point.lat), _finite(f"{name}.lon", point.lon)
    if not -90.0 <= lat <= 90.0:
        raise invalid(f"{name}.lat", f"a latitude between -90 and 90, got {lat}")
    if not -180.0 <= lon <= 180.0:
        raise invalid(f"{name}.lon", f"a longitude between -180 and 180, got {lon}")
    return lat, lon


def _near(geo: Any) -> Geo:
    lat, lon = _point("geo.point", geo.point)
    max_m = _finite("geo.max_distance_m", geo.max_distance_m)
    min_m = _finite("geo.min_distance_m", geo.min_distance_m)
    if not 1.0 <= max_m <= MAX_NEAR_M:
        raise invalid("geo.max_distance_m", f"from 1 to {MAX_NEAR_M:.0f} metres, got {max_m}")
    if not 0.0 <= min_m < max_m:
        raise invalid("geo.min_distance_m", "from 0 up to max_distance_m")
    return Geo("near", lat=lat, lon=lon, max_m=max_m, min_m=min_m)


def _within(geo: Any) -> Geo:
    points = [_point("geo.ring", p) for p in geo.ring]
    if len(points) > 1 and points[0] == points[-1]:
        points = points[:-1]
    if not 3 <= len(points) <= MAX_RING:
        raise invalid("geo.ring", f"a polygon of 3 to {MAX_RING} distinct points")
    return Geo("within", ring=tuple((lon, lat) for lat, lon in points))


def _geo(request: Any) -> Geo | None:
    if not request.HasField("geo"):
        return None
    if request.geo.relation == pb.GEO_RELATION_NEAR:
        return _near(request.geo)
    if request.geo.relation == pb.GEO_RELATION_WITHIN:
        return _within(request.geo)
    raise invalid("geo.relation", "NEAR (with point and max_distance_m) or WITHIN (with ring)")


def _page(request: Any) -> tuple[int, int]:
    limit = request.limit or DEFAULT_LIMIT
    if limit > MAX_LIMIT:
        raise invalid("limit", f"from 1 to {MAX_LIMIT}, got {limit}")
    if request.offset > MAX_OFFSET:
        raise invalid(
            "offset", f"at most {MAX_OFFSET}; narrow the query (cities, types, a pattern) instead"
        )
    return limit, request.offset


def _chosen(request: Any, caller: Caller, datasets: Datasets) -> list[DatasetInfo]:
    """The datasets named (each readable at entity level, or PERMISSION_DENIED), or
    every dataset whose entities the caller may read."""
    chosen = _strings(request, "datasets", re.compile(r"^.{1,200}$"))
    if not chosen:
        return datasets.entity_readable(caller)
    infos = []
    for dataset_id in chosen:
        info = datasets.require(dataset_id, caller, "datasets")
        if not caller.may_read_entities(info.policy, datasets.home, personal=info.personal):
            raise FederationError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the entities of dataset {dataset_id!r} are personal data, not available "
                f"to {caller} (its aggregates are: QueryAggregates)",
            )
        infos.append(info)
    return infos


def _scope(request: Any, caller: Caller, datasets: Datasets, cities: tuple[str, ...]) -> Scope:
    readable = [d for d in _chosen(request, caller, datasets) if not cities or d.city in cities]
    sources = tuple(sorted((d.city, d.source) for d in readable if not d.is_aggregates))
    aggregate_cities = tuple(sorted(d.city for d in readable if d.is_aggregates))
    ids = tuple(sorted(d.id for d in readable))
    return Scope(sources, aggregate_cities, ids)


def validate_entities(request: Any, caller: Caller, datasets: Datasets) -> Selection:
    """An EntityQuery checked in a fixed order (the first fault is the one reported)."""
    limit, offset = _page(request)
    cities = _strings(request, "cities", CODE)
    entity_types = _strings(request, "entity_types", _TYPE)
    refs = _refs(request)
    pattern = _pattern(request)
    metrics = _strings(request, "metrics", _METRIC)
    any_of = _any_of(request)
    geo = _geo(request)
    return Selection(
        scope=_scope(request, caller, datasets, cities),
        entity_types=entity_types,
        refs=refs,
        pattern=pattern,
        metrics=metrics,
        any_of=any_of,
        geo=geo,
        limit=limit,
        offset=offset,
        count=request.count,
    )


def _bound(request: Any, name: str) -> int | None:
    if not request.HasField(name):
        return None
    value = timestamp_us(getattr(request, name))
    if not MIN_YEAR_US <= value <= MAX_YEAR_US:
        raise invalid(name, "must fall between 2000 and 2100")
    return value


def _range(request: Any, span_us: int, newest_us: int) -> tuple[int, int]:
    """[start, end) with an absent bound filled from the other (or the newest reading)."""
    start, end = _bound(request, "start"), _bound(request, "end")
    if start is None and end is None:
        end = newest_us + 1000
    if start is None:
        start = end - span_us  # type: ignore[operator]
    if end is None:
        end = start + span_us
    if end <= start:
        raise invalid("end", "must be after start")
    if end - start > span_us:
        days = span_us // DAY_US
        what = "aggregated" if span_us == AGGREGATED_SPAN_US else "raw (aggregate with a period)"
        raise invalid("end", f"at most {days} days of {what} readings per call; split the range")
    return start, end


def _period(request: Any) -> int:
    if not request.HasField("period"):
        return 0
    period_us = request.period.seconds * 1_000_000 + request.period.nanos // 1000
    if period_us < 1_000_000:
        raise invalid("period", "at least 1 second")
    return period_us


def _methods(request: Any) -> tuple[str, ...]:
    if not request.methods:
        return tuple(METHODS.values())
    for method in request.methods:
        if method not in METHODS:
            raise invalid("methods", "SUM, AVG, MIN or MAX")
    return tuple(dict.fromkeys(METHODS[m] for m in request.methods))


def newest_in_scope(scope: Scope, newest_ms: dict[tuple[str, str], int]) -> int:
    """The newest reading (µs) of the datasets the caller may read, where a range without
    bounds ends: never that of a dataset it may not read (its time would show through
    the buckets' alignment)."""
    keys = [*scope.sources, *((city, AGGREGATES_SOURCE) for city in scope.aggregate_cities)]
    return max((newest_ms[k] for k in keys if k in newest_ms), default=0) * 1000


def validate_temporal(
    request: Any, caller: Caller, datasets: Datasets, newest_ms: dict[tuple[str, str], int]
) -> TemporalRequest:
    """A TemporalQuery checked: its entity selection, then range, last_n, period, methods.
    ``newest_ms``: the newest reading of each dataset held (a range without bounds ends
    at the newest of those the caller may read)."""
    if not request.HasField("entities"):
        raise invalid("entities", "required (an EntityQuery: which entities)")
    selection = validate_entities(request.entities, caller, datasets)
    newest_us = newest_in_scope(selection.scope, newest_ms)
    if selection.limit > MAX_TEMPORAL_LIMIT:
        raise invalid(
            "entities.limit",
            f"at most {MAX_TEMPORAL_LIMIT} entities per temporal call, got {selection.limit}",
        )
    period_us = _period(request)
    start, end = _range(request, AGGREGATED_SPAN_US if period_us else RAW_SPAN_US, newest_us)
    if period_us and (end - start) // period_us > MAX_BUCKETS:
        raise invalid("period", f"at most {MAX_BUCKETS} buckets over the range; widen the period")
    if request.last_n > MAX_LAST_N:
        raise invalid("last_n", f"at most {MAX_LAST_N}, got {request.last_n}")
    if request.last_n and period_us:
        raise invalid("last_n", "applies to raw readings only (leave period out)")
    if request.methods and not period_us:
        raise invalid("methods", "apply to aggregated readings only (give a period)")
    return TemporalRequest(
        selection=selection,
        start_us=start,
        end_us=end,
        last_n=request.last_n,
        period_us=period_us,
        methods=_methods(request),
    )


def aggregates_dataset(city: str) -> str:
    return f"{city}/{AGGREGATES_SOURCE}"
