"""Checked parameters as the federation API's EntityQuery / TemporalQuery."""

from __future__ import annotations

from typing import Any

from services.api.ngsi.params import Page, Selection
from services.api.ngsi.temporal_params import TemporalParams
from services.federation.protos import pb

COMPARISONS = {
    "==": pb.COMPARISON_EQ,
    "!=": pb.COMPARISON_NE,
    "<": pb.COMPARISON_LT,
    "<=": pb.COMPARISON_LE,
    ">": pb.COMPARISON_GT,
    ">=": pb.COMPARISON_GE,
}
METHODS = {
    "sum": pb.AGGREGATE_METHOD_SUM,
    "avg": pb.AGGREGATE_METHOD_AVG,
    "min": pb.AGGREGATE_METHOD_MIN,
    "max": pb.AGGREGATE_METHOD_MAX,
}


def entity_query(selection: Selection, page: Page) -> Any:
    query = pb.EntityQuery(
        entity_types=list(selection.types),
        entity_pattern=selection.key_pattern,
        metrics=list(selection.metrics),
        limit=page.limit,
        offset=page.offset,
        count=page.count,
    )
    cities = set(selection.cities) | {i.city for i in selection.ids}
    if selection.ids:
        query.entities.extend(pb.EntityRef(city=i.city, entity=i.key) for i in selection.ids)
        if not selection.types:
            query.entity_types.extend(sorted({i.entity_type for i in selection.ids}))
    query.cities.extend(sorted(cities))
    for group in selection.q or ():
        query.any_of.add().all_of.extend(
            pb.ValueCondition(metric=c.metric, op=COMPARISONS[c.op], value=c.value) for c in group
        )
    _geo(query, selection)
    return query


def _geo(query: Any, selection: Selection) -> None:
    geo = selection.geo
    if geo is None:
        return
    if geo.relation == "near" and geo.point:
        query.geo.relation = pb.GEO_RELATION_NEAR
        query.geo.point.lon, query.geo.point.lat = geo.point
        query.geo.max_distance_m = geo.max_distance_m
        query.geo.min_distance_m = geo.min_distance_m
    else:
        query.geo.relation = pb.GEO_RELATION_WITHIN
        query.geo.ring.extend(pb.GeoPoint(lon=lon, lat=lat) for lon, lat in geo.ring)


def temporal_query(params: TemporalParams, selection: Selection, page: Page) -> Any:
    query = pb.TemporalQuery(entities=entity_query(selection, page), last_n=params.last_n)
    if params.start:
        query.start.FromDatetime(params.start)
    if params.end:
        query.end.FromDatetime(params.end)
    if params.mode == "aggregatedValues":
        query.period.FromSeconds(params.period_s)
        query.methods.extend(METHODS[m] for m in params.methods)
    return query
