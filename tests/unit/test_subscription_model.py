"""The subscription definition and delivery state as JSON for Kafka: what is written is
read back the same, older documents (missing fields) and newer ones (unknown fields)
are read, anything else is refused with ValueError."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from services.api.subscriptions.model import (
    DeliveryState,
    EntitySelector,
    GeoQ,
    Subscription,
    iso,
    parse_time,
    state_from_json,
    state_to_json,
    subscription_from_json,
    subscription_to_json,
)

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def full() -> Subscription:
    return Subscription(
        id="urn:ngsi-ld:Subscription:abc",
        owner="k0123456789abcdef",
        audience="public",
        endpoint_uri="https://receiver.example/notify",
        created_at=iso(NOW),
        entities=(
            EntitySelector("AirQualityObserved"),
            EntitySelector("WeatherObserved", id="urn:ngsi-ld:WeatherObserved:lyon:s1"),
            EntitySelector("WeatherObserved", id_pattern=".*FR04"),
        ),
        watched_attributes=("temperature", "no2"),
        q="temperature>20;no2<=40",
        geo_q=GeoQ("near;maxDistance==2000", "Point", "[4.83,45.76]", "location"),
        accept="application/ld+json",
        format="keyValues",
        attributes=("temperature",),
        throttling_s=5.0,
        expires_at="2027-01-01T00:00:00.000Z",
        is_active=False,
        name="warm days",
        description="tell me when it is warm",
    )


def test_a_subscription_reads_back_identical() -> None:
    sub = full()
    assert subscription_from_json(subscription_to_json(sub)) == sub
    periodic = Subscription("urn:x:1", "k1", "lyon", "http://h/", iso(NOW), time_interval_s=60.0)
    assert subscription_from_json(subscription_to_json(periodic)) == periodic


def test_a_delivery_state_reads_back_identical() -> None:
    state = DeliveryState(
        times_sent=12,
        last_notification="2026-12-06T12:00:00.000Z",
        last_success="2026-12-06T12:00:00.000Z",
        last_failure="2026-12-06T11:00:00.000Z",
        last_failure_reason="receiver answered 503",
        status="ok",
        positions={"lyon": {"observations": {"partition": 1, "offset": 42}}},
    )
    assert state_from_json(state_to_json(state)) == state
    assert state_from_json(state_to_json(DeliveryState())) == DeliveryState()


def test_documents_of_other_versions_are_read() -> None:
    older = {"id": "urn:x:1", "owner": "k1", "audience": "public", "endpoint_uri": "http://h/"}
    older["created_at"] = iso(NOW)
    sub = subscription_from_json(json.dumps(older))
    assert sub.format == "normalized" and sub.is_active and sub.entities == ()
    newer = dict(older, v=9, someday="a field of a later version")
    assert subscription_from_json(json.dumps(newer)) == sub
    assert state_from_json('{"times_sent": 3, "v": 9, "later": 1}').times_sent == 3


@pytest.mark.parametrize(
    "text", ["", "[]", "not json", '{"id": "urn:x"}', '{"entities": [{"nope": 1}]}']
)
def test_what_is_not_a_subscription_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        subscription_from_json(text)


def test_state_documents_are_checked() -> None:
    with pytest.raises(ValueError):
        state_from_json('"text"')


def test_status_expired_beats_paused_beats_active() -> None:
    sub = full()
    assert sub.status(NOW) == "paused"
    assert Subscription("i", "o", "a", "u", iso(NOW)).status(NOW) == "active"
    assert sub.status(dt.datetime(2027, 2, 1, tzinfo=dt.UTC)) == "expired"
    assert not sub.delivering(NOW)


def test_times_are_utc_with_z() -> None:
    assert iso(NOW) == "2026-12-06T12:00:00.000Z"
    assert parse_time("2026-12-06T13:00:00+01:00") == NOW
    with pytest.raises(ValueError):
        parse_time("2026-12-06T12:00:00")
