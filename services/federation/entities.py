"""QueryEntities and QueryTemporal: a validated selection run on the warehouse and
streamed back as pages.

What each call may read is decided before any SQL (entity_query.py, through
services/policy/access.py); the SQL (entity_sql.py) reads only that. One call is
one or two bounded queries, stopped by ClickHouse itself when the call's deadline
runs out (``max_execution_time``), like QueryAggregates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from services.federation import entity_sql
from services.federation.calls import FederationError, invalid
from services.federation.catalog import AGGREGATES_SOURCE, Datasets
from services.federation.entity_query import MAX_LAST_N, Selection, TemporalRequest
from services.federation.protos import pb
from services.federation.queries import query_budget, run_query, set_timestamp_ms
from services.warehouse.port import Warehouse

ENTITIES_PER_PAGE = 100
TEMPORAL_PER_PAGE = 10
MAX_POINTS_PER_CALL = 1_000_000
SHARED_TERMS = "shared: for the partners its city names only, not for redistribution"


@dataclass(frozen=True)
class Context:
    """What running a call needs besides its request: the warehouse, the node's
    datasets (licences), the newest reading of each dataset, the call's time."""

    warehouse: Warehouse
    datasets: Datasets
    newest_ms: dict[tuple[str, str], int]
    budget_s: float | None
    node: str


def _settings(budget_s: float | None) -> str:
    budget = query_budget(budget_s)
    return f" SETTINGS max_execution_time = {max(0.1, math.floor(budget * 10) / 10)}"


def _run(context: Context, sql: str) -> pa.Table:
    """The warehouse's answer; a pattern RE2 cannot compile is the caller's mistake."""
    try:
        return run_query(context.warehouse, sql + _settings(context.budget_s))
    except FederationError:
        raise
    except Exception as exc:
        text = str(exc)
        if "CANNOT_COMPILE_REGEXP" in text or "re2" in text.lower():
            raise invalid(
                "entity_pattern", "not a valid RE2 pattern (or too large to compile)"
            ) from exc
        raise


def _licence(datasets: Datasets, dataset_id: str) -> str:
    info = datasets.all.get(dataset_id)
    if info is None:
        return ""
    return info.policy.licence or (SHARED_TERMS if info.policy.level == "shared" else "")


def _attribute(row: dict[str, Any], i: int) -> Any:
    value = row["vals"][i]
    attribute = pb.EntityAttribute(
        metric=row["metrics"][i],
        unit=row["units"][i],
        quality=int(row["qualities"][i]),
        suppressed=bool(row["suppressed"][i]),
        suppression_reason=row["reasons"][i] or "",
    )
    if value is not None and not math.isnan(value) and not attribute.suppressed:
        attribute.value = value
    set_timestamp_ms(attribute.observed_at, row["times"][i])
    if row["window_starts"][i]:
        set_timestamp_ms(attribute.window_start, row["window_starts"][i])
    return attribute


def entity_message(row: dict[str, Any], selection: Selection, datasets: Datasets) -> Any:
    """One warehouse row as an Entity, its attributes limited to the metrics asked."""
    entity = pb.Entity(
        city=row["city"],
        dataset=row["dataset"],
        entity=row["entity"],
        entity_type=row["entity_type"] or "",
        zone=row["zone"] or "",
        licence=_licence(datasets, row["dataset"]),
        carrier=row["carrier"] or "",
        sector=row["sector"] or "",
        granularity=row["granularity"] or "",
    )
    if row["lat"] is not None and row["lon"] is not None:
        entity.position.lat, entity.position.lon = row["lat"], row["lon"]
    wanted = set(selection.metrics)
    order = sorted(range(len(row["metrics"])), key=lambda i: row["metrics"][i])
    entity.attributes.extend(
        _attribute(row, i) for i in order if not wanted or row["metrics"][i] in wanted
    )
    return entity


def select_entities(context: Context, selection: Selection) -> tuple[list[dict[str, Any]], int]:
    """The page of matching entities (rows) and, when asked, how many match in all."""
    if selection.empty:
        return [], 0
    rows = _run(context, entity_sql.entities_sql(selection)).to_pylist()
    total = 0
    if selection.count:
        if rows:
            total = int(rows[0]["total"])
        elif selection.offset:
            counted = _run(context, entity_sql.count_sql(selection))
            total = int(counted.column(0)[0].as_py())
    return rows, total


def entity_pages(context: Context, selection: Selection) -> Iterator[Any]:
    """QueryEntities' answer: pages of at most ENTITIES_PER_PAGE, the last one marked."""
    rows, total = select_entities(context, selection)
    if not rows:
        yield pb.EntityPage(node=context.node, total=total, last=True)
        return
    for start in range(0, len(rows), ENTITIES_PER_PAGE):
        chunk = rows[start : start + ENTITIES_PER_PAGE]
        page = pb.EntityPage(
            node=context.node, total=total, last=start + ENTITIES_PER_PAGE >= len(rows)
        )
        page.entities.extend(entity_message(r, selection, context.datasets) for r in chunk)
        yield page


# -- temporal -----------------------------------------------------------------------------


def _references(
    rows: list[dict[str, Any]],
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str, str]]]:
    """The chosen entities as (city, source, entity) and energy cells as their columns."""
    observed, cells = [], []
    for row in rows:
        source = row["dataset"].split("/", 1)[1]
        if source == AGGREGATES_SOURCE:
            cells.append(
                (row["city"], row["zone"], row["carrier"], row["sector"], row["granularity"])
            )
        else:
            observed.append((row["city"], source, row["entity"]))
    return observed, cells


def _raw_series(row: dict[str, Any], last_n: int) -> Any:
    times, values, suppressed = row["times"], row["vals"], row["sups"]
    if not last_n and len(times) > MAX_LAST_N:
        raise invalid(
            "end",
            f"more than {MAX_LAST_N} readings of {row['metric']} for one entity in the range; "
            "ask for last_n, a shorter range, or a period",
        )
    series = pb.TemporalSeries(metric=row["metric"], unit=row["unit"] or "")
    for t_ms, value, hidden in zip(times, values, suppressed, strict=True):
        set_timestamp_ms(series.times.add(), t_ms)
        series.values.append(math.nan if value is None else value)
        series.suppressed.append(bool(hidden))
    if not any(series.suppressed):
        del series.suppressed[:]
    return series


def _raw(context: Context, request: TemporalRequest, union: str) -> dict[tuple, list[Any]]:
    sql = entity_sql.raw_sql(union, MAX_LAST_N + 1, request.last_n)
    found: dict[tuple, list[Any]] = {}
    points = 0
    for row in _run(context, sql).to_pylist():
        points += len(row["times"])
        if points > MAX_POINTS_PER_CALL:
            raise invalid(
                "entities.limit",
                f"the answer holds more than {MAX_POINTS_PER_CALL} readings; ask fewer "
                "entities, a shorter range, last_n or a period",
            )
        key = (row["city"], row["source"], row["entity"])
        found.setdefault(key, []).append(_raw_series(row, request.last_n))
    return found


def _bucket(row: dict[str, Any], request: TemporalRequest) -> Any:
    period_ms = request.period_us // 1000
    start_ms = request.start_us // 1000 + int(row["bucket"]) * period_ms
    bucket = pb.TemporalBucket(readings=int(row["readings"]))
    set_timestamp_ms(bucket.start, start_ms)
    set_timestamp_ms(bucket.end, min(start_ms + period_ms, request.end_us // 1000))
    for method in request.methods:
        value = row[method]
        if value is not None and not math.isnan(value):
            setattr(bucket, method, value)
    return bucket


def _aggregated(context: Context, request: TemporalRequest, union: str) -> dict[tuple, list[Any]]:
    sql = entity_sql.bucket_sql(union, request.start_us // 1000, request.period_us // 1000)
    found: dict[tuple, list[Any]] = {}
    for row in _run(context, sql).to_pylist():
        key = (row["city"], row["source"], row["entity"])
        series_list = found.setdefault(key, [])
        if not series_list or series_list[-1].metric != row["metric"]:
            series_list.append(pb.TemporalSeries(metric=row["metric"], unit=row["unit"] or ""))
        series_list[-1].buckets.append(_bucket(row, request))
    return found


def temporal_pages(context: Context, request: TemporalRequest) -> Iterator[Any]:
    """QueryTemporal's answer: the selected entities (without attributes) and their
    series, pages of at most TEMPORAL_PER_PAGE entities, the last one marked."""
    rows, total = select_entities(context, request.selection)
    observed, cells = _references(rows)
    union = entity_sql.readings_union(request, observed, cells)
    series: dict[tuple, list[Any]] = {}
    if union:
        reader = _aggregated if request.period_us else _raw
        series = reader(context, request, union)
    if not rows:
        yield pb.TemporalPage(node=context.node, total=total, last=True)
        return
    for start in range(0, len(rows), TEMPORAL_PER_PAGE):
        page = pb.TemporalPage(
            node=context.node, total=total, last=start + TEMPORAL_PER_PAGE >= len(rows)
        )
        for row in rows[start : start + TEMPORAL_PER_PAGE]:
            entity = entity_message(row, request.selection, context.datasets)
            del entity.attributes[:]
            key = (row["city"], row["dataset"].split("/", 1)[1], row["entity"])
            page.entities.append(pb.TemporalEntity(entity=entity, series=series.get(key, [])))
        yield page


def newest_by_dataset(holdings: dict[tuple[str, str], Any]) -> dict[tuple[str, str], int]:
    """The newest reading (ms) of each dataset the warehouse holds."""
    return {key: held.last_ms for key, held in holdings.items()}
