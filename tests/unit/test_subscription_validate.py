"""Subscription bodies checked without a broker: what is accepted becomes the stored
definition, every mistake is a 400 naming its member, unsupported NGSI-LD members a
422, and a PATCH can never store what a POST would refuse."""

from __future__ import annotations

import datetime as dt

import pytest

from services.api.ngsi.names import load_names
from services.api.ngsi.problems import NgsiError
from services.api.subscriptions.model import DeliveryState, EntitySelector
from services.api.subscriptions.represent import represent
from services.api.subscriptions.validate import (
    Identity,
    Rules,
    definition_body,
    new_subscription,
    parse_body,
    patched,
)

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
WHO = Identity(
    "urn:ngsi-ld:Subscription:given", "k0123456789abcdef", "public", "2026-12-06T12:00:00.000Z"
)
RULES = Rules(load_names())
URI = "https://receiver.example/notify"


def body(**members: object) -> dict:
    return {
        "type": "Subscription",
        "entities": [{"type": "WeatherObserved"}],
        "notification": {"endpoint": {"uri": URI}},
        **members,
    }


def refused(document: dict, status: int = 400) -> str:
    with pytest.raises(NgsiError) as caught:
        new_subscription(document, WHO, RULES, NOW)
    assert caught.value.status == status, caught.value.detail
    return caught.value.detail


def test_a_full_body_becomes_its_definition_and_shows_back_the_same() -> None:
    document = body(
        id="urn:ngsi-ld:Subscription:mine",
        subscriptionName="warm",
        description="warm days in Lyon",
        entities=[
            {"type": "WeatherObserved", "idPattern": "urn:ngsi-ld:WeatherObserved:lyon:.*"},
            {"type": "WeatherObserved", "id": "urn:ngsi-ld:WeatherObserved:lyon:s1"},
        ],
        watchedAttributes=["temperature"],
        q="temperature>20",
        geoQ={"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [4.8, 45.7]},
        notification={
            "attributes": ["temperature"],
            "format": "simplified",
            "endpoint": {"uri": URI, "accept": "application/ld+json"},
        },
        throttling=10,
        expiresAt="2027-01-01T01:00:00+01:00",
        isActive=False,
    )
    sub = new_subscription(document, WHO, RULES, NOW)
    assert sub.id == "urn:ngsi-ld:Subscription:mine" and sub.owner == WHO.owner
    assert sub.entities[0] == EntitySelector(
        "WeatherObserved", id_pattern="urn:ngsi-ld:WeatherObserved:lyon:.*"
    )
    assert sub.format == "keyValues" and sub.accept == "application/ld+json"
    assert sub.expires_at == "2027-01-01T00:00:00.000Z" and sub.throttling_s == 10.0
    again = new_subscription(definition_body(sub), WHO, RULES, NOW)
    assert again == sub
    shown = represent(sub, DeliveryState(times_sent=2, status="ok"), NOW)
    assert shown["status"] == "paused" and shown["notification"]["timesSent"] == 2
    assert shown["notification"]["status"] == "ok" and shown["createdAt"] == WHO.created_at


def test_the_node_names_a_subscription_without_id() -> None:
    assert new_subscription(body(), WHO, RULES, NOW).id == WHO.id


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({**body(), "type": "Subscriptions"}, "type"),
        ({k: v for k, v in body().items() if k != "entities"}, "entities or watchedAttributes"),
        (body(entities=[]), "entities"),
        (body(entities=[{"type": "Weather Observed"}]), "entities[0].type"),
        (body(entities=[{"type": "T", "id": "urn:ngsi-ld:Other:lyon:x"}]), "entities[0].id"),
        (body(entities=[{"type": "T", "id": "x", "idPattern": ".*"}]), "not both"),
        (body(entities=[{"type": "T", "idPattern": "abc"}]), "entities[0].idPattern"),
        (body(entities=[{"type": "T", "idPattern": ".*(?=x)"}]), "look-arounds"),
        (body(watchedAttributes="temperature"), "watchedAttributes"),
        (body(watchedAttributes=["nosuch"]), "nosuch"),
        (body(q="temperature~=x"), "q"),
        (body(q="nosuch>1"), "never match"),
        (body(geoQ={"georel": "within", "geometry": "Point", "coordinates": [1, 2]}), "geoQ"),
        (body(geoQ={"geometry": "Point"}), "geoQ.georel"),
        (body(notification={}), "notification.endpoint"),
        (body(notification={"endpoint": {}}), "notification.endpoint.uri"),
        (body(notification={"endpoint": {"uri": "mailto:a@b"}}), "notification.endpoint.uri"),
        (body(notification={"endpoint": {"uri": URI, "accept": "text/csv"}}), "accept"),
        (body(notification={"endpoint": {"uri": URI}, "format": "xml"}), "format"),
        (body(notification={"endpoint": {"uri": URI}, "attributes": ["x"]}), "attributes"),
        (body(throttling=-1), "throttling"),
        (body(throttling=True), "throttling"),
        (body(timeInterval=0), "timeInterval"),
        (body(timeInterval=0.5), "at least 1"),
        (body(timeInterval=60, watchedAttributes=["temperature"]), "exclude"),
        (body(timeInterval=60, throttling=5), "throttling"),
        (body(expiresAt="2026-12-06T11:00:00Z"), "not in the future"),
        (body(expiresAt="2027-01-01T00:00:00"), "zone"),
        (body(isActive="yes"), "isActive"),
        (body(id="not a uri"), "id"),
        (body(description=""), "description"),
        (body(status="active"), "read-only"),
        (body(colour="blue"), "colour"),
    ],
)
def test_mistakes_are_400s_naming_the_member(document: dict, named: str) -> None:
    assert named in refused(document)


@pytest.mark.parametrize(
    "document",
    [
        body(temporalQ={}),
        body(scopeQ="/a"),
        body(notification={"endpoint": {"uri": URI, "receiverInfo": []}}),
        body(notification={"endpoint": {"uri": URI}, "showChanges": True}),
    ],
)
def test_unsupported_members_are_said_so(document: dict) -> None:
    assert "not supported" in refused(document, 422)


def test_periodic_subscriptions_need_entities() -> None:
    periodic = new_subscription(body(timeInterval=60), WHO, RULES, NOW)
    assert periodic.time_interval_s == 60.0
    document = {k: v for k, v in body(timeInterval=60).items() if k != "entities"}
    assert "entities" in refused(document)


def test_a_patch_is_merged_then_checked_like_a_post() -> None:
    sub = new_subscription(body(watchedAttributes=["temperature"]), WHO, RULES, NOW)
    changed = patched(
        sub, {"notification": {"format": "keyValues"}, "q": "temperature>1"}, RULES, NOW
    )
    assert changed.format == "keyValues" and changed.endpoint_uri == URI
    assert changed.q == "temperature>1" and changed.id == sub.id and changed.owner == sub.owner
    moved = patched(
        sub, {"notification": {"endpoint": {"accept": "application/ld+json"}}}, RULES, NOW
    )
    assert moved.endpoint_uri == URI and moved.accept == "application/ld+json"
    assert patched(sub, {"q": "temperature>1"}, RULES, NOW).q == "temperature>1"
    assert patched(changed, {"q": None}, RULES, NOW).q is None
    for fragment in (
        {"timeInterval": 30},
        {"id": "urn:ngsi-ld:Subscription:other"},
        {"notification": {"endpoint": {"uri": "ftp://x"}}},
        {"createdAt": "2020-01-01T00:00:00Z"},
    ):
        with pytest.raises(NgsiError):
            patched(sub, fragment, RULES, NOW)


def test_a_patch_of_an_expired_subscription_keeps_its_past_expiry() -> None:
    sub = new_subscription(body(expiresAt="2026-12-07T00:00:00Z"), WHO, RULES, NOW)
    later = NOW + dt.timedelta(days=2)
    paused = patched(sub, {"isActive": False}, RULES, later)
    assert paused.expires_at == sub.expires_at and paused.status(later) == "expired"
    renewed = patched(sub, {"expiresAt": "2027-06-01T00:00:00Z"}, RULES, later)
    assert renewed.status(later) == "active"


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{", b"\xff"])
def test_bodies_that_are_not_one_json_object_are_refused(raw: bytes) -> None:
    with pytest.raises(NgsiError):
        parse_body(raw)
