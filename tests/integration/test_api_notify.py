"""Delivering NGSI-LD notifications from the published topics, losing nothing.

A real federation node (``citeplus federation serve``, lyon) serves Subscribe from its
public topics on the test broker; the real api service (``citeplus service api``, a
process of its own reading through that node with lyon's certificate) keeps its
subscriptions on Kafka and posts to a real HTTP receiver on loopback. Subscriptions
are made over HTTP with keys of three audiences; records are published, the receiver
answers 503 then stops listening, the api is SIGKILLed mid-stream, both come back:
every published record of the subscribed data arrives (counted against the topic
read with a Kafka consumer), a record received twice only ever under the same
notification id. What each audience receives follows the node's policy: a public
key never gets a personal source's entities, a partner's never another partner's
dataset. (Records are written to the public topics as publish writes them: the
stages before publish have their own tests, and a whole node would not fit the
test budget.)
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import grpc
import httpx
import pytest

from services.api.keys import KeyStore, keys_path
from services.api.ngsi.names import load_names
from services.api.subscriptions.engine import DeliveryEngine, _Periodic
from services.api.subscriptions.matching import Matcher
from services.api.subscriptions.model import EntitySelector, Subscription
from services.api.subscriptions.notifier import Notifier, pinned_check
from services.api.subscriptions.targets import TargetPolicy
from services.federation.protos import pb
from testkit.api_reader import entity as entity_message
from testkit.kafka import read_all
from testkit.notify_world import (
    AIR,
    BOUND_S,
    METER,
    SUBSCRIPTIONS,
    NotifyWorld,
    answering,
    notify_world,
    status,
    subscribe,
    until,
)
from testkit.ports import free_port
from testkit.receiver import Receiver
from testkit.subscriptions import new_store, store_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def world(node, tmp_path_factory):
    built = notify_world(node, tmp_path_factory.mktemp("notify"))
    built.start_lyon()
    receiver = Receiver().start()
    try:
        yield built, receiver
    finally:
        receiver.stop()
        built.lyon.stop()


def ids_of(received: list[tuple[str, dict]]) -> dict[str, set[str]]:
    """Entity id -> notification ids it arrived in."""
    found: dict[str, set[str]] = defaultdict(set)
    for notification, entity in received:
        found[entity["id"]].add(notification)
    return found


def published_air_ids(node, world: NotifyWorld) -> set[str]:
    codec = world.contracts.codec(world.public)
    records = [codec.decode(m.value()) for m in read_all(node, world.public, settle_s=1.0)]
    return {
        f"urn:ngsi-ld:{AIR}:lyon:{r['entity_pseudonym']}" for r in records if r["source"] == "air"
    }


def test_nothing_is_lost_through_a_receiver_outage_and_a_killed_api(
    node, world, tmp_path: Path
) -> None:
    world, receiver = world
    keys = KeyStore(keys_path(tmp_path))
    tokens = {
        "public": keys.create("notify-public")[1],
        "paris": keys.create("notify-paris", partner="paris")[1],
        "nice": keys.create("notify-nice", partner="nice")[1],
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}{SUBSCRIPTIONS}"
    api = world.start_api(tmp_path, port)
    try:
        answering(api, url, tokens["public"])
        subs = {
            name: subscribe(
                url,
                tokens[name],
                receiver.url(name),
                (AIR, METER),
                **({"accept": "application/ld+json"} if name == "nice" else {}),
            )
            for name in ("public", "paris", "nice")
        }
        # A second public subscription, made later: two positions on one shared feed.
        world.publish(node, "air", 1000, 5)
        until(lambda: len(ids_of(receiver.entities("public"))) >= 5, "the first records")
        subs["public2"] = subscribe(url, tokens["public"], receiver.url("public2"), (AIR,))
        world.publish(node, "air", 0, 60)
        world.publish(node, "traffic", 0, 10)
        world.publish(node, "meters", 0, 20)
        until(lambda: len(ids_of(receiver.entities("public"))) >= 60, "the first air records")

        receiver.down = True  # answers 503: delivery retries with back-off
        world.publish(node, "air", 60, 60)
        until(
            lambda: (
                "503"
                in (status(url, tokens["public"], subs["public"]).get("lastFailureReason") or "")
            ),
            "the failure in the subscription's status",
        )
        receiver.stop()  # then the receiver is gone altogether
        api.send_signal(signal.SIGKILL)  # mid-stream: no orderly shutdown
        api.wait(BOUND_S)
        world.publish(node, "air", 120, 30)
        receiver.down = False
        receiver.start()
        api = world.start_api(tmp_path, port)

        expected = published_air_ids(node, world)
        assert len(expected) == 155
        early = {f"urn:ngsi-ld:{AIR}:lyon:lyon-air-z{i % 4 + 1}-{i}" for i in range(1000, 1005)}
        for audience in ("public", "paris", "nice", "public2"):
            wanted = expected - early if audience == "public2" else expected
            until(
                lambda a=audience, w=wanted: set(ids_of(receiver.entities(a))) >= w,
                f"every air record at {audience}",
            )
        until(lambda: len(ids_of(receiver.entities("paris"))) >= 170, "paris's meters")
        answering(api, url, tokens["public"])
        final = status(url, tokens["public"], subs["public"])

        # A revoked key's subscription stops with it: records published after the api
        # refuses the key reach nice (same open data) and never the public one.
        keys.revoke(tokens["public"].split(".", 1)[0])
        until(
            lambda: (
                httpx.get(
                    url, headers={"Authorization": f"Bearer {tokens['public']}"}, timeout=10
                ).status_code
                == 401
            ),
            "the revoked key refused",
        )
        world.publish(node, "air", 500, 10)
        late = {f"urn:ngsi-ld:{AIR}:lyon:lyon-air-z{i % 4 + 1}-{i}" for i in range(500, 510)}
        until(lambda: set(ids_of(receiver.entities("nice"))) >= late, "the late records at nice")
        time.sleep(1.0)  # not a bound: one more turn of the public feed, which shares the topic
        assert not set(ids_of(receiver.entities("public"))) & late, "a revoked key was served"
    finally:
        if api.poll() is None:
            api.kill()
            api.wait(BOUND_S)

    for audience in ("public", "paris", "nice", "public2"):
        got = ids_of(receiver.entities(audience))
        again = len(receiver.entities(audience)) - len(got)
        print(f"{audience}: {len(got)} entities, {again} received again under the same id")
        twice = {entity: ids for entity, ids in got.items() if len(ids) > 1}
        assert twice == {}, f"{audience}: a duplicate under another id: {list(twice.items())[:3]}"
    assert set(ids_of(receiver.entities("public"))) == expected, "air only, every record"
    assert final["status"] == "ok" and final["timesSent"] > 2 and final["lastSuccess"]

    meters = {i for i in ids_of(receiver.entities("paris")) if f":{METER}:" in i}
    assert len(meters) == 20, "paris, the named partner, gets the shared meters"
    for audience in ("public", "nice"):
        seen = set(ids_of(receiver.entities(audience)))
        assert not {i for i in seen if f":{METER}:" in i}, f"{audience} got a household's meter"
    ld = receiver.at("nice")[0]
    assert ld.headers["Content-Type"] == "application/ld+json" and "@context" in ld.body
    plain = receiver.at("public")[0]
    assert "Link" in plain.headers and "@context" not in plain.body


def test_a_relayed_stream_never_carries_a_personal_source_to_the_public(world) -> None:
    """The attacker: the public (through the api) asks the node for households' water
    meters (a personal source its city marked open) and electricity meters by name,
    then for every dataset of the partner topic that carries the latter."""
    world, _ = world
    lyon = world.lyon
    with lyon.client("lyon", on_behalf_of="public") as client:
        for request in (
            pb.SubscribeRequest(dataset="lyon/water", stop_at_end=True),
            pb.SubscribeRequest(dataset="lyon/meters", stop_at_end=True),
            pb.SubscribeRequest(topic=world.shared, stop_at_end=True),
        ):
            setattr(request, "from", pb.START_POINT_EARLIEST)
            with pytest.raises(grpc.RpcError) as caught:
                list(client.subscribe(request, timeout=30))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with lyon.client("lyon", on_behalf_of="paris") as client:
        request = pb.SubscribeRequest(topic=world.shared, stop_at_end=True)
        setattr(request, "from", pb.START_POINT_EARLIEST)
        assert all(b.position.topic == world.shared for b in client.subscribe(request, timeout=30))


class _Answer:
    """What the api's reader answers (the federation query itself is tested elsewhere)."""

    def __init__(self, entities):
        self.items = tuple(entities)


class _Reader:
    def __init__(self, entities):
        self.entities_now = entities
        self.asked = []

    def entities(self, query, audience):
        self.asked.append((query, audience))
        return _Answer(self.entities_now)


def test_a_periodic_subscription_notifies_what_the_entity_query_answers(node, world) -> None:
    """timeInterval: one notification of the matching entities now, read through the
    api's entity query on behalf of the subscription's audience; its status saved."""
    _, receiver = world
    store = new_store(node, store_topics(node))
    store.start()
    reader = _Reader(
        [
            entity_message("lyon", "s1", AIR, values={"no2": 50.0}),
            entity_message("lyon", "s2", AIR, values={"no2": 10.0}),
        ]
    )
    sub = Subscription(
        id="urn:ngsi-ld:Subscription:periodic",
        owner="k",
        audience="paris",
        endpoint_uri=receiver.url("periodic"),
        created_at="2026-01-01T00:00:00.000Z",
        entities=(EntitySelector(AIR),),
        q="no2>20",
        time_interval_s=60.0,
    )
    store.put(sub)
    notifier = Notifier(pinned_check(TargetPolicy.parse("127.0.0.1")))
    engine = DeliveryEngine(store, (), None, reader, notifier, load_names(), "http://x/c")
    try:
        _Periodic(engine, sub, Matcher.of(sub, load_names())).once()
    finally:
        engine.close()
        notifier.close()
        store.close()
    (got,) = receiver.at("periodic")
    assert [e["id"] for e in got.body["data"]] == [f"urn:ngsi-ld:{AIR}:lyon:s1"]
    query, audience = reader.asked[0]
    assert list(query.entity_types) == [AIR] and audience.on_behalf_of == "paris"
    assert store.state(sub.id).times_sent == 1 and store.state(sub.id).status == "ok"
