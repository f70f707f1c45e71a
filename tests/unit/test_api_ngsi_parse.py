"""Pure parsing of the NGSI-LD door: ids, q, geo, parameters and temporal parameters,
hostile inputs included (every refusal is an NgsiError with a 4xx status)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from services.api.ids import build_id, parse_id
from services.api.ngsi.geo import parse_geo
from services.api.ngsi.names import load_names
from services.api.ngsi.params import entity_params
from services.api.ngsi.problems import NgsiError
from services.api.ngsi.q import MAX_GROUPS, Condition, parse_q
from services.api.ngsi.temporal_params import TEMPORAL_PARAMS, parse_duration, temporal_params

NAMES = load_names()


def metrics_of(attribute: str) -> tuple[str, ...]:
    return {"no2": ("no2",), "pm10": ("pm10",), "intensity": ("a", "b")}.get(attribute, ())


@given(
    st.sampled_from(["AirQualityObserved", "CitePlusEnergyAggregate"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.text(min_size=1, max_size=40),
)
def test_ids_round_trip_whatever_the_key(entity_type, city, key):
    built = build_id(entity_type, city, key)
    parsed = parse_id(built)
    assert parsed is not None and (parsed.entity_type, parsed.city, parsed.key) == (
        entity_type,
        city,
        key,
    )
    assert built.count(":") == 4


def test_ids_that_are_not_ours():
    assert parse_id("urn:ngsi-ld:AirQualityObserved:lyon:P:Bellecour%2F2").key == "P:Bellecour/2"
    for value in (
        "urn:ngsi-ld:AirQualityObserved:lyon:",
        "urn:ngsi-ld:AirQualityObserved:Lyon:x",
        "urn:ngsi-ld:Air Quality:lyon:x",
        "urn:ngsi-ld:T:lyon:%zz",
        "urn:ngsi-ld:T:lyon:a b",
        "urn:ngsi-ld:T:lyon:%ff%fe",
        "https://example.org/x",
        "urn:ngsi-ld:T:lyon:" + "x" * 5000,
    ):
        assert parse_id(value) is None, value


def test_q_to_disjunctive_normal_form():
    assert parse_q("no2>40", metrics_of) == ((Condition("no2", ">", 40.0),),)
    assert parse_q("no2==10..20;pm10!=3,4", metrics_of) == (
        (
            Condition("no2", "<=", 20.0),
            Condition("no2", ">=", 10.0),
            Condition("pm10", "!=", 3.0),
            Condition("pm10", "!=", 4.0),
        ),
    )
    assert parse_q("(no2<1|no2>9);pm10==2", metrics_of) == (
        (Condition("no2", "<", 1.0), Condition("pm10", "==", 2.0)),
        (Condition("no2", ">", 9.0), Condition("pm10", "==", 2.0)),
    )
    assert parse_q("no2!=5..6", metrics_of) == (
        (Condition("no2", "<", 5.0),),
        (Condition("no2", ">", 6.0),),
    )
    # an attribute two metrics carry: either; an unknown attribute: nothing
    assert len(parse_q("intensity>1", metrics_of)) == 2
    assert parse_q("unknown>1", metrics_of) == ()
    assert parse_q("unknown>1|no2>1", metrics_of) == ((Condition("no2", ">", 1.0),),)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no2",
        "no2>",
        "no2>abc",
        'no2=="x"',
        "no2~=x",
        "no2!~=x",
        "no2.value>1",
        "no2[a]>1",
        "(no2>1",
        "no2>1)",
        "no2>1;;pm10<2",
        "no2==2026-01-01T00:00:00Z",
        "no2>1e400",
        "no2==5..1",
        "no2>1..2",
        "no2<1,2",
        "no2==1..2..3",
        "é>1",
        "(" * 40 + "no2>1" + ")" * 40,
        "no2>1" + "|no2>1" * 1000,
        ";".join(f"(no2=={i}|pm10=={i})" for i in range(10)),
    ],
)
def test_q_refusals_say_what(text):
    with pytest.raises(NgsiError) as refused:
        parse_q(text, metrics_of)
    assert refused.value.status == 400 and refused.value.detail


def test_q_expansion_is_bounded_before_it_is_computed():
    text = ";".join(f"(no2=={i}|no2=={i + 100})" for i in range(40))
    with pytest.raises(NgsiError, match=str(MAX_GROUPS)):
        parse_q(text, metrics_of)


def test_geo():
    near = parse_geo("near;maxDistance==500", "Point", "[4.83, 45.76]", None)
    assert near.point == (4.83, 45.76) and near.max_distance_m == 500.0
    assert near.min_distance_m == 0.0
    ring = parse_geo("within", "Polygon", "[[[4.8,45.7],[4.9,45.7],[4.9,45.8]]]", "location")
    assert ring.ring[0] == ring.ring[-1] and len(ring.ring) == 4
    assert parse_geo(None, None, None, None) is None


@pytest.mark.parametrize(
    "georel,geometry,coordinates,geoproperty,status",
    [
        ("near;maxDistance==500", "Point", "[45.76, 4.83, 1]", None, 400),
        ("near;maxDistance==500", "Point", "[200, 4]", None, 400),
        ("near;maxDistance==500", "Polygon", "[[[1,2],[2,3],[3,1]]]", None, 400),
        ("near;maxDistance==-1", "Point", "[4, 45]", None, 400),
        ("near;maxDistance==0", "Point", "[4, 45]", None, 400),
        ("near;maxDistance==100001", "Point", "[4, 45]", None, 400),
        ("near;maxDistance==1e999", "Point", "[4, 45]", None, 400),
        ("near;minDistance==9;maxDistance==5", "Point", "[4, 45]", None, 400),
        ("near;maxDistance==5;maxDistance==6", "Point", "[4, 45]", None, 400),
        ("near", "Point", "[4, 45]", None, 400),
        ("near;maxDistance==5", "Point", "[NaN, 45]", None, 400),
        ("near;maxDistance==5", "Point", "[true, 45]", None, 400),
        ("near;maxDistance==5", "Point", "[4, 45]", "position", 400),
        ("within", "Point", "[4, 45]", None, 400),
        ("within", "Polygon", "[[[1,2],[1,2],[1,2]]]", None, 400),
        ("within", "Polygon", "[[[1,2],[2,3],[3,1]],[[1,2],[2,3],[3,1]]]", None, 400),
        ("intersects", "Polygon", "[[[1,2],[2,3],[3,1]]]", None, 422),
        ("touches", "Point", "[4, 45]", None, 400),
        (None, "Point", "[4, 45]", None, 400),
        ("near;maxDistance==5", None, None, None, 400),
    ],
)
def test_geo_refusals(georel, geometry, coordinates, geoproperty, status):
    with pytest.raises(NgsiError) as refused:
        parse_geo(georel, geometry, coordinates, geoproperty)
    assert refused.value.status == status


def params(**values: str):
    return entity_params(MultiDict(values), NAMES)


def test_entity_parameters():
    got = params(
        type="AirQualityObserved,OffStreetParking",
        attrs="no2,availableSpotNumber",
        q="no2>3",
        limit="7",
        offset="14",
        count="true",
        options="concise",
    )
    assert got.selection.types == ("AirQualityObserved", "OffStreetParking")
    assert got.selection.metrics == ("no2", "parking_available_spots")
    assert (got.page.limit, got.page.offset, got.page.count) == (7, 14, True)
    assert got.format == "concise"
    assert params(options="simplified").format == "keyValues"
    pattern = params(idPattern="urn:ngsi-ld:AirQualityObserved:lyon:FR.*").selection
    assert (pattern.types, pattern.cities, pattern.key_pattern) == (
        ("AirQualityObserved",),
        ("lyon",),
        "FR.*",
    )
    assert params(id="urn:example:other").selection.nothing
    assert params(attrs="noSuchAttribute").selection.nothing
    assert params(limit="0", count="true").page.limit == 0


@pytest.mark.parametrize(
    "values",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "1.5"},
        {"offset": "-3"},
        {"offset": "9990", "limit": "20"},
        {"count": "1"},
        {"options": "keyValues,concise"},
        {"options": "sysAttrs"},
        {"format": "compact"},
        {"type": "A|B"},
        {"type": "1abc"},
        {"id": "no uri"},
        {"attrs": "a.b"},
        {"idPattern": "FR.*"},
        {"idPattern": "(?<=a)b"},
        {"idPattern": ".*("},
        {"idPattern": ".*" + "a" * 300},
        {"unknown": "1"},
        {"lang": "fr"},
        {"type": ""},
        {"type": "A" * 5000},
        {"type": ",".join(["A"] * 200)},
    ],
)
def test_entity_parameter_refusals(values):
    with pytest.raises(NgsiError) as refused:
        params(**values)
    assert 400 <= refused.value.status < 500


def test_repeated_parameters_are_refused():
    with pytest.raises(NgsiError, match="twice"):
        entity_params(MultiDict([("limit", "1"), ("limit", "2")]), NAMES)


def test_temporal_parameters():
    got = temporal_params(
        MultiDict(
            type="AirQualityObserved",
            timerel="between",
            timeAt="2026-01-01T00:00:00Z",
            endTimeAt="2026-02-01T00:00:00+01:00",
            options="aggregatedValues",
            aggrMethods="sum,avg",
            aggrPeriodDuration="PT1H",
        ),
        NAMES,
    )
    assert got.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert got.period_s == 3600 and got.methods == ("sum", "avg")
    whole = temporal_params(
        MultiDict(
            timerel="between",
            timeAt="2026-01-01T00:00:00Z",
            endTimeAt="2026-01-02T00:00:00Z",
            options="aggregatedValues",
            aggrMethods="max",
        ),
        NAMES,
    )
    assert whole.period_s == 86_400
    before = temporal_params(
        MultiDict(timerel="before", timeAt="2026-01-01T00:00:00Z", lastN="5"), NAMES
    )
    assert before.start is None and before.end is not None and before.last_n == 5
    assert [parse_duration(d) for d in ("PT15M", "P1D", "P1W", "P1DT1H", "PT0S")] == [
        900,
        86_400,
        604_800,
        90_000,
        0,
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"timerel": "during", "timeAt": "2026-01-01T00:00:00Z"},
        {"timerel": "after"},
        {"timerel": "after", "timeAt": "2026-01-01T00:00:00"},
        {"timerel": "after", "timeAt": "2026-13-01T00:00:00Z"},
        {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z", "endTimeAt": "2026-01-02T00:00:00Z"},
        {
            "timerel": "between",
            "timeAt": "2026-01-02T00:00:00Z",
            "endTimeAt": "2026-01-01T00:00:00Z",
        },
        {"timeAt": "2026-01-01T00:00:00Z"},
        {"lastN": "0"},
        {"lastN": "100001"},
        {"lastN": "x"},
        {"options": "aggregatedValues"},
        {"options": "aggregatedValues", "aggrMethods": "sum"},
        {"aggrMethods": "sum"},
        {"options": "aggregatedValues,temporalValues", "aggrMethods": "sum"},
        {"options": "aggregatedValues", "aggrMethods": "totalCount", "aggrPeriodDuration": "PT1H"},
        {"options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "P1M"},
        {"options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "PT"},
        {"options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "1H"},
        {"timeproperty": "modifiedAt"},
        {"limit": "101"},
        {
            "options": "aggregatedValues",
            "aggrMethods": "sum",
            "lastN": "3",
            "timerel": "after",
            "timeAt": "2026-01-01T00:00:00Z",
            "aggrPeriodDuration": "PT1H",
        },
    ],
)
def test_temporal_refusals(values):
    with pytest.raises(NgsiError) as refused:
        temporal_params(MultiDict(values), NAMES)
    assert refused.value.status == 400


def test_too_many_periods_are_refused():
    with pytest.raises(NgsiError, match="periods"):
        temporal_params(
            MultiDict(
                timerel="between",
                timeAt="2000-01-01T00:00:00Z",
                endTimeAt="2026-01-01T00:00:00Z",
                options="aggregatedValues",
                aggrMethods="sum",
                aggrPeriodDuration="PT1S",
            ),
            NAMES,
        )


PARAMETERS = sorted(TEMPORAL_PARAMS - {"timeproperty"})
PIECES = st.sampled_from(
    [
        "no2",
        ">",
        "==",
        "..",
        ",",
        ";",
        "|",
        "(",
        ")",
        "1",
        "-2.5",
        "e9",
        "near",
        "within",
        "maxDistance==",
        "Point",
        "[",
        "]",
        "urn:ngsi-ld:",
        "T:lyon:",
        ".*",
        "%",
        "P",
        "T",
        "1H",
        "Z",
        "2026-01-01T00:00:00",
        "true",
        "concise",
        "aggregatedValues",
        "\\x00",
        "é",
        " ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(PARAMETERS),
        st.lists(PIECES, max_size=12).map("".join) | st.text(max_size=30),
        max_size=6,
    )
)
def test_any_parameters_are_answered_or_refused_never_a_crash(values):
    for parse in (entity_params, temporal_params):
        query = MultiDict(
            {
                k: v
                for k, v in values.items()
                if parse is temporal_params or not k[0].islower() or k in ENTITY_KEYS
            }
        )
        try:
            parse(query, NAMES)
        except NgsiError as refused:
            assert 400 <= refused.status < 500 and refused.detail


ENTITY_KEYS = set(PARAMETERS) - {
    "timerel",
    "timeAt",
    "endTimeAt",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
}


def test_the_count_is_asked_as_ngsi_ld_1_3_clients_ask_it() -> None:
    """ngsildclient's temporal queries send ``options=count`` (NGSI-LD 1.3's spelling of
    ``count=true``): it gets the count, not a 400."""
    old = entity_params(MultiDict([("type", "AirQualityObserved"), ("options", "count")]), NAMES)
    new = entity_params(MultiDict([("type", "AirQualityObserved"), ("count", "true")]), NAMES)
    assert old.page.count and new.page.count
    assert old.format == new.format == "normalized"
