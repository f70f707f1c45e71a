"""Delivering NGSI-LD notifications from the published topics, losing nothing.

A real federation node (``citeplus federation serve``, lyon) serves Subscribe from its
public topics on the test broker; the delivery engine runs here against a real
subscription store on Kafka and posts to a real HTTP receiver on loopback. Records
are published, the receiver answers 503 for a while, the engine is stopped dead
and a new one (with a store read back from Kafka) takes over: every published record
of the subscribed data arrives (counted against the topic read with a Kafka
consumer), a record received twice only ever under the same notification id. What
each audience receives follows the node's policy: a public subscription never gets
a personal source's entities, a partner's never another partner's dataset.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from services.api.ngsi.names import load_names
from services.api.subscriptions.delivery import DeliverySettings
from services.api.subscriptions.engine import DeliveryEngine
from services.api.subscriptions.model import EntitySelector, Subscription
from services.api.subscriptions.notification import Backoff
from services.api.subscriptions.notifier import Notifier, pinned_check
from services.api.subscriptions.store import StoreTopics, SubscriptionStore
from services.api.subscriptions.targets import TargetPolicy
from services.federation.protos import pb
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from testkit.federation_nodes import T0, Node, make_authority, observation
from testkit.kafka import read_all
from testkit.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOUND_S = 90.0  # generous: two cores shared by many
AIR = "AirQualityObserved"


def until(condition, what: str, bound: float = BOUND_S):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {bound:g} s: {what}")


@pytest.fixture(scope="module")
def world(node, tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("notify")
    certs = make_authority(root / "certs", ["lyon", "paris", "nice"])
    prefix = f"test.notify{int(time.time() * 1000) % 10**8}."
    lyon = Node(
        "lyon",
        root / "lyon",
        certs_dir=certs,
        bootstrap=node.kafka.bootstrap,
        registry=node.registry.url,
        topic_prefix=prefix,
    )
    lyon.sharing = {
        "air": {"level": "open", "licence": "ODbL-1.0"},
        "traffic": {"level": "open", "licence": "ODbL-1.0"},
        "meters": {"level": "shared", "partners": ["paris"]},  # personal: households
        "water": {"level": "open", "licence": "ODbL-1.0"},  # personal, yet marked open
    }
    lyon.prepare(seed=False)
    declared = load_topics(partners=["paris"])
    data = [
        replace(declared[n], name=prefix + n)
        for n in (
            "public.observations.v1",
            "public.shared.paris.observations.v1",
            "public.energy.aggregates.v2",
        )
    ]
    store_specs = [
        replace(declared[n], name=prefix + n)
        for n in ("api.subscriptions.v1", "api.subscription-state.v1")
    ]
    provision_topics(node, data + store_specs)
    contracts = connect_contracts(node, data + store_specs)
    lyon.start().wait_ready()
    receiver = Receiver().start()
    try:
        yield {
            "lyon": lyon,
            "contracts": contracts,
            "public": data[0].name,
            "shared": data[1].name,
            "store": StoreTopics(store_specs[0].name, store_specs[1].name),
            "receiver": receiver,
        }
    finally:
        receiver.stop()
        lyon.stop()


def open_store(node, world) -> SubscriptionStore:
    where, contracts = world["store"], world["contracts"]
    store = SubscriptionStore(
        node, where, contracts.codec(where.definitions), contracts.codec(where.states)
    )
    store.start()
    return store


def engine_of(world, store: SubscriptionStore) -> DeliveryEngine:
    lyon = world["lyon"]
    clients = {}

    def client_for(code: str, audience: str):
        if audience not in clients:
            clients[audience] = lyon.client("lyon", on_behalf_of=audience)
        return clients[audience]

    settings = DeliverySettings(max_entities=50, backoff=Backoff(0.2, 1.0), save_every_s=1.0)
    notifier = Notifier(pinned_check(TargetPolicy.parse("127.0.0.1")), timeout_s=5.0)
    engine = DeliveryEngine(
        store, ("lyon",), client_for, None, notifier, load_names(), "http://x/ctx", settings
    )
    return engine.start()


def subscription(name: str, receiver: Receiver, audience: str = "public", **fields):
    return Subscription(
        id=f"urn:ngsi-ld:Subscription:{name}-{time.time_ns()}",
        owner=f"key-{name}",
        audience=audience,
        endpoint_uri=receiver.url(name),
        created_at="2020-01-01T00:00:00.000Z",
        **fields,
    )


def publish(node, world, source: str, first: int, count: int) -> None:
    writer = RecordProducer(make_producer(node), world["contracts"])
    topic = world["shared"] if source == "meters" else world["public"]
    for i in range(first, first + count):
        record = observation("lyon", source, f"z{i % 4 + 1}", i, T0 + i * 600_000_000, 3)
        record["entity_type"] = AIR if source == "air" else None
        writer.produce(topic, record["entity_pseudonym"], record)
    assert writer.flush() == 0


def ids_of(received: list[tuple[str, dict]]) -> dict[str, set[str]]:
    """Entity id -> notification ids it arrived in."""
    found: dict[str, set[str]] = defaultdict(set)
    for notification, entity in received:
        found[entity["id"]].add(notification)
    return found


def published_air_ids(node, world) -> set[str]:
    codec = world["contracts"].codec(world["public"])
    records = [codec.decode(m.value()) for m in read_all(node, world["public"], settle_s=1.0)]
    return {
        f"urn:ngsi-ld:{AIR}:lyon:{r['entity_pseudonym']}" for r in records if r["source"] == "air"
    }


def test_nothing_is_lost_through_a_receiver_outage_and_a_dead_engine(node, world) -> None:
    receiver: Receiver = world["receiver"]
    store = open_store(node, world)
    air = subscription("air", receiver, entities=(EntitySelector(AIR),))
    public = subscription("public", receiver)
    paris = subscription("paris", receiver, audience="paris")
    nice = subscription("nice", receiver, audience="nice", accept="application/ld+json")
    for sub in (air, public, paris, nice):
        store.put(sub)
    engine = engine_of(world, store)
    # Four subscriptions of three audiences: one stream per topic and audience, not one
    # per subscription (the node serves the api a handful of streams only).
    until(lambda: engine.feed_count() >= 7, "the feeds to open")
    # public and nice: the open observations and energy topics; paris: its shared topic too.
    assert engine.feed_count() == 2 + 2 + 3

    publish(node, world, "air", 0, 60)
    publish(node, world, "traffic", 0, 10)
    publish(node, world, "meters", 0, 20)
    until(lambda: len(ids_of(receiver.entities("air"))) >= 60, "the first air records")

    receiver.down = True  # answers 503: delivery retries with back-off
    publish(node, world, "air", 60, 60)
    until(lambda: store.state(air.id).last_failure_reason, "the failure in the status")
    assert "503" in store.state(air.id).last_failure_reason
    engine.close()  # dead: whatever it had in hand is not sent
    store.close()
    publish(node, world, "air", 120, 30)
    receiver.down = False

    store = open_store(node, world)  # a restarted api reads everything back from Kafka
    engine = engine_of(world, store)
    try:
        expected = published_air_ids(node, world)
        assert len(expected) == 150
        until(lambda: set(ids_of(receiver.entities("air"))) >= expected, "every air record")
        until(lambda: set(ids_of(receiver.entities("public"))) >= expected, "the public ones")
        until(lambda: len(ids_of(receiver.entities("paris"))) >= 180, "paris's records")
        until(lambda: len(ids_of(receiver.entities("nice"))) >= 160, "nice's records")
    finally:
        engine.close()
        store.close()

    got = ids_of(receiver.entities("air"))
    assert set(got) == expected, "only the subscribed entity type, every record of it"
    twice = {entity: ids for entity, ids in got.items() if len(ids) > 1}
    assert twice == {}, f"a duplicate under another notification id: {list(twice.items())[:3]}"
    state = store.state(air.id)
    assert state.status == "ok" and state.times_sent > 2 and state.last_success

    meters = {i for i in ids_of(receiver.entities("paris")) if "-meters-" in i}
    assert len(meters) == 20, "paris, the named partner, gets the shared meters"
    for audience in ("public", "nice"):
        seen = set(ids_of(receiver.entities(audience)))
        assert not {i for i in seen if "-meters-" in i}, f"{audience} got a household's meter"
    ld = receiver.at("nice")[0]
    assert ld.headers["Content-Type"] == "application/ld+json" and "@context" in ld.body
    plain = receiver.at("air")[0]
    assert "Link" in plain.headers and "@context" not in plain.body


def test_a_relayed_stream_never_carries_a_personal_source_to_the_public(world) -> None:
    """The attacker: the public (through the api) asks the node for households' water
    meters (a personal source its city marked open) and electricity meters by name,
    then for every dataset of the partner topic that carries the latter."""
    lyon = world["lyon"]
    with lyon.client("lyon", on_behalf_of="public") as client:
        for request in (
            pb.SubscribeRequest(dataset="lyon/water", stop_at_end=True),
            pb.SubscribeRequest(dataset="lyon/meters", stop_at_end=True),
            pb.SubscribeRequest(topic=world["shared"], stop_at_end=True),
        ):
            setattr(request, "from", pb.START_POINT_EARLIEST)
            with pytest.raises(grpc.RpcError) as caught:
                list(client.subscribe(request, timeout=30))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with lyon.client("lyon", on_behalf_of="paris") as client:
        request = pb.SubscribeRequest(topic=world["shared"], stop_at_end=True)
        setattr(request, "from", pb.START_POINT_EARLIEST)
        assert all(
            b.position.topic == world["shared"] for b in client.subscribe(request, timeout=30)
        )
