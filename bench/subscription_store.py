"""What keeping subscriptions in Kafka costs: the wait a POST/PATCH/DELETE adds (one
record produced with acks=all and flushed before the answer), the wait of each state
the delivery engine saves, and how long a restarted api takes to read N subscriptions
and their states back before it serves. Runs on prefixed copies of the two topics of
the node's broker (``bench.*``, deleted at the end). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid
from dataclasses import replace

from services.api.subscriptions.model import (
    DeliveryState,
    EntitySelector,
    Subscription,
    iso,
    state_to_json,
    subscription_to_json,
)
from services.api.subscriptions.store import StoreTopics, SubscriptionStore
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import make_producer, produce_bytes
from services.runtime.provisioning import (
    connect_contracts,
    delete_scratch_topics,
    provision_topics,
)
from services.runtime.topics import TopicName, load_topics

NAMES = (TopicName.API_SUBSCRIPTIONS, TopicName.API_SUBSCRIPTION_STATE)


def subscription(n: int) -> Subscription:
    return Subscription(
        id=f"urn:ngsi-ld:Subscription:{n:08d}",
        owner=f"k{n % 500:016x}",
        audience="public",
        endpoint_uri=f"https://receiver-{n % 100}.example.org/notify",
        created_at=iso(dt.datetime.now(dt.UTC)),
        entities=(EntitySelector("AirQualityObserved", id_pattern=".*FR04"),),
        watched_attributes=("no2", "pm10"),
        q="no2>40",
    )


def state(n: int) -> DeliveryState:
    positions = {"lyon": {"observations": {"partition": n % 3, "offset": n * 10}}}
    return DeliveryState(times_sent=n, status="ok", positions=positions)


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms"


def timed(calls: list) -> list[float]:
    took = []
    for call in calls:
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500, help="timed puts and state saves")
    parser.add_argument("--held", type=int, default=20_000, help="subscriptions read back")
    args = parser.parse_args(argv)
    node = load_node_config()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    declared = load_topics()
    specs = [replace(declared[n], name=prefix + n) for n in NAMES]
    provision_topics(node, specs)
    contracts = connect_contracts(node, specs)
    where = StoreTopics(specs[0].name, specs[1].name)

    def opened() -> SubscriptionStore:
        store = SubscriptionStore(
            node, where, contracts.codec(where.definitions), contracts.codec(where.states)
        )
        store.start()
        return store

    try:
        store = opened()
        subs = [subscription(n) for n in range(args.writes)]
        puts = timed([lambda s=s: store.put(s) for s in subs])
        saves = timed(
            [lambda s=s, n=n: store.save_state(s.id, state(n)) for n, s in enumerate(subs)]
        )
        print(f"subscription store: a confirmed put (acks=all, flushed) {percentiles(puts)}")
        print(f"subscription store: a confirmed state save {percentiles(saves)}")
        store.close()
        started = time.perf_counter()
        _fill(node, where, contracts, args.writes, args.held)
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        again = opened()
        restore_s = time.perf_counter() - started
        print(
            f"subscription store: {len(again):,} subscriptions and their states read back "
            f"in {restore_s:.2f} s at start ({len(again) / restore_s:,.0f}/s; filled in "
            f"{fill_s:.1f} s)"
        )
        again.close()
    finally:
        delete_scratch_topics(node, (prefix,))
    return 0


def _fill(node: NodeConfig, where: StoreTopics, contracts: Contracts, start: int, end: int) -> None:
    """The rest of the subscriptions and states, produced in bulk (one flush)."""
    producer = make_producer(node)
    now = int(time.time() * 1e6)
    for n in range(start, end):
        sub = subscription(n)
        for topic, store, document in (
            (where.definitions, "subscriptions", subscription_to_json(sub)),
            (where.states, "subscription-state", state_to_json(state(n))),
        ):
            record = {"store": store, "key": sub.id, "value": document, "updated_at": now}
            produce_bytes(producer, topic, sub.id, contracts.codec(topic).encode(record))
        if n % 1000 == 0:
            producer.poll(0)
    producer.flush(120)


if __name__ == "__main__":
    raise SystemExit(main())
