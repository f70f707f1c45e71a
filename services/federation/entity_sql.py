"""The warehouse SQL of QueryEntities and QueryTemporal, built from validated requests.

Nothing of a request is pasted as text: strings go through ``quote`` (after the
validation of services/federation/entity_query.py, a second fence), numbers are
finite floats or ints rendered by Python, and the entity pattern is a string
literal handed to ClickHouse's ``match`` (RE2: linear time, whatever the pattern).

Every query reads only the datasets of the selection's scope (what the caller may
read at entity level, services/policy/access.py): a condition, a pattern or a
metric name outside it matches nothing, exactly as one that does not exist.

An observation entity is one (city, source, entity key): each metric's latest value,
and the type, zone and position of its latest reading, read from
``observations_latest`` (one row per entity and metric, kept by a materialised
view as readings land), so that listing entities never scans the readings. An
energy-aggregate
entity is one (city, zone, carrier, sector, granularity) of the released table,
its attributes those of its latest released window.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.federation.catalog import AGGREGATES_SOURCE, RELEASED_TABLE
from services.federation.entity_query import ENERGY_TYPE, Geo, Selection, TemporalRequest
from services.federation.queries import quote

# The latest reading of each (city, source, entity, metric), kept by a view
# (deploy/clickhouse/017_latest_values.sql).
LATEST_TABLE = "observations_latest"
# Every reading ordered by entity (deploy/clickhouse/018_readings_by_entity.sql).
READINGS_TABLE = "readings_by_entity"
ENERGY_UNITS = (("energy_kwh", "kWh"), ("meter_count", "1"), ("peak_kw", "kW"))
ENERGY_COLUMNS = ("energy_kwh", "toNullable(toFloat64(meter_count))", "peak_kw")
ENTITY_COLUMNS = (
    "city, dataset, entity, entity_type, zone, lat, lon, metrics, units, vals, times, "
    "qualities, suppressed, reasons, window_starts, carrier, sector, granularity"
)
_ENERGY_KEY = "concat(zone, '~', carrier, '~', sector, '~', granularity)"


def number(value: float) -> str:
    """A finite float as a ClickHouse Float64 literal."""
    return f"toFloat64({float(value)!r})"


def strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _ms(value_ms: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({int(value_ms)}), 'UTC')"


def _pairs(values: Iterable[tuple[str, ...]]) -> str:
    return ", ".join("(" + ", ".join(quote(v) for v in value) + ")" for value in values)


# -- entities -----------------------------------------------------------------------


def _entity_filters(selection: Selection, entity: str) -> list[str]:
    """Filters on the entity itself: references, pattern (matched in full)."""
    where = []
    if selection.refs:
        where.append(f"(city, {entity}) IN ({_pairs(selection.refs)})")
    if selection.pattern:
        where.append(f"match({entity}, {quote('^(?:' + selection.pattern + ')$')})")
    return where


def _scope_filter(selection: Selection) -> str:
    """The readable sources, and nothing else."""
    return f"(city, source) IN ({_pairs(selection.scope.sources)})"


def _wanted_metrics(selection: Selection) -> tuple[str, ...]:
    """Metrics to read: those asked for and those the conditions test (empty: all)."""
    if not selection.metrics:
        return ()
    return tuple(dict.fromkeys((*selection.metrics, *selection.condition_metrics)))


def observation_entities_sql(selection: Selection) -> str:
    cities = sorted({c for c, _ in selection.scope.sources})
    where = [f"city IN ({', '.join(quote(c) for c in cities)})", _scope_filter(selection)]
    where += _entity_filters(selection, "entity")
    observed_types = [t for t in selection.entity_types if t != ENERGY_TYPE]
    if observed_types:
        where.append(f"entity_type IN ({', '.join(quote(t) for t in observed_types)})")
    metrics = _wanted_metrics(selection)
    if metrics:
        where.append(f"metric IN ({', '.join(quote(m) for m in metrics)})")
    latest = (
        "SELECT city, source AS src, entity AS ent, metric, entity_type AS l_type, "
        "zone AS l_zone, lat AS l_lat, lon AS l_lon, unit AS l_unit, value AS l_value, "
        "toInt64(toUnixTimestamp64Milli(last_ts)) AS l_ms, toUInt32(quality) AS l_q "
        f"FROM {LATEST_TABLE} FINAL WHERE {' AND '.join(where)}"
    )
    return (
        "SELECT city, concat(city, '/', src) AS dataset, ent AS entity, "
        "argMax(l_type, l_ms) AS entity_type, argMax(l_zone, l_ms) AS zone, "
        "argMax(l_lat, l_ms) AS lat, argMax(l_lon, l_ms) AS lon, "
        "groupArray(metric) AS metrics, groupArray(l_unit) AS units, "
        "CAST(groupArray(l_value), 'Array(Nullable(Float64))') AS vals, "
        "groupArray(l_ms) AS times, groupArray(l_q) AS qualities, "
        "arrayMap(x -> false, metrics) AS suppressed, arrayMap(x -> '', metrics) AS reasons, "
        "arrayMap(x -> toInt64(0), metrics) AS window_starts, "
        "'' AS carrier, '' AS sector, '' AS granularity "
        f"FROM ({latest}) GROUP BY city, src, ent"
    )


def aggregate_entities_sql(selection: Selection) -> str:
    cities = ", ".join(quote(c) for c in selection.scope.aggregate_cities)
    where = [f"city IN ({cities})", *_entity_filters(selection, _ENERGY_KEY)]
    latest = (
        "SELECT city, zone, carrier, sector, granularity, "
        "argMax(tuple(energy_kwh, toNullable(toFloat64(meter_count)), peak_kw, suppressed, "
        "ifNull(suppression_reason, '')), window_end) AS l, "
        "toInt64(toUnixTimestamp64Milli(max(window_end))) AS end_ms, "
        "toInt64(toUnixTimestamp64Milli(argMax(window_start, window_end))) AS start_ms "
        f"FROM {RELEASED_TABLE} FINAL WHERE {' AND '.join(where)} "
        "GROUP BY city, zone, carrier, sector, granularity"
    )
    names = strings(name for name, _ in ENERGY_UNITS)
    units = strings(unit for _, unit in ENERGY_UNITS)
    return (
        f"SELECT city, concat(city, '/{AGGREGATES_SOURCE}') AS dataset, {_ENERGY_KEY} AS entity, "
        f"{quote(ENERGY_TYPE)} AS entity_type, zone, CAST(NULL, 'Nullable(Float64)') AS lat, "
        "CAST(NULL, 'Nullable(Float64)') AS lon, "
        f"{names} AS metrics, {units} AS units, "
        "CAST([l.1, l.2, l.3], 'Array(Nullable(Float64))') AS vals, "
        "[end_ms, end_ms, end_ms] AS times, [toUInt32(0), 0, 0] AS qualities, "
        "[l.4, l.4, l.4] AS suppressed, [l.5, l.5, l.5] AS reasons, "
        "[start_ms, start_ms, start_ms] AS window_starts, carrier, sector, granularity "
        f"FROM ({latest})"
    )


def _condition(metric: str, op: str, value: float) -> str:
    test = f"m = {quote(metric)} AND ifNull(v {op} {number(value)}, 0)"
    return f"arrayExists((m, v) -> {test}, metrics, vals)"


def _geo_filter(geo: Geo) -> str:
    lon, lat = "assumeNotNull(lon)", "assumeNotNull(lat)"
    if geo.relation == "near":
        distance = f"geoDistance({lon}, {lat}, {number(geo.lon)}, {number(geo.lat)})"
        return (
            f"lat IS NOT NULL AND lon IS NOT NULL AND {distance} <= {number(geo.max_m)} "
            f"AND {distance} >= {number(geo.min_m)}"
        )
    ring = ", ".join(f"({number(x)}, {number(y)})" for x, y in geo.ring)
    return f"lat IS NOT NULL AND lon IS NOT NULL AND pointInPolygon(({lon}, {lat}), [{ring}])"


def _outer_filters(selection: Selection) -> list[str]:
    where = _entity_filters(selection, "entity")
    if selection.entity_types:
        where.append(f"entity_type IN ({', '.join(quote(t) for t in selection.entity_types)})")
    if selection.metrics:
        where.append(f"hasAny(metrics, {strings(selection.metrics)})")
    if selection.any_of:
        groups = [
            "(" + " AND ".join(_condition(c.metric, c.op, c.value) for c in group) + ")"
            for group in selection.any_of
        ]
        where.append("(" + " OR ".join(groups) + ")")
    if selection.geo:
        where.append(_geo_filter(selection.geo))
    return where


def _union(selection: Selection) -> str:
    parts = []
    if selection.wants_observations:
        parts.append(observation_entities_sql(selection))
    if selection.wants_aggregates:
        parts.append(aggregate_entities_sql(selection))
    return " UNION ALL ".join(f"SELECT {ENTITY_COLUMNS} FROM ({p})" for p in parts)


def entities_sql(selection: Selection) -> str:
    """The page of entities (sorted by city, type, key, dataset), each with every
    matching entity's count when asked (a window over the filtered set)."""
    where = _outer_filters(selection)
    total = ", count() OVER () AS total" if selection.count else ""
    return (
        f"SELECT {ENTITY_COLUMNS}{total} FROM ({_union(selection)}) "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY city, entity_type, entity, dataset "
        f"LIMIT {int(selection.limit)} OFFSET {int(selection.offset)}"
    )


def count_sql(selection: Selection) -> str:
    """Matching entities in all (for a page past the end, where the window gave none)."""
    where = _outer_filters(selection)
    return (
        f"SELECT count() AS total FROM ({_union(selection)}) "
        f"{'WHERE ' + ' AND '.join(where) if where else ''}"
    )


# -- readings -------------------------------------------------------------------------


def _observation_readings(
    request: TemporalRequest, refs: list[tuple[str, str, str]], metrics: tuple[str, ...]
) -> str:
    triples = _pairs(refs)
    where = [
        f"city IN ({', '.join(quote(c) for c in sorted({c for c, _, _ in refs}))})",
        f"(city, source, entity) IN ({triples})",
        f"ts >= {_ms(request.start_us // 1000)}",
        f"ts < {_ms(request.end_us // 1000)}",
    ]
    if metrics:
        where.append(f"metric IN ({', '.join(quote(m) for m in metrics)})")
    return (
        "SELECT city, source, entity, metric, unit, toInt64(toUnixTimestamp64Milli(ts)) AS t_ms, "
        "toNullable(value) AS v, false AS sup "
        f"FROM {READINGS_TABLE} FINAL WHERE {' AND '.join(where)}"
    )


def _aggregate_readings(
    request: TemporalRequest, cells: list[tuple[str, str, str, str, str]], metrics: tuple[str, ...]
) -> str:
    rows = ", ".join(
        f"({quote(name)}, {quote(unit)}, {column})"
        for (name, unit), column in zip(ENERGY_UNITS, ENERGY_COLUMNS, strict=True)
        if not metrics or name in metrics
    )
    where = [
        f"(city, zone, carrier, sector, granularity) IN ({_pairs(cells)})",
        f"window_start >= {_ms(request.start_us // 1000)}",
        f"window_start < {_ms(request.end_us // 1000)}",
    ]
    return (
        f"SELECT city, '{AGGREGATES_SOURCE}' AS source, {_ENERGY_KEY} AS entity, m.1 AS metric, "
        "m.2 AS unit, toInt64(toUnixTimestamp64Milli(window_start)) AS t_ms, "
        # a withheld window gives no value whatever its row holds (as _attribute does)
        "if(suppressed, NULL, CAST(m.3, 'Nullable(Float64)')) AS v, suppressed AS sup "
        f"FROM {RELEASED_TABLE} FINAL ARRAY JOIN [{rows}] AS m WHERE {' AND '.join(where)}"
    )


def readings_union(
    request: TemporalRequest,
    observed: list[tuple[str, str, str]],
    cells: list[tuple[str, str, str, str, str]],
) -> str:
    """Every reading of the chosen entities in [start, end): observation readings and
    released windows (at their start), one row each."""
    metrics = request.selection.metrics
    energy_metrics = [m for m in metrics if m in dict(ENERGY_UNITS)]
    parts = []
    if observed:
        parts.append(_observation_readings(request, observed, metrics))
    if cells and (not metrics or energy_metrics):
        parts.append(_aggregate_readings(request, cells, metrics))
    return " UNION ALL ".join(parts)


def raw_sql(union: str, per_series: int, last_n: int) -> str:
    """Raw readings per series, oldest first; the last ``last_n`` when given, else
    at most ``per_series`` (one more tells the caller the range holds too many)."""
    order = "t_ms DESC" if last_n else "t_ms"
    keep = last_n or per_series
    return (
        "SELECT city, source, entity, metric, any(unit) AS unit, "
        "arraySort(groupArray((t_ms, v, sup))) AS points, arrayMap(p -> p.1, points) AS times, "
        "arrayMap(p -> p.2, points) AS vals, arrayMap(p -> p.3, points) AS sups FROM ("
        f"SELECT * FROM ({union}) ORDER BY city, source, entity, metric, {order} "
        f"LIMIT {int(keep)} BY city, source, entity, metric) "
        "GROUP BY city, source, entity, metric ORDER BY city, source, entity, metric"
    )


def bucket_sql(union: str, start_ms: int, period_ms: int) -> str:
    """Readings per period, buckets aligned on the range's start; a suppressed window
    counts as no reading (its value is absent)."""
    return (
        "SELECT city, source, entity, metric, any(unit) AS unit, "
        f"intDiv(t_ms - {int(start_ms)}, {int(period_ms)}) AS bucket, "
        "sum(v) AS sum, avg(v) AS avg, min(v) AS min, max(v) AS max, count(v) AS readings "
        f"FROM ({union}) GROUP BY city, source, entity, metric, bucket "
        "ORDER BY city, source, entity, metric, bucket"
    )
