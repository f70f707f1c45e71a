"""Representations and the merge (pure): normalized, keyValues and concise say the same
thing; energy aggregates never show a suppressed value; paging over several nodes'
answers is stable whatever the split."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.api.merge import NodeAnswer, NodeStatus, merge, peers_header
from services.api.ngsi.cache import Cached, TtlCache
from services.api.ngsi.names import load_names
from services.api.ngsi.represent import (
    concise,
    expand_concise,
    key_values,
    normalized,
    timestamp,
)
from services.api.reader import own_address
from services.federation.protos import pb
from testkit.api_reader import energy_cell, entity

NAMES = load_names()
METRICS = ["no2", "pm10", "air_temperature", "parking_available_spots", "energy_kwh"]


@st.composite
def entities(draw):
    message = entity(
        draw(st.sampled_from(["lyon", "paris"])),
        draw(st.text(min_size=1, max_size=12)),
        draw(st.sampled_from(["AirQualityObserved", "OffStreetParking", "WeatherObserved"])),
        values={
            m: draw(st.floats(allow_nan=False, allow_infinity=False, width=32))
            for m in draw(st.lists(st.sampled_from(METRICS), unique=True, max_size=4))
        },
        position=draw(st.none() | st.tuples(st.floats(-180, 180), st.floats(-90, 90))),
    )
    if draw(st.booleans()):
        message.attributes.add(
            metric="energy_kwh", unit="kWh", suppressed=True, suppression_reason="dominance"
        )
    return message


@settings(max_examples=150, deadline=None)
@given(entities())
def test_normalized_key_values_and_concise_agree(message):
    body = normalized(message, NAMES)
    simple = key_values(body)
    assert simple["id"] == body["id"] and simple["type"] == body["type"]
    for name, attribute in body.items():
        if isinstance(attribute, dict):
            assert attribute["type"] in ("Property", "GeoProperty")
            assert simple[name] == attribute["value"]
    short = concise(body)
    assert expand_concise(short) == body
    assert json.loads(json.dumps(short)) == short
    assert len(json.dumps(short)) <= len(json.dumps(body))


def test_suppressed_energy_values_are_absent_in_every_form():
    hidden = energy_cell("lyon", "69382", suppressed=True)
    for body in (normalized(hidden, NAMES),):
        for form in (body, key_values(body), concise(body)):
            assert not {"energy_kwh", "meter_count", "peak_kw"} & set(form)
            assert "812.5" not in json.dumps(form) and "120.0" not in json.dumps(form)
        assert key_values(body)["suppressed"] is True
        assert key_values(body)["suppressionReason"] == "too-few-meters"
    shown = normalized(energy_cell("lyon", "69381"), NAMES)
    assert shown["energy_kwh"]["windowStart"]["value"]["@value"] == "2026-01-15T10:00:00Z"
    assert shown["peak_kw"]["unitCode"] == "KWT"
    assert (shown["carrier"]["value"], shown["sector"]["value"]) == ("electricity", "residential")


def node_answer(code: str, keys: list[str], city: str) -> NodeAnswer:
    items = sorted(
        (pb.Entity(city=city, entity=k, entity_type="T") for k in keys), key=lambda e: e.entity
    )
    return NodeAnswer(NodeStatus(code, "answered"), items, len(items))


@given(
    st.lists(st.text(alphabet="abcdef", min_size=1, max_size=4), unique=True, max_size=30),
    st.integers(1, 7),
)
def test_paging_over_nodes_is_the_paging_of_the_whole(keys, limit):
    cities = {"lyon": keys[::2], "paris": keys[1::2], "brest": keys[::3]}
    whole = merge([node_answer(c, k, c) for c, k in cities.items()], 0, 1000)
    pages = []
    for offset in range(0, len(whole.items) + limit, limit):
        answers = [node_answer(c, k, c) for c, k in cities.items()]
        # each node returns only its first offset + limit entities, as asked
        answers = [NodeAnswer(a.status, a.items[: offset + limit], a.total) for a in answers]
        pages.extend(merge(answers, offset, limit).items)
    assert pages == list(whole.items)
    assert whole.total == sum(len(k) for k in cities.values())


def test_merge_reports_every_node_and_counts_only_answers():
    merged = merge(
        [
            node_answer("paris", ["b"], "paris"),
            NodeAnswer(NodeStatus("brest", "timed-out", "DEADLINE_EXCEEDED")),
            node_answer("lyon", ["a", "c"], "lyon"),
        ],
        0,
        10,
    )
    assert [e.city for e in merged.items] == ["lyon", "lyon", "paris"]
    assert merged.total == 3 and merged.answered and not merged.complete
    assert peers_header(merged.nodes) == "brest=timed-out, lyon=answered, paris=answered"


def test_the_node_dials_its_own_server_on_the_loopback_when_it_listens_everywhere():
    assert own_address("0.0.0.0:7443") == "127.0.0.1:7443"
    assert own_address("[::]:7443") == "[::1]:7443"
    assert own_address("10.0.0.5:7443") == "10.0.0.5:7443"


def test_the_answer_cache_is_bounded_in_age_entries_and_bytes():
    now = {"t": 0.0}
    cache = TtlCache(5.0, max_entries=3, max_bytes=100, clock=lambda: now["t"])

    def answer(size: int) -> Cached:
        return Cached(200, b"x" * size, ())

    cache.put("a", answer(10))
    assert cache.get("a") is not None
    now["t"] = 5.0
    assert cache.get("a") is None and cache.bytes == 0
    for key in "bcde":
        cache.put(key, answer(10))
    assert cache.get("b") is None and cache.get("e") is not None
    cache.put("big", answer(90))
    assert cache.bytes <= 100 and cache.get("big") is not None and cache.get("c") is None
    cache.put("huge", answer(101))
    assert cache.get("huge") is None


@given(st.integers(-62_135_596_800, 253_402_300_799), st.integers(0, 999_999_999))
@example(-62_135_596_800, 5000)
@example(253_402_300_799, 0)
def test_timestamps_are_written_as_protobuf_writes_them(seconds, nanos):
    value = pb.EntityAttribute().observed_at
    value.seconds, value.nanos = seconds, nanos
    assert timestamp(value) == value.ToJsonString()
