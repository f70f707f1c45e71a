"""Pure parts of notification delivery: a record as its entity, matching (entities,
watchedAttributes, q, geoQ, attributes), positions that never skip a record, batching
and ids, back-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.ngsi.names import load_names
from services.api.ngsi.q import parse_q
from services.api.subscriptions.delivery import (
    _Pending,
    _Queued,
    batch_end,
    pending_from_state,
    state_positions,
)
from services.api.subscriptions.entity_from_record import record_entity
from services.api.subscriptions.feeds import Item
from services.api.subscriptions.matching import Matcher, distance_m, eval_q, inside
from services.api.subscriptions.model import EntitySelector, GeoQ, Subscription
from services.api.subscriptions.notification import Backoff, new_id, payload
from services.api.subscriptions.positions import (
    after_delivery,
    from_state,
    lowest,
    reached,
    to_state,
)

NAMES = load_names()
START_US = 1_780_000_000_000_000


def observation(metric="no2", value=42.0, key="s1", city="lyon", source="air", **extra):
    record = {
        "city": city,
        "domain": "environment",
        "metric": metric,
        "unit": "µg/m3",
        "entity_pseudonym": key,
        "entity_type": "AirQualityObserved",
        "zone": "69381",
        "position": {"lat": 45.76, "lon": 4.83},
        "start": START_US,
        "step_seconds": 600,
        "times": [],
        "values": [1.0, value],
        "quality": [],
        "source": source,
        "dataset": "air-quality-observed",
        "lineage_id": "x",
    }
    record.update(extra)
    return record


def sub(**fields):
    base = {
        "id": "urn:ngsi-ld:Subscription:t",
        "owner": "k1",
        "audience": "public",
        "endpoint_uri": "http://127.0.0.1:9/n",
        "created_at": "2026-01-01T00:00:00.000Z",
    }
    base.update(fields)
    return Subscription(**base)


def body(subscription, record):
    return Matcher.of(subscription, NAMES).body(record_entity(record, {"lyon/air": "ODbL"}))


def test_a_record_is_the_entity_the_api_answers():
    shown = body(sub(), observation())
    assert shown["id"] == "urn:ngsi-ld:AirQualityObserved:lyon:s1"
    assert shown["type"] == "AirQualityObserved"
    assert shown["no2"]["value"] == 42.0
    assert shown["no2"]["unitCode"] == "GQ"  # µg/m3, UN/CEFACT, as queries answer
    assert shown["no2"]["observedAt"] == "2026-05-28T20:36:40Z"  # start + one step
    assert shown["location"]["value"] == {"type": "Point", "coordinates": [4.83, 45.76]}
    assert shown["license"]["value"] == "ODbL"
    key_values = body(sub(format="keyValues"), observation())
    assert key_values["no2"] == 42.0


def test_an_energy_cell_never_shows_a_suppressed_value():
    cell = {
        "city": "lyon",
        "zone": "*",
        "carrier": "electricity",
        "sector": "residential",
        "granularity": "PT1H",
        "window_start": START_US,
        "window_end": START_US + 3_600_000_000,
        "energy_kwh": None,
        "meter_count": None,
        "peak_kw": None,
        "suppressed": True,
        "suppression_reason": "confidential",
    }
    shown = Matcher.of(sub(), NAMES).body(record_entity(cell, {}))
    assert shown["type"] == "CitePlusEnergyAggregate"
    assert "energy_kwh" not in shown and shown["suppressed"]["value"] is True


def test_entities_type_id_and_pattern():
    assert body(sub(entities=(EntitySelector("AirQualityObserved"),)), observation())
    assert body(sub(entities=(EntitySelector("OffStreetParking"),)), observation()) is None
    by_id = EntitySelector("AirQualityObserved", id="urn:ngsi-ld:AirQualityObserved:lyon:s1")
    assert body(sub(entities=(by_id,)), observation())
    assert body(sub(entities=(by_id,)), observation(key="s2")) is None
    pattern = EntitySelector("AirQualityObserved", id_pattern=r":lyon:s[0-4]$")
    assert body(sub(entities=(pattern,)), observation(key="s3"))
    assert body(sub(entities=(pattern,)), observation(key="s9")) is None


def test_an_update_of_no_watched_attribute_triggers_nothing():
    assert body(sub(watched_attributes=("no2",)), observation("no2"))
    assert body(sub(watched_attributes=("pm10",)), observation("no2")) is None


def test_notification_attributes_project():
    shown = body(sub(attributes=("no2",)), observation())
    assert set(shown) == {"id", "type", "no2"}


Q_CASES = [
    ("no2>40", {"no2": 42.0}, True),
    ("no2>40", {"no2": 40.0}, False),
    ("no2==10..20;pm10!=3,4", {"no2": 15.0, "pm10": 5.0}, True),
    ("no2==10..20;pm10!=3,4", {"no2": 15.0, "pm10": 4.0}, False),
    ("(no2<1|no2>9);pm10==2", {"no2": 10.0, "pm10": 2.0}, True),
    ("(no2<1|no2>9);pm10==2", {"no2": 5.0, "pm10": 2.0}, False),
    ("no2!=5..6", {"no2": 5.5}, False),
    ("no2!=5..6", {"no2": 7.0}, True),
    ("pm10>1", {"no2": 7.0}, False),  # an attribute the entity lacks matches nothing
]


@pytest.mark.parametrize(("text", "values", "expected"), Q_CASES)
def test_q_evaluated_on_one_entity(text, values, expected):
    dnf = parse_q(text, lambda a: (a,) if a in ("no2", "pm10") else ())
    assert eval_q(dnf, values) is expected


def test_q_and_geo_of_a_subscription():
    assert body(sub(q="no2>40"), observation(value=42.0))
    assert body(sub(q="no2>40"), observation(value=12.0)) is None
    near = GeoQ("near;maxDistance==2000", "Point", "[4.84,45.76]")
    far = GeoQ("near;maxDistance==2000", "Point", "[2.35,48.85]")
    assert body(sub(geo_q=near), observation())
    assert body(sub(geo_q=far), observation()) is None
    square = GeoQ("within", "Polygon", "[[[4.8,45.7],[4.9,45.7],[4.9,45.8],[4.8,45.8]]]")
    assert body(sub(geo_q=square), observation())
    assert body(sub(geo_q=square), observation(position=None)) is None


def test_geometry_helpers():
    assert 390_000 < distance_m((4.83, 45.76), (2.35, 48.85)) < 400_000
    ring = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0))
    assert inside((0.5, 0.5), ring) and not inside((1.5, 0.5), ring)


def test_positions_round_trip_through_the_state():
    positions = {("lyon", "public.observations.v1"): {0: 5, 1: 7}}
    assert from_state(to_state(positions)) == positions


def test_lowest_start_of_a_shared_feed():
    assert lowest([{0: 5, 1: 9}, {0: 7, 1: 2}]) == {0: 5, 1: 2}
    assert lowest([{0: 5, 1: 9}, {0: 7}]) == {0: 5}  # partition 1: from its start
    assert lowest([]) is None


@given(
    st.dictionaries(st.integers(0, 3), st.integers(0, 100), min_size=1),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100))),
)
def test_a_position_never_passes_a_record_not_delivered(seen, remaining):
    position = after_delivery(seen, remaining)
    for p, o in remaining:
        assert position[p] <= o
    for p, o in position.items():
        assert o <= seen.get(p, o)


def test_a_pending_batch_is_found_again_after_a_restart():
    feed = ("lyon", "public.observations.v1")
    items = [_Queued(feed, Item(0, o, None, 0), {}, 0.0) for o in (3, 4, 9)]
    end = batch_end(items)
    assert end == {feed: {0: 10}}
    saved = state_positions({feed: {0: 3}}, _Pending("urn:ngsi-ld:Notification:x", end))
    again = pending_from_state(saved)
    assert again is not None and again.id == "urn:ngsi-ld:Notification:x"
    assert again.end == end
    assert from_state(saved) == {feed: {0: 3}}
    assert reached({0: 10}, end[feed]) and not reached({0: 9}, end[feed])


def test_notification_body_and_headers():
    notification_id = new_id()
    assert notification_id.startswith("urn:ngsi-ld:Notification:")
    plain, headers = payload(notification_id, "s", "t", [{"id": "e"}], "application/json", "C")
    assert plain["type"] == "Notification" and plain["data"] == [{"id": "e"}]
    assert "@context" not in plain and headers["Link"].startswith("<C>")
    ld, headers = payload(notification_id, "s", "t", [], "application/ld+json", "C")
    assert ld["@context"][0] == "C" and "Link" not in headers
    assert headers["Content-Type"] == "application/ld+json"


def test_backoff_doubles_up_to_its_bound():
    backoff = Backoff(first_s=1.0, max_s=10.0)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff.delay(10_000) == 10.0
