"""Entity and temporal requests without a warehouse: validation (fields named, bounds),
the scope a caller gets, and the SQL built from them (quoted, restricted). Positions
carried from Observation records to the warehouse rows."""

from __future__ import annotations

import math

import grpc
import pytest

from services.federation.calls import Caller, FederationError
from services.federation.catalog import Datasets
from services.federation.entity_query import (
    DEFAULT_LIMIT,
    validate_entities,
    validate_temporal,
)
from services.federation.entity_sql import entities_sql, readings_union
from services.federation.protos import pb
from services.policy.access import PUBLIC_AUDIENCE
from services.policy.sharing import SharingPolicy
from services.publish.rows import Landed, observations_table
from services.runtime.cities import load_cities
from testkit.entity_world import T0, observations, write_city

DAY_US = 86_400_000_000
PUBLIC = Caller("lyon", PUBLIC_AUDIENCE)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Datasets:
    directory = tmp_path_factory.mktemp("cities")
    write_city(directory)
    return Datasets(
        load_cities(directory), SharingPolicy("open", (), "Licence-Ouverte-2.0"), "lyon"
    )


def error_of(call) -> FederationError:
    with pytest.raises(FederationError) as caught:
        call()
    return caught.value


def near(metres: float, lat: float = 45.0) -> pb.GeoFilter:
    return pb.GeoFilter(
        relation=pb.GEO_RELATION_NEAR, point=pb.GeoPoint(lat=lat, lon=4.0), max_distance_m=metres
    )


def group(metric: str = "no2", op: int = pb.COMPARISON_GT, value: float = 1.0):
    return pb.ConditionGroup(all_of=[pb.ValueCondition(metric=metric, op=op, value=value)])


INVALID = {
    "limit": {"limit": 1001},
    "offset": {"offset": 10_001},
    "cities": {"cities": ["LYON"]},
    "entity_types": {"entity_types": ["1abc"]},
    "entities": {"entities": [pb.EntityRef(city="lyon", entity="x")] * 1001},
    "entities.city": {"entities": [pb.EntityRef(city="", entity="x")]},
    "entities.entity": {"entities": [pb.EntityRef(city="lyon", entity="a\nb")]},
    "entity_pattern": {"entity_pattern": "x" * 257},
    "metrics": {"metrics": ["x"] * 51},
    "any_of": {"any_of": [group()] * 11},
    "any_of.all_of": {"any_of": [pb.ConditionGroup()]},
    "any_of.metric": {"any_of": [group(metric="NO2")]},
    "any_of.op": {"any_of": [group(op=pb.COMPARISON_UNSPECIFIED)]},
    "any_of.value": {"any_of": [group(value=math.inf)]},
    "geo.relation": {"geo": pb.GeoFilter(point=pb.GeoPoint(lat=1, lon=1))},
    "geo.point.lat": {"geo": near(10, lat=-91)},
    "geo.max_distance_m": {"geo": near(0.5)},
    "geo.ring": {"geo": pb.GeoFilter(relation=pb.GEO_RELATION_WITHIN)},
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_fields_are_named(datasets: Datasets, name: str) -> None:
    request = pb.EntityQuery(**INVALID[name])
    error = error_of(lambda: validate_entities(request, PUBLIC, datasets))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith(f"{name}:"), error.message


def test_defaults_and_a_closed_ring(datasets: Datasets) -> None:
    selection = validate_entities(pb.EntityQuery(), PUBLIC, datasets)
    assert (selection.limit, selection.offset, selection.count) == (DEFAULT_LIMIT, 0, False)
    square = [(45.0, 4.0), (45.0, 4.1), (45.1, 4.1), (45.1, 4.0), (45.0, 4.0)]
    ring = [pb.GeoPoint(lat=a, lon=b) for a, b in square]
    within = pb.GeoFilter(relation=pb.GEO_RELATION_WITHIN, ring=ring)
    selection = validate_entities(pb.EntityQuery(geo=within), PUBLIC, datasets)
    assert selection.geo is not None and len(selection.geo.ring) == 4  # closing point dropped
    assert selection.geo.ring[1] == (4.1, 45.0)  # (lon, lat) as pointInPolygon takes them


def test_scope_follows_the_entity_rule(datasets: Datasets) -> None:
    public = validate_entities(pb.EntityQuery(), PUBLIC, datasets).scope
    assert public.sources == (("lyon", "air"), ("lyon", "parking"))
    assert public.aggregate_cities == ("lyon",)
    paris = validate_entities(pb.EntityQuery(), Caller("paris"), datasets).scope
    assert paris.sources == (("lyon", "air"), ("lyon", "meters"), ("lyon", "parking"))
    node = validate_entities(pb.EntityQuery(), Caller("lyon"), datasets).scope
    assert ("lyon", "meters-open") in node.sources and ("lyon", "water") not in node.sources
    error = error_of(
        lambda: validate_entities(pb.EntityQuery(datasets=["lyon/meters-open"]), PUBLIC, datasets)
    )
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and "personal" in error.message
    error = error_of(
        lambda: validate_entities(pb.EntityQuery(datasets=["lyon/water"]), PUBLIC, datasets)
    )
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    other_city = validate_entities(pb.EntityQuery(cities=["paris"]), PUBLIC, datasets)
    assert other_city.empty


def test_sql_quotes_text_and_reads_only_the_scope(datasets: Datasets) -> None:
    request = pb.EntityQuery(
        entities=[pb.EntityRef(city="lyon", entity="a'b\\c")],
        entity_pattern="x'); DROP TABLE observations; --",
        any_of=[group(value=-1e300)],
        geo=near(100),
    )
    sql = entities_sql(validate_entities(request, PUBLIC, datasets))
    assert "'a\\'b\\\\c'" in sql
    assert "match(entity, '^(?:x\\'); DROP TABLE observations; --)$')" in sql
    assert "toFloat64(-1e+300)" in sql
    assert "meters" not in sql and "water" not in sql  # what the caller may not read
    assert "(city, source) IN (('lyon', 'air'), ('lyon', 'parking'))" in sql


def test_temporal_ranges_and_bounds(datasets: Datasets) -> None:
    def temporal(**fields):
        request = pb.TemporalQuery(entities=pb.EntityQuery(), **fields)
        return request

    newest = T0 + 10 * DAY_US
    held = {("lyon", "air"): newest // 1000}
    raw = validate_temporal(temporal(), PUBLIC, datasets, held)
    assert (raw.end_us - raw.start_us, raw.period_us) == (31 * DAY_US, 0)
    assert raw.end_us > newest
    daily = temporal(methods=[pb.AGGREGATE_METHOD_MAX])
    daily.period.FromSeconds(86_400)
    daily.start.FromMicroseconds(T0)
    answer = validate_temporal(daily, PUBLIC, datasets, held)
    assert answer.end_us - answer.start_us == 366 * DAY_US and answer.methods == ("max",)
    every = validate_temporal(temporal(), PUBLIC, datasets, held).methods
    assert every == ("sum", "avg", "min", "max")
    faults = {
        "period": lambda r: r.period.FromSeconds(1) or r.start.FromMicroseconds(T0),
        "last_n": lambda r: r.period.FromSeconds(3600) or setattr(r, "last_n", 3),
        "methods": lambda r: r.methods.append(pb.AGGREGATE_METHOD_SUM),
        "start": lambda r: r.start.FromSeconds(100),
    }
    for name, spoil in faults.items():
        request = temporal()
        spoil(request)
        error = error_of(lambda r=request: validate_temporal(r, PUBLIC, datasets, held))
        assert error.message.startswith(f"{name}:"), (name, error.message)


def test_an_open_range_ends_at_the_newest_reading_the_caller_may_read(datasets: Datasets) -> None:
    """The newest reading of an internal or personal dataset never shows through the
    default range (the buckets' alignment would give its time away)."""
    held = {
        ("lyon", "air"): T0 // 1000,
        ("lyon", "water"): (T0 + 5 * DAY_US) // 1000,
        ("lyon", "meters-open"): (T0 + 7 * DAY_US) // 1000,
    }
    request = pb.TemporalQuery(entities=pb.EntityQuery())
    request.period.FromSeconds(3600)
    for caller in (PUBLIC, Caller("paris")):
        answer = validate_temporal(request, caller, datasets, held)
        assert answer.end_us == T0 + 1000
    assert (
        validate_temporal(request, Caller("lyon"), datasets, held).end_us == T0 + 7 * DAY_US + 1000
    )


def test_readings_of_energy_cells_only_for_their_metrics(datasets: Datasets) -> None:
    request = pb.TemporalQuery(entities=pb.EntityQuery(metrics=["no2"]))
    question = validate_temporal(request, PUBLIC, datasets, {})
    cells = [("lyon", "z1", "electricity", "*", "PT1H")]
    assert "energy_aggregates_released" not in readings_union(question, [], cells)
    union = readings_union(question, [("lyon", "air", "air-1")], cells)
    assert "('lyon', 'air', 'air-1')" in union and "metric IN ('no2')" in union


def test_positions_reach_the_warehouse_rows() -> None:
    records = observations(hours=3)
    table = observations_table([Landed(r, "t", 0, i) for i, r in enumerate(records)])
    rows = table.select(["entity", "lat", "lon"]).to_pylist()
    by_entity = {r["entity"]: (r["lat"], r["lon"]) for r in rows}
    assert by_entity["air-3"] == (45.7, 4.9)
    assert by_entity["P-nowhere"] == (None, None)
    assert len(rows) == 3 * len(records)
