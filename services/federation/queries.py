"""QueryAggregates: a request checked field by field, turned into one warehouse
query, and streamed back in pages.

Observation rollups are computed from the ``observations`` table restricted to the
datasets the caller may see. The materialised rollups (``observations_hourly`` /
``_daily``) are not used: they merge every source of a metric, internal ones
included, and could not apply a per-source sharing policy. A rollup never reveals
more than the caller could read itself, since it is computed only over datasets
it may subscribe to in full.

Energy aggregates come from ``energy_aggregates_released`` (each window once, as
released when its day closed), suppressed cells included and flagged, values
withheld; never from the provisional upserts of ``energy_aggregates``. The
``version`` of an answer's row is 1 (there is one) and ``largest_share`` is never
set; ``released_at`` says when it was released.

One call runs one query (bounded by the call's deadline through
``max_execution_time``) for at most ``MAX_ROWS_PER_CALL`` rows, and cuts the result
into pages. Every page carries a token to continue after it: keyset pagination on
the result's sort key, so a client that lost its stream, or got a partial answer,
asks again from where it stopped without gaps or repeats.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pyarrow as pa

from services.federation.calls import Caller, FederationError, invalid
from services.federation.catalog import (
    AGGREGATE_FIELDS,
    AGGREGATES_SOURCE,
    RELEASED_TABLE,
    Datasets,
)
from services.federation.protos import pb
from services.policy.federation import CODE
from services.warehouse.port import Warehouse

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
MAX_ROWS_PER_CALL = 100_000
MAX_LIST = {"cities": 50, "metrics": 50, "zones": 2000, "carriers": 10, "sectors": 20}
DEFAULT_BUDGET_S = 60.0
MIN_YEAR_US = 946_684_800_000_000  # 2000-01-01
MAX_YEAR_US = 4_102_444_800_000_000  # 2100-01-01
DAY_US = 86_400_000_000

GRANULARITIES = {
    pb.GRANULARITY_PT15M: ("PT15M", 15 * 60, 31),
    pb.GRANULARITY_PT1H: ("PT1H", 3600, 366),
    pb.GRANULARITY_P1D: ("P1D", 86400, 3660),
}
GRANULARITY_OF_NAME = {name: value for value, (name, _, _) in GRANULARITIES.items()}

_METRIC = re.compile(r"^[a-z0-9][a-z0-9_.]{0,63}$")
_ZONE = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9_.:*-]{0,63}$")
_WORD = re.compile(r"^[a-z*][a-z0-9_*-]{0,31}$")


@dataclass(frozen=True)
class Question:
    """A validated QueryAggregates request, in the node's terms."""

    kind: int
    cities: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]  # visible observation datasets (rollups)
    domains: tuple[str, ...]  # their domains (the table's sort key starts city, domain)
    metrics: tuple[str, ...]
    zones: tuple[str, ...]
    carriers: tuple[str, ...]
    sectors: tuple[str, ...]
    start_us: int
    end_us: int
    granularity: str
    page_size: int
    fingerprint: str
    after: tuple[Any, ...] | None
    datasets: tuple[str, ...]


def timestamp_us(value: Any) -> int:
    return value.seconds * 1_000_000 + value.nanos // 1000


def set_timestamp_ms(target: Any, ms: int) -> None:
    target.seconds, rest = divmod(int(ms), 1000)
    target.nanos = rest * 1_000_000


def _strings(request: Any, name: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    values = tuple(getattr(request, name))
    if len(values) > MAX_LIST[name]:
        raise invalid(name, f"at most {MAX_LIST[name]} values, got {len(values)}")
    for value in values:
        if not pattern.match(value):
            raise invalid(name, f"{value[:80]!r} is not a valid value")
    return tuple(dict.fromkeys(values))


def fingerprint(request: Any, caller: Caller) -> str:
    """What a page token is bound to: the same question from the same caller."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.page_token = ""
    copy.page_size = 0
    digest = hashlib.sha256(copy.SerializeToString(deterministic=True))
    digest.update(str(caller).encode())
    return digest.hexdigest()[:16]


def encode_token(question_fingerprint: str, key: tuple[Any, ...]) -> str:
    payload = json.dumps({"q": question_fingerprint, "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, question_fingerprint: str) -> tuple[Any, ...]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        key = tuple(payload["k"])
        bound = payload["q"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid("page_token", "not a token this API returned") from None
    if bound != question_fingerprint:
        raise invalid("page_token", "belongs to another question; send the same query with it")
    if len(key) != 5 or not all(isinstance(k, str) for k in key[:4]) or not isinstance(key[4], int):
        raise invalid("page_token", "not a token this API returned")
    return key


@dataclass(frozen=True)
class _Window:
    """The time range asked for, at its granularity."""

    granularity: str
    start_us: int
    end_us: int


@dataclass(frozen=True)
class _Filters:
    """The list fields of a request, each checked against its pattern and bound."""

    cities: tuple[str, ...]
    metrics: tuple[str, ...]
    zones: tuple[str, ...]
    carriers: tuple[str, ...]
    sectors: tuple[str, ...]


@dataclass(frozen=True)
class _Scope:
    """What the answer may read: cities, observation sources and their domains, and
    the datasets named in the answer."""

    cities: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    domains: tuple[str, ...]
    datasets: tuple[str, ...]


def _kind(request: Any) -> int:
    kind = request.kind
    if kind not in (pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS, pb.AGGREGATE_KIND_ENERGY_AGGREGATES):
        raise invalid("kind", "OBSERVATION_ROLLUPS or ENERGY_AGGREGATES")
    return kind


def _window(request: Any) -> _Window:
    """The range, bounded in years and in length so that one call stays one query's work."""
    if request.granularity not in GRANULARITIES:
        raise invalid("granularity", "PT15M, PT1H or P1D")
    granularity, _, max_days = GRANULARITIES[request.granularity]
    if not request.HasField("start") or not request.HasField("end"):
        raise invalid("start" if not request.HasField("start") else "end", "required")
    start_us, end_us = timestamp_us(request.start), timestamp_us(request.end)
    for name, value in (("start", start_us), ("end", end_us)):
        if not MIN_YEAR_US <= value <= MAX_YEAR_US:
            raise invalid(name, "must fall between 2000 and 2100")
    if end_us <= start_us:
        raise invalid("end", "must be after start")
    if end_us - start_us > max_days * DAY_US:
        raise invalid("end", f"at most {max_days} days at {granularity}; split the range")
    return _Window(granularity=granularity, start_us=start_us, end_us=end_us)


def _page_size(request: Any) -> int:
    page_size = request.page_size or DEFAULT_PAGE
    if page_size > MAX_PAGE:
        raise invalid("page_size", f"at most {MAX_PAGE}, got {page_size}")
    return page_size


def _filters(request: Any) -> _Filters:
    return _Filters(
        cities=_strings(request, "cities", CODE),
        metrics=_strings(request, "metrics", _METRIC),
        zones=_strings(request, "zones", _ZONE),
        carriers=_strings(request, "carriers", _WORD),
        sectors=_strings(request, "sectors", _WORD),
    )


def _visible(request: Any, caller: Caller, datasets: Datasets) -> list[Any]:
    """The datasets the question may read: those named (each one the caller may see,
    or PERMISSION_DENIED), or else every dataset visible to the caller."""
    visible = datasets.visible(caller)
    chosen = list(dict.fromkeys(request.datasets))
    if len(chosen) > 200:
        raise invalid("datasets", "at most 200 values")
    if chosen:
        visible = [datasets.require(d, caller, "datasets") for d in chosen]
    return visible


def _rollup_scope(
    filters: _Filters, visible: list[Any], hosted: list[str], known_metrics: frozenset[str]
) -> _Scope:
    """Observation rollups: known metrics only, over the visible observation datasets."""
    if not filters.metrics:
        raise invalid("metrics", "name at least one metric of the controlled vocabulary")
    unknown = [m for m in filters.metrics if m not in known_metrics]
    if unknown:
        raise invalid("metrics", f"unknown metric {unknown[0]!r} (not in the vocabulary)")
    if filters.carriers or filters.sectors:
        raise invalid(
            "carriers" if filters.carriers else "sectors", "apply to energy aggregates only"
        )
    chosen_sources = [d for d in visible if not d.is_aggregates and d.city in hosted]
    sources = tuple((d.city, d.source) for d in chosen_sources)
    return _Scope(
        cities=tuple(sorted({c for c, _ in sources})),
        sources=sources,
        domains=tuple(sorted({d.domain for d in chosen_sources})),
        datasets=tuple(sorted({f"{c}/{s}" for c, s in sources})),
    )


def _energy_scope(filters: _Filters, visible: list[Any], hosted: list[str]) -> _Scope:
    """Energy aggregates: no metric filter, the visible aggregates datasets' cities."""
    if filters.metrics:
        raise invalid(
            "metrics",
            f"do not apply to energy aggregates (rows carry {', '.join(AGGREGATE_FIELDS)}); "
            "filter with carriers, sectors and zones",
        )
    cities = tuple(
        sorted({d.city for d in visible if d.source == AGGREGATES_SOURCE and d.city in hosted})
    )
    return _Scope(
        cities=cities,
        sources=(),
        domains=(),
        datasets=tuple(f"{c}/{AGGREGATES_SOURCE}" for c in cities),
    )


def validate(
    request: Any,
    caller: Caller,
    datasets: Datasets,
    known_metrics: frozenset[str],
) -> Question:
    """Every field checked, with the field named in the error (INVALID_ARGUMENT), and
    datasets the caller may not see refused (PERMISSION_DENIED).

    A partner's request crosses a trust boundary here: the checks run in a fixed
    order (kind, range, page size, lists, datasets, kind-specific fields, token), so
    the first fault found is the one reported, whatever else is wrong."""
    kind = _kind(request)
    window = _window(request)
    page_size = _page_size(request)
    filters = _filters(request)
    cities = filters.cities
    hosted = [c for c in cities if c in datasets.cities] if cities else list(datasets.cities)
    visible = _visible(request, caller, datasets)
    if kind == pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS:
        scope = _rollup_scope(filters, visible, hosted, known_metrics)
    else:
        scope = _energy_scope(filters, visible, hosted)
    question_fingerprint = fingerprint(request, caller)
    after = decode_token(request.page_token, question_fingerprint) if request.page_token else None
    return Question(
        kind=kind,
        cities=scope.cities,
        sources=scope.sources,
        domains=scope.domains,
        metrics=filters.metrics,
        zones=filters.zones,
        carriers=filters.carriers,
        sectors=filters.sectors,
        start_us=window.start_us,
        end_us=window.end_us,
        granularity=window.granularity,
        page_size=page_size,
        fingerprint=question_fingerprint,
        after=after,
        datasets=scope.datasets,
    )


# -- SQL -----------------------------------------------------------------------------


def quote(value: str) -> str:
    """A ClickHouse string literal (values are validated first; this is the second fence)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def _ms(us: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({us // 1000}), 'UTC')"


def _bucket(granularity: str, timezones: dict[str, str]) -> tuple[str, str]:
    """(window start, window end) as epoch seconds; days are the city's calendar days."""
    if granularity == "PT15M":
        return "toUnixTimestamp(toStartOfFifteenMinutes(ts))", "window_start + 900"
    if granularity == "PT1H":
        return "toUnixTimestamp(toStartOfHour(ts))", "window_start + 3600"
    zones = sorted(set(timezones.values())) or ["Europe/Paris"]

    def day(offset: str) -> str:
        def one(tz: str) -> str:
            return f"toUnixTimestamp(toStartOfDay(ts, {quote(tz)}){offset}, 'UTC')"

        if len(zones) == 1:
            return one(zones[0])
        branches = ", ".join(
            f"city = {quote(city)}, {one(tz)}" for city, tz in sorted(timezones.items())
        )
        return f"multiIf({branches}, {one('Europe/Paris')})"

    return day(""), day(" + INTERVAL 1 DAY")


def rollup_sql(question: Question, timezones: dict[str, str], limit: int) -> str:
    start, end = _bucket(question.granularity, timezones)
    pairs = ", ".join(f"({quote(c)}, {quote(s)})" for c, s in question.sources)
    where = [
        _in("city", tuple(sorted({c for c, _ in question.sources}))),
        _in("domain", question.domains),
        f"(city, source) IN ({pairs})",
        _in("metric", question.metrics),
        f"ts >= {_ms(question.start_us)}",
        f"ts < {_ms(question.end_us)}",
    ]
    if question.zones:
        where.append(_in("zone", question.zones))
    having = ""
    if question.after:
        c, m, z, s, w = question.after
        having = (
            f"HAVING (city, metric, zone, sector, window_start) > "
            f"({quote(c)}, {quote(m)}, {quote(z)}, {quote(s)}, {int(w) // 1000})"
        )
    return (
        f"SELECT city, metric, any(unit) AS unit, zone, sector, {start} AS window_start, "
        f"{end} AS window_end, sum(value) AS sum, avg(value) AS mean, min(value) AS min, "
        "max(value) AS max, count() AS readings, uniq(entity) AS entities "
        f"FROM observations WHERE {' AND '.join(where)} "
        "GROUP BY city, metric, zone, sector, window_start, window_end "
        f"{having} ORDER BY city, metric, zone, sector, window_start LIMIT {limit}"
    )


def aggregates_sql(question: Question, limit: int) -> str:
    where = [
        _in("city", question.cities),
        f"granularity = {quote(question.granularity)}",
        f"window_start >= {_ms(question.start_us)}",
        f"window_start < {_ms(question.end_us)}",
    ]
    for column, values in (
        ("zone", question.zones),
        ("carrier", question.carriers),
        ("sector", question.sectors),
    ):
        if values:
            where.append(_in(column, values))
    if question.after:
        c, ca, s, z, w = question.after
        where.append(
            f"(city, carrier, sector, zone, window_start) > "
            f"({quote(c)}, {quote(ca)}, {quote(s)}, {quote(z)}, {_ms(int(w) * 1000)})"
        )
    return (
        "SELECT city, zone, carrier, sector, toUnixTimestamp64Milli(window_start) AS start_ms, "
        "toUnixTimestamp64Milli(window_end) AS end_ms, energy_kwh, meter_count, peak_kw, "
        "suppressed, suppression_reason, toUnixTimestamp64Milli(released_at) AS released_ms, "
        "derived, partial "
        f"FROM {RELEASED_TABLE} FINAL WHERE {' AND '.join(where)} "
        f"ORDER BY city, carrier, sector, zone, window_start LIMIT {limit}"
    )


# -- running and paging ------------------------------------------------------------


def query_budget(budget_s: float | None) -> float:
    """The call's time for the query, capped, refused when too short to try."""
    budget = DEFAULT_BUDGET_S if budget_s is None else min(budget_s, DEFAULT_BUDGET_S)
    if budget < 0.05:
        raise FederationError(grpc.StatusCode.DEADLINE_EXCEEDED, "no time left for the query")
    return budget


def _answer_sql(question: Question, timezones: dict[str, str], budget: float, limit: int) -> str:
    """The one query of a call, stopped by ClickHouse itself when the budget runs out."""
    if question.kind == pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS:
        sql = rollup_sql(question, timezones, limit)
    else:
        sql = aggregates_sql(question, limit)
    return sql + f" SETTINGS max_execution_time = {max(0.1, math.floor(budget * 10) / 10)}"


def run_query(warehouse: Warehouse, sql: str) -> pa.Table:
    """The warehouse's answer; its timeout said as the call's DEADLINE_EXCEEDED."""
    try:
        return warehouse.query_arrow(sql)
    except Exception as exc:
        if "TIMEOUT_EXCEEDED" in str(exc):
            raise FederationError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the warehouse query did not finish within the call's deadline; "
                "narrow the range or give the call more time",
            ) from exc
        raise


def _pages(question: Question, rows: list[dict[str, Any]], more: bool, node: str) -> Iterator[Any]:
    """``rows`` cut into pages; every page but a complete answer's last carries the
    token to continue after it (``more``: the call's row limit cut the answer)."""
    rollups = question.kind == pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS
    for offset in range(0, len(rows), question.page_size):
        chunk = rows[offset : offset + question.page_size]
        final = offset + question.page_size >= len(rows)
        page = pb.AggregatePage(node=node, last=final)
        if rollups:
            page.rollups.extend(_rollup(row) for row in chunk)
            key = _rollup_key(chunk[-1])
        else:
            page.energy.extend(_aggregate(row, question.granularity) for row in chunk)
            key = _aggregate_key(chunk[-1])
        if not final or more:
            page.next_page_token = encode_token(question.fingerprint, key)
        yield page


def run(
    warehouse: Warehouse,
    question: Question,
    timezones: dict[str, str],
    budget_s: float | None,
    *,
    node: str,
    max_rows: int = MAX_ROWS_PER_CALL,
) -> Iterator[Any]:
    """The answer's pages (AggregatePage), the last one marked."""
    empty = not question.cities or (
        question.kind == pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS and not question.sources
    )
    if empty:
        yield pb.AggregatePage(node=node, last=True)
        return
    budget = query_budget(budget_s)
    table = run_query(warehouse, _answer_sql(question, timezones, budget, max_rows + 1))
    more = table.num_rows > max_rows
    if more:
        table = table.slice(0, max_rows)
    rows = table.to_pylist()
    if not rows:
        yield pb.AggregatePage(node=node, last=True)
        return
    yield from _pages(question, rows, more, node)


def _rollup_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["city"], row["metric"], row["zone"], row["sector"], int(row["window_start"]) * 1000)


def _aggregate_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["city"], row["carrier"], row["sector"], row["zone"], int(row["start_ms"]))


def _rollup(row: dict[str, Any]) -> Any:
    message = pb.ObservationRollup(
        city=row["city"],
        metric=row["metric"],
        unit=row["unit"],
        zone=row["zone"],
        sector=row["sector"],
        sum=row["sum"],
        mean=row["mean"],
        min=row["min"],
        max=row["max"],
        readings=row["readings"],
        entities=row["entities"],
    )
    set_timestamp_ms(message.window_start, int(row["window_start"]) * 1000)
    set_timestamp_ms(message.window_end, int(row["window_end"]) * 1000)
    return message


def _aggregate(row: dict[str, Any], granularity: str) -> Any:
    message = pb.EnergyAggregate(
        city=row["city"],
        zone=row["zone"],
        carrier=row["carrier"],
        sector=row["sector"],
        granularity=GRANULARITY_OF_NAME[granularity],
        version=1,
        suppressed=bool(row["suppressed"]),
        suppression_reason=row["suppression_reason"] or "",
        derived=bool(row.get("derived")),
        partial=bool(row.get("partial")),
    )
    for name in AGGREGATE_FIELDS:
        if row[name] is not None:
            setattr(message, name, row[name])
    set_timestamp_ms(message.window_start, row["start_ms"])
    set_timestamp_ms(message.window_end, row["end_ms"])
    set_timestamp_ms(message.released_at, row["released_ms"])
    return message


def rows_of(page: Any) -> int:
    return len(page.rollups) + len(page.energy)


def table_of_pages(pages: list[Any]) -> pa.Table:
    """Pages as one Arrow table (for the command line and the bench)."""
    from google.protobuf.json_format import MessageToDict

    records: list[dict[str, Any]] = []
    for page in pages:
        for row in (*page.rollups, *page.energy):
            entry = {"node": page.node}
            entry.update(
                MessageToDict(
                    row, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                )
            )
            if "granularity" in entry:
                entry["granularity"] = str(entry["granularity"]).removeprefix("GRANULARITY_")
            records.append(entry)
    return (
        pa.Table.from_pylist(records) if records else pa.table({"node": pa.array([], pa.string())})
    )
