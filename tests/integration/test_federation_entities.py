"""QueryEntities and QueryTemporal on the real federation server (mutual TLS) over a
real chDB warehouse (testkit/entity_world.py: Lyon's open stations and car parks,
household meters it marked open but declared personal, meters shared with paris,
internal water meters, released energy aggregates).

The attacks come first: what the public (the common API relaying ``public``), a
partner the city does not name, or a curious client can get out of entity queries.
Then answers are compared with direct warehouse queries.
"""

from __future__ import annotations

import math

import grpc
import pytest

from services.federation.protos import pb
from services.policy.access import PUBLIC_AUDIENCE
from testkit.entity_world import HOUR_US, HOURS, T0, FederationWorld, value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PERSONAL = {"m-open-1", "m-open-2", "m-shared-1", "w-1"}
OPEN_KEYS = {"air-1", "air-2", "air-3", "P-Bellecour", "P:Part Dieu/2", "P-nowhere"}
MEETING_POINT = (45.7600, 4.8400)  # a station, a personal meter and a water meter share it


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    built = FederationWorld(tmp_path_factory.mktemp("entities"))
    yield built
    built.close()


def entities(client, **fields) -> list:
    query = fields.pop("query", None) or pb.EntityQuery(**fields)
    return [e for page in client.entities(query) for e in page.entities]


def keys(found) -> set[str]:
    return {e.entity for e in found}


def near(lat: float, lon: float, metres: float) -> pb.GeoFilter:
    return pb.GeoFilter(
        relation=pb.GEO_RELATION_NEAR, point=pb.GeoPoint(lat=lat, lon=lon), max_distance_m=metres
    )


def temporal_keys(client, query: pb.EntityQuery) -> set[str]:
    request = pb.TemporalQuery(entities=query, last_n=5)
    request.entities.limit = min(query.limit, 100)  # a temporal call's bound
    found = set()
    for page in client.temporal(request):
        for item in page.entities:
            found.add(item.entity.entity)
            assert all(len(s.times) <= 5 for s in item.series)
    return found


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        list(call())
    return caught.value


# -- attacks -----------------------------------------------------------------------------


def personal_probes() -> list[pb.EntityQuery]:
    """Every way to name a personal meter: by type, id, pattern, place, metric, value."""
    return [
        pb.EntityQuery(limit=1000),
        pb.EntityQuery(entity_types=["ElectricityMeter", "WaterMeter"], limit=1000),
        pb.EntityQuery(
            entities=[pb.EntityRef(city="lyon", entity=k) for k in sorted(PERSONAL)], limit=1000
        ),
        pb.EntityQuery(entity_pattern="m-.*|w-.*", limit=1000),
        pb.EntityQuery(entity_pattern=".*", limit=1000),
        pb.EntityQuery(geo=near(*MEETING_POINT, 50), limit=1000),
        pb.EntityQuery(metrics=["active_energy_import", "water_volume"], limit=1000),
        pb.EntityQuery(
            any_of=[
                pb.ConditionGroup(
                    all_of=[
                        pb.ValueCondition(
                            metric="active_energy_import", op=pb.COMPARISON_GE, value=-1e9
                        )
                    ]
                )
            ],
            limit=1000,
        ),
    ]


def test_public_never_gets_entities_of_a_personal_source_even_one_marked_open(world) -> None:
    with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
        for probe in personal_probes():
            found = keys(entities(public, query=probe))
            assert not found & PERSONAL, probe
            assert not temporal_keys(public, probe) & PERSONAL, probe
        # Asking for the personal dataset by name is refused, with the reason.
        error = refused(lambda: public.entities(pb.EntityQuery(datasets=["lyon/meters-open"])))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "personal" in error.details()
        request = pb.TemporalQuery(entities=pb.EntityQuery(datasets=["lyon/meters-open"]))
        assert refused(lambda: public.temporal(request)).code() == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # The open stations at the same place are there: the filter is on the source.
        assert keys(entities(public, geo=near(*MEETING_POINT, 50))) == {"air-1"}


def test_a_partner_gets_only_what_its_city_shares_with_it_never_another_partners(world) -> None:
    with world.client("paris") as paris:
        seen = set()
        for probe in personal_probes():
            seen |= keys(entities(paris, query=probe))
            seen |= temporal_keys(paris, probe)
    assert seen & PERSONAL == {"m-shared-1"}  # the meters shared with paris, not the open ones
    with world.client("lyon", on_behalf_of="paris") as relay:
        assert keys(entities(relay, entity_types=["ElectricityMeter"])) == {"m-shared-1"}
    for identity, relayed in (("nice", None), ("lyon", "nice"), ("nice", "paris")):
        with world.client(identity, on_behalf_of=relayed) as other:
            for probe in personal_probes():
                assert not keys(entities(other, query=probe)) & PERSONAL, (identity, relayed)
                assert not temporal_keys(other, probe) & PERSONAL, (identity, relayed)
            error = refused(lambda c=other: c.entities(pb.EntityQuery(datasets=["lyon/meters"])))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_internal_datasets_never_appear_not_even_to_the_node_itself(world) -> None:
    with world.client("lyon") as operator:
        everything = entities(operator, limit=1000)
        assert "w-1" not in keys(everything)
        assert not any(e.dataset == "lyon/water" for e in everything)
        # The node sees its personal sources (open or shared) at entity level.
        assert {"m-open-1", "m-open-2", "m-shared-1"} <= keys(everything)
        error = refused(lambda: operator.entities(pb.EntityQuery(datasets=["lyon/water"])))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def condition(metric: str, op: int, number: float) -> pb.ConditionGroup:
    return pb.ConditionGroup(all_of=[pb.ValueCondition(metric=metric, op=op, value=number)])


def test_a_condition_on_a_hidden_metric_tells_nothing(world) -> None:
    """leak_index exists only in internal water: the answer is the one for a metric
    that does not exist, alone, negated, or ORed with a visible condition."""
    with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
        for op in (pb.COMPARISON_GE, pb.COMPARISON_LT, pb.COMPARISON_NE):
            hidden = entities(public, any_of=[condition("leak_index", op, 0)], count=True)
            absent = entities(public, any_of=[condition("no_such_metric", op, 0)], count=True)
            assert hidden == absent == []
        visible = condition("no2", pb.COMPARISON_GE, 0)
        with_hidden = entities(
            public, any_of=[visible, condition("leak_index", pb.COMPARISON_GE, 0)]
        )
        with_absent = entities(
            public, any_of=[visible, condition("no_such_metric", pb.COMPARISON_GE, 0)]
        )
        assert with_hidden == with_absent and keys(with_hidden) == {"air-1", "air-2", "air-3"}
        # Counting is no side door either.
        pages = list(public.entities(pb.EntityQuery(metrics=["leak_index"], count=True)))
        assert pages[-1].total == 0


def test_pattern_abuse_is_refused_or_bounded(world) -> None:
    with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
        cases = {
            "a" * 257: "at most 256",
            "(a)\\1": "RE2",
            "(?=a)a": "RE2",
            "(": "RE2",
            "(a{1000}){1000}": "RE2",
            "a\x00": "control",
        }
        for pattern, said in cases.items():
            error = refused(lambda p=pattern: public.entities(pb.EntityQuery(entity_pattern=p)))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, pattern
            assert error.details().startswith("entity_pattern") and said in error.details()
        # Nested quantifiers: linear time in RE2, an answer rather than a hung node.
        assert entities(public, entity_pattern="(a+)+$") == []
        # A pattern is matched in full, never as a substring.
        assert keys(entities(public, entity_pattern="air")) == set()
        assert keys(entities(public, entity_pattern="air-[12]")) == {"air-1", "air-2"}
        # Quotes and backslashes are data, never SQL.
        for injection in ("x' OR 1=1 --", "\\\\' OR 1=1 --", "\\'.*"):
            assert entities(public, entity_pattern=injection) == [], injection
        refs = [pb.EntityRef(city="lyon", entity="' OR ''='")]
        assert entities(public, entities=refs) == []


def test_invalid_requests_name_their_field(world) -> None:
    ring = [pb.GeoPoint(lat=45.0, lon=4.0), pb.GeoPoint(lat=45.1, lon=4.0)]
    cases = {
        "limit": pb.EntityQuery(limit=1001),
        "offset": pb.EntityQuery(offset=10_001),
        "cities": pb.EntityQuery(cities=["Lyon!"]),
        "entity_types": pb.EntityQuery(entity_types=["no spaces"]),
        "metrics": pb.EntityQuery(metrics=["NO2;"]),
        "any_of.op": pb.EntityQuery(
            any_of=[pb.ConditionGroup(all_of=[pb.ValueCondition(metric="no2")])]
        ),
        "any_of.value": pb.EntityQuery(any_of=[condition("no2", pb.COMPARISON_GT, math.nan)]),
        "geo.relation": pb.EntityQuery(geo=pb.GeoFilter()),
        "geo.max_distance_m": pb.EntityQuery(geo=near(45.0, 4.0, 500_000)),
        "geo.point.lat": pb.EntityQuery(geo=near(95.0, 4.0, 10)),
        "geo.ring": pb.EntityQuery(geo=pb.GeoFilter(relation=pb.GEO_RELATION_WITHIN, ring=ring)),
        "entities.entity": pb.EntityQuery(entities=[pb.EntityRef(city="lyon")]),
    }
    with world.client("nice") as client:
        for name, query in cases.items():
            error = refused(lambda q=query: client.entities(q))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert error.details().startswith(name), (name, error.details())
        temporal_cases = {
            "entities": pb.TemporalQuery(),
            "end": pb.TemporalQuery(entities=pb.EntityQuery()),
            "last_n": pb.TemporalQuery(entities=pb.EntityQuery(), last_n=10_001),
            "period": pb.TemporalQuery(entities=pb.EntityQuery()),
            "entities.limit": pb.TemporalQuery(entities=pb.EntityQuery(limit=101)),
        }
        temporal_cases["end"].start.FromMicroseconds(T0)
        temporal_cases["end"].end.FromMicroseconds(T0 + 40 * 86_400_000_000)
        temporal_cases["period"].period.FromMilliseconds(500)
        for name, request in temporal_cases.items():
            error = refused(lambda r=request: client.temporal(r))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert error.details().startswith(name), (name, error.details())


# -- answers equal the warehouse ------------------------------------------------------------


def direct_latest(world, sources: tuple[str, ...]) -> dict[tuple[str, str], tuple[float, int]]:
    """(entity, metric) -> (latest value, its time in ms), straight from the warehouse."""
    listed = ", ".join(f"'{s}'" for s in sources)
    table = world.warehouse.query_arrow(
        "SELECT entity, metric, value, toUnixTimestamp64Milli(ts) AS ms FROM observations "
        f"WHERE source IN ({listed}) ORDER BY ts DESC LIMIT 1 BY entity, metric"
    )
    return {(r["entity"], r["metric"]): (r["value"], r["ms"]) for r in table.to_pylist()}


def test_latest_values_positions_and_types_equal_the_warehouse(world) -> None:
    with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
        found = [e for e in entities(public, limit=1000) if e.dataset != "lyon/energy-aggregates"]
    expected = direct_latest(world, ("air", "parking"))
    served = {
        (e.entity, a.metric): (a.value, a.observed_at.seconds * 1000)
        for e in found
        for a in e.attributes
    }
    assert served == expected
    assert keys(found) == OPEN_KEYS
    by_key = {e.entity: e for e in found}
    assert (by_key["air-3"].position.lat, by_key["air-3"].position.lon) == (45.7, 4.9)
    assert not by_key["P-nowhere"].HasField("position")
    assert by_key["air-2"].entity_type == "AirQualityObserved"
    assert by_key["air-2"].licence == "ODbL-1.0" and by_key["air-2"].dataset == "lyon/air"
    assert [a.metric for a in by_key["air-2"].attributes] == ["no2", "pm10"]
    last_hour = HOURS - 1
    assert by_key["air-1"].attributes[0].value == value("air", "air-1", "no2", last_hour)


def test_order_paging_count_and_filters(world) -> None:
    with world.client("nice") as client:
        whole = entities(client, limit=1000)
        order = [(e.city, e.entity_type, e.entity) for e in whole]
        assert order == sorted(order)
        pages = [entities(client, limit=3, offset=o) for o in range(0, len(whole), 3)]
        assert [e for page in pages for e in page] == whole
        answer = list(client.entities(pb.EntityQuery(limit=2, offset=2, count=True)))
        assert answer[-1].total == len(whole) and answer[-1].last
        past = list(client.entities(pb.EntityQuery(offset=500, count=True)))
        assert past[-1].total == len(whole) and not past[-1].entities
        types = entities(client, entity_types=["OffStreetParking"])
        assert keys(types) == {"P-Bellecour", "P:Part Dieu/2", "P-nowhere"}
        assert keys(entities(client, entities=[pb.EntityRef(city="lyon", entity="P:Part Dieu/2")]))
        only_pm10 = entities(client, metrics=["pm10"])
        assert keys(only_pm10) == {"air-2"} and [a.metric for a in only_pm10[0].attributes] == [
            "pm10"
        ]
        latest = value("air", "air-1", "no2", HOURS - 1)
        high = entities(client, any_of=[condition("no2", pb.COMPARISON_EQ, latest)])
        assert keys(high) == {"air-1"}
        both = pb.ConditionGroup(
            all_of=[
                pb.ValueCondition(metric="no2", op=pb.COMPARISON_GE, value=0),
                pb.ValueCondition(metric="pm10", op=pb.COMPARISON_GE, value=0),
            ]
        )
        assert keys(entities(client, any_of=[both])) == {"air-2"}
        # Bellecour is ~800 m from air-1; Part-Dieu ~1.5 km.
        assert keys(entities(client, geo=near(*MEETING_POINT, 1000))) == {"air-1", "P-Bellecour"}
        square = [
            pb.GeoPoint(lat=45.74, lon=4.82),
            pb.GeoPoint(lat=45.74, lon=4.87),
            pb.GeoPoint(lat=45.77, lon=4.87),
            pb.GeoPoint(lat=45.77, lon=4.82),
        ]
        within = pb.GeoFilter(relation=pb.GEO_RELATION_WITHIN, ring=square)
        assert keys(entities(client, geo=within)) == {
            "air-1",
            "air-2",
            "P-Bellecour",
            "P:Part Dieu/2",
        }
        assert entities(client, cities=["paris"]) == []


def test_energy_aggregates_are_entities_with_suppressed_values_absent(world) -> None:
    with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
        cells = entities(public, entity_types=["CitePlusEnergyAggregate"])
    assert [c.entity for c in cells] == ["z1~electricity~*~PT1H", "z4~electricity~*~PT1H"]
    shown, hidden = cells
    last_start = T0 + (HOURS - 1) * HOUR_US
    assert {a.metric: a.value for a in shown.attributes} == {
        "energy_kwh": 100.0 + HOURS - 1,
        "meter_count": 40.0,
        "peak_kw": 12.5,
    }
    assert all(a.window_start.seconds * 1_000_000 == last_start for a in shown.attributes)
    assert all(a.observed_at.seconds * 1_000_000 == last_start + HOUR_US for a in shown.attributes)
    assert (shown.carrier, shown.sector, shown.granularity) == ("electricity", "*", "PT1H")
    assert all(
        a.suppressed and not a.HasField("value") and a.suppression_reason == "too-few-meters"
        for a in hidden.attributes
    )


# -- temporal -------------------------------------------------------------------------------


def one(city: str, key: str, **fields) -> pb.EntityQuery:
    return pb.EntityQuery(entities=[pb.EntityRef(city=city, entity=key)], **fields)


def test_raw_and_last_n_readings_equal_the_warehouse(world) -> None:
    request = pb.TemporalQuery(entities=one("lyon", "air-2"))
    request.start.FromMicroseconds(T0 + 3 * HOUR_US)
    request.end.FromMicroseconds(T0 + 10 * HOUR_US)
    with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
        [page] = list(public.temporal(request))
        request.last_n = 2
        [last] = list(public.temporal(request))
    [item] = page.entities
    assert item.entity.entity == "air-2" and not item.entity.attributes
    series = {s.metric: s for s in item.series}
    assert sorted(series) == ["no2", "pm10"]
    expected = [value("air", "air-2", "no2", h) for h in range(3, 10)]
    assert list(series["no2"].values) == expected
    assert [t.seconds * 1_000_000 for t in series["no2"].times] == [
        T0 + h * HOUR_US for h in range(3, 10)
    ]
    direct = world.warehouse.query_arrow(
        "SELECT value FROM observations WHERE entity = 'air-2' AND metric = 'pm10' "
        f"AND ts >= fromUnixTimestamp64Micro({T0 + 3 * HOUR_US}) "
        f"AND ts < fromUnixTimestamp64Micro({T0 + 10 * HOUR_US}) ORDER BY ts"
    )
    assert list(series["pm10"].values) == direct.column("value").to_pylist()
    assert list(last.entities[0].series[0].values) == expected[-2:]


def test_aggregated_readings_and_suppressed_windows(world) -> None:
    request = pb.TemporalQuery(
        entities=pb.EntityQuery(
            entities=[
                pb.EntityRef(city="lyon", entity="air-1"),
                pb.EntityRef(city="lyon", entity="z4~electricity~*~PT1H"),
            ]
        ),
        methods=[pb.AGGREGATE_METHOD_SUM, pb.AGGREGATE_METHOD_MAX],
    )
    request.start.FromMicroseconds(T0)
    request.end.FromMicroseconds(T0 + HOURS * HOUR_US)
    request.period.FromSeconds(86_400)
    with world.client("paris") as client:
        pages = list(client.temporal(request))
        raw = pb.TemporalQuery(entities=one("lyon", "z4~electricity~*~PT1H"), last_n=3)
        [cells] = list(client.temporal(raw))
    found = {e.entity.entity: e for p in pages for e in p.entities}
    [no2] = found["air-1"].series
    day = [value("air", "air-1", "no2", h) for h in range(24)]
    assert [(b.sum, b.max, b.readings) for b in no2.buckets] == [(sum(day), max(day), 24)] * 2
    assert not any(b.HasField("avg") or b.HasField("min") for b in no2.buckets)
    assert no2.buckets[0].start.seconds * 1_000_000 == T0
    # Suppressed windows: no value to aggregate, counted as no reading.
    for series in found["z4~electricity~*~PT1H"].series:
        assert all(not b.HasField("sum") and b.readings == 0 for b in series.buckets)
    # Raw, they are there with NaN and flagged.
    energy = next(s for s in cells.entities[0].series if s.metric == "energy_kwh")
    assert len(energy.times) == 3 and all(math.isnan(v) for v in energy.values)
    assert list(energy.suppressed) == [True] * 3


def test_latest_values_and_readings_by_entity_follow_corrections(world) -> None:
    """observations_latest (migration 017) keeps, per entity and metric, the newest
    reading; a correction (version + 1) of it replaces it, one of an older reading does
    not. A city no dataset names, so that the other tests' answers stay as they are."""
    from services.publish.rows import Landed, observations_table
    from testkit.entity_world import observations

    [base] = [r for r in observations(hours=3) if r["entity_pseudonym"] == "air-3"]
    first = {**base, "city": "bron", "values": [1.0, 2.0, 3.0]}
    fix_latest = {**first, "start": T0 + 2 * HOUR_US, "values": [30.0]}
    fix_latest.update(versions=[1], replaced=[3.0])
    fix_older = {**first, "values": [10.0], "versions": [1], "replaced": [1.0]}

    def latest() -> tuple[float, int]:
        table = world.warehouse.query_arrow(
            "SELECT value, toUnixTimestamp64Micro(last_ts) AS at FROM observations_latest "
            "FINAL WHERE city = 'bron'"
        )
        [row] = table.to_pylist()
        return row["value"], row["at"]

    for offset, record in enumerate((first, fix_latest, fix_older)):
        table = observations_table([Landed(record, "t", 0, 10_000 + offset)])
        world.warehouse.insert_arrow("observations", table)
        expected = 3.0 if record is first else 30.0
        assert latest() == (expected, T0 + 2 * HOUR_US)
    # Readings by entity (migration 018): each reading once, at its latest version.
    history = world.warehouse.query_arrow(
        "SELECT value FROM readings_by_entity FINAL WHERE city = 'bron' ORDER BY ts"
    )
    assert history.column("value").to_pylist() == [10.0, 2.0, 30.0]


def test_a_withheld_window_says_nothing_even_if_it_landed_with_its_values(world) -> None:
    """Attack: the release writer empties a withheld window's values, and the entity
    view drops them even when a row still carries them; the temporal readings took
    the row's values as they were (raw, and summed per period). A withheld row that
    kept its values (an older writer, a hand-made backfill) must give nothing either
    way. Gas windows, removed at the end, so that the other tests' answers stay."""
    from services.publish.rows import Landed, released_table
    from testkit.entity_world import released

    leaky = [
        {**cell, "carrier": "gas", "energy_kwh": 7.0, "meter_count": 3, "peak_kw": 2.0}
        for cell in released(hours=3)
        if cell["zone"] == "z4"
    ]
    rows = [Landed(r, "leak", 0, 50_000 + i) for i, r in enumerate(leaky)]
    world.warehouse.insert_arrow("energy_aggregates_released", released_table(rows))
    cell = one("lyon", "z4~gas~*~PT1H")
    raw = pb.TemporalQuery(entities=cell, last_n=3)
    per_day = pb.TemporalQuery(entities=cell, methods=[pb.AGGREGATE_METHOD_SUM])
    per_day.start.FromMicroseconds(T0)
    per_day.end.FromMicroseconds(T0 + 3 * HOUR_US)
    per_day.period.FromSeconds(86_400)
    try:
        with world.client("lyon", on_behalf_of=PUBLIC_AUDIENCE) as public:
            [found] = entities(public, query=cell)
            [raw_page] = list(public.temporal(raw))
            [day_page] = list(public.temporal(per_day))
    finally:
        world.warehouse.command(
            "ALTER TABLE energy_aggregates_released DELETE WHERE carrier = 'gas' "
            "SETTINGS mutations_sync = 2"
        )
    assert all(a.suppressed and not a.HasField("value") for a in found.attributes)
    series = raw_page.entities[0].series
    assert series and all(
        all(math.isnan(v) for v in s.values) and all(s.suppressed) for s in series
    )
    buckets = [b for s in day_page.entities[0].series for b in s.buckets]
    assert buckets and all(not b.HasField("sum") and b.readings == 0 for b in buckets)
