"""The subscription store on the real broker: what a 'restarted api' (a new store on
the same topics) reads back is exactly what the last one confirmed, deletes included."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from services.api.subscriptions.model import DeliveryState, EntitySelector, Subscription, iso
from services.api.subscriptions.store import (
    DELETE,
    PUT,
    STATE,
    Change,
    StoreTopics,
    StoreUnavailable,
    SubscriptionStore,
)
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import InfrastructureError
from services.runtime.kafka import make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicName, load_topics

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
NAMES = (TopicName.API_SUBSCRIPTIONS, TopicName.API_SUBSCRIPTION_STATE)


@pytest.fixture(scope="module")
def topics(node: NodeConfig) -> tuple[StoreTopics, Contracts]:
    prefix = f"test.{uuid.uuid4().hex[:8]}."
    declared = load_topics()
    specs = [replace(declared[n], name=prefix + n) for n in NAMES]
    provision_topics(node, specs)
    return StoreTopics(specs[0].name, specs[1].name), connect_contracts(node, specs)


def open_store(node: NodeConfig, topics: tuple[StoreTopics, Contracts]) -> SubscriptionStore:
    where, contracts = topics
    store = SubscriptionStore(
        node, where, contracts.codec(where.definitions), contracts.codec(where.states)
    )
    store.start()
    return store


@pytest.fixture(scope="module")
def store(node: NodeConfig, topics: tuple[StoreTopics, Contracts]) -> Iterator[SubscriptionStore]:
    opened = open_store(node, topics)
    yield opened
    opened.close()


def sub(name: str, owner: str = "k1") -> Subscription:
    return Subscription(
        id=f"urn:ngsi-ld:Subscription:{name}",
        owner=owner,
        audience="public",
        endpoint_uri="http://127.0.0.1:9/notify",
        created_at=iso(NOW),
        entities=(EntitySelector("WeatherObserved"),),
        watched_attributes=("temperature",),
    )


def test_a_new_store_reads_back_what_was_confirmed(
    node: NodeConfig, topics: tuple[StoreTopics, Contracts], store: SubscriptionStore
) -> None:
    kept, gone, other = sub("kept"), sub("gone"), sub("other", owner="k2")
    for s in (kept, gone, other):
        store.put(s)
    changed = replace(kept, q="temperature>20", is_active=False)
    store.put(changed)
    state = DeliveryState(times_sent=3, status="ok", positions={"lyon": {"obs": {"offset": 7}}})
    store.save_state(kept.id, state)
    store.save_state(gone.id, DeliveryState(times_sent=1))
    assert store.delete(gone.id)
    assert not store.delete(gone.id)

    again = open_store(node, topics)  # what an api killed now would come back with
    try:
        assert again.get(kept.id) == changed
        assert again.get(gone.id) is None
        assert again.state(kept.id) == state
        assert again.state(gone.id) == DeliveryState()
        assert [s.id for s in again.list("k1")] == [kept.id]
        assert [s.id for s in again.list("k2")] == [other.id]
        assert again.unreadable == 0
    finally:
        again.close()


def test_listeners_and_watchers_hear_every_change(store: SubscriptionStore) -> None:
    heard: list[Change] = []
    store.on_change(heard.append)

    async def watch() -> list[Change]:
        queue = store.watch(asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        one = sub("watched")
        await loop.run_in_executor(None, store.put, one)
        await loop.run_in_executor(None, store.save_state, one.id, DeliveryState(times_sent=1))
        await loop.run_in_executor(None, store.delete, one.id)
        return [await asyncio.wait_for(queue.get(), 60) for _ in range(3)]

    seen = asyncio.run(watch())
    assert [(c.kind, c.sub_id) for c in seen] == [
        (PUT, "urn:ngsi-ld:Subscription:watched"),
        (STATE, "urn:ngsi-ld:Subscription:watched"),
        (DELETE, "urn:ngsi-ld:Subscription:watched"),
    ]
    assert [c.kind for c in heard] == [PUT, STATE, DELETE]


def test_a_state_for_a_deleted_subscription_is_not_written(store: SubscriptionStore) -> None:
    store.save_state("urn:ngsi-ld:Subscription:never", DeliveryState(times_sent=5))
    assert store.state("urn:ngsi-ld:Subscription:never") == DeliveryState()


def test_states_saved_together_read_back(
    node: NodeConfig, topics: tuple[StoreTopics, Contracts], store: SubscriptionStore
) -> None:
    subs = [sub(f"batch-{n}") for n in range(5)]
    for s in subs:
        store.put(s)
    states = {s.id: DeliveryState(times_sent=n + 1) for n, s in enumerate(subs)}
    store.save_states({**states, "urn:ngsi-ld:Subscription:never": DeliveryState(times_sent=9)})
    again = open_store(node, topics)
    try:
        assert {s.id: again.state(s.id) for s in subs} == states
        assert again.state("urn:ngsi-ld:Subscription:never") == DeliveryState()
    finally:
        again.close()


def test_a_record_that_is_not_ours_is_counted_and_the_rest_read(
    node: NodeConfig, topics: tuple[StoreTopics, Contracts], store: SubscriptionStore
) -> None:
    where, contracts = topics
    store.put(sub("before-garbage"))
    producer = make_producer(node)
    record = {"store": "subscriptions", "key": "x", "value": "{not json", "updated_at": 0}
    garbage = contracts.codec(where.definitions).encode(record)
    producer.produce(where.definitions, key=b"urn:ngsi-ld:Subscription:garbage", value=garbage)
    assert producer.flush(30) == 0
    again = open_store(node, topics)
    try:
        assert again.unreadable == 1
        assert again.get("urn:ngsi-ld:Subscription:before-garbage") is not None
        assert again.get("urn:ngsi-ld:Subscription:garbage") is None
    finally:
        again.close()


def test_missing_topics_and_unstarted_stores_say_what_to_do(
    node: NodeConfig, topics: tuple[StoreTopics, Contracts]
) -> None:
    _, contracts = topics
    where = StoreTopics(f"test.{uuid.uuid4().hex[:8]}.absent", f"test.{uuid.uuid4().hex[:8]}.x")
    codec = contracts.codec(topics[0].definitions)
    missing = SubscriptionStore(node, where, codec, codec)
    with pytest.raises(InfrastructureError, match="citeplus topics apply"):
        missing.start(timeout_s=20)
    with pytest.raises(StoreUnavailable, match="not started"):
        missing.put(sub("early"))
