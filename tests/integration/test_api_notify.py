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

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import grpc
import httpx
import pytest

from services.api.keys import KeyStore, keys_path
from services.federation.protos import pb
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.paths import REPO_ROOT
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from testkit.federation_nodes import T0, Node, make_authority, observation
from testkit.kafka import read_all
from testkit.ports import free_port
from testkit.receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOUND_S = 120.0  # generous: two cores shared by many
SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
AIR = "AirQualityObserved"
METER = "ElectricityMeter"
TYPES = {"air": AIR, "meters": METER, "traffic": "TrafficFlowObserved"}


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
    provision_topics(node, data)
    contracts = connect_contracts(node, data)
    lyon.start().wait_ready()
    receiver = Receiver().start()
    try:
        yield {
            "lyon": lyon,
            "contracts": contracts,
            "public": data[0].name,
            "shared": data[1].name,
            "prefix": prefix,
            "receiver": receiver,
        }
    finally:
        receiver.stop()
        lyon.stop()


def api_env(world, state: Path, port: int) -> dict[str, str]:
    lyon: Node = world["lyon"]
    return {
        **os.environ,
        "CITEPLUS_NODE_STATE_DIR": str(state),
        "CITEPLUS_NODE_ID": "lyon",
        "CITEPLUS_API_PORT": str(port),
        "CITEPLUS_API_SUBSCRIPTIONS_ALLOW_TARGETS": "127.0.0.1",
        "CITEPLUS_KAFKA_BOOTSTRAP": lyon.bootstrap,
        "CITEPLUS_REGISTRY_URL": lyon.registry,
        "CITEPLUS_FEDERATION_IDENTITY": "lyon",
        "CITEPLUS_FEDERATION_LISTEN": lyon.address,
        "CITEPLUS_FEDERATION_CERTS_DIR": str(lyon.certs_dir),
        "CITEPLUS_FEDERATION_PEERS_FILE": str(lyon.root / "federation.yaml"),
    }


def start_api(world, state: Path, port: int) -> subprocess.Popen:
    log = (state / "api.log").open("ab")
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "services.cli", "service", "api"),
            *("--metrics-port", "0", "--topic-prefix", world["prefix"]),
        ],
        cwd=REPO_ROOT,
        env=api_env(world, state, port),
        stdout=log,
        stderr=log,
    )


def answering(process: subprocess.Popen, url: str, token: str) -> None:
    def up() -> bool:
        assert process.poll() is None, "the api exited"
        try:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(url, headers=headers, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    until(up, f"{url} answering")


def subscribe(url: str, token: str, name: str, receiver: Receiver, **extra) -> str:
    document = {
        "type": "Subscription",
        "entities": [{"type": AIR}, {"type": METER}],
        "notification": {"endpoint": {"uri": receiver.url(name), **extra}},
    }
    answer = httpx.post(
        url, json=document, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rsplit("/", 1)[1]


def status(url: str, token: str, sub_id: str) -> dict:
    answer = httpx.get(f"{url}/{sub_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json().get("notification", {})


def publish(node, world, source: str, first: int, count: int) -> None:
    writer = RecordProducer(make_producer(node), world["contracts"])
    topic = world["shared"] if source == "meters" else world["public"]
    for i in range(first, first + count):
        record = observation("lyon", source, f"z{i % 4 + 1}", i, T0 + i * 600_000_000, 3)
        record["entity_type"] = TYPES[source]
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


def test_nothing_is_lost_through_a_receiver_outage_and_a_killed_api(
    node, world, tmp_path: Path
) -> None:
    receiver: Receiver = world["receiver"]
    keys = KeyStore(keys_path(tmp_path))
    tokens = {
        "public": keys.create("notify-public")[1],
        "paris": keys.create("notify-paris", partner="paris")[1],
        "nice": keys.create("notify-nice", partner="nice")[1],
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}{SUBSCRIPTIONS}"
    api = start_api(world, tmp_path, port)
    try:
        answering(api, url, tokens["public"])
        subs = {
            "public": subscribe(url, tokens["public"], "public", receiver),
            "paris": subscribe(url, tokens["paris"], "paris", receiver),
            "nice": subscribe(url, tokens["nice"], "nice", receiver, accept="application/ld+json"),
        }
        publish(node, world, "air", 0, 60)
        publish(node, world, "traffic", 0, 10)
        publish(node, world, "meters", 0, 20)
        until(lambda: len(ids_of(receiver.entities("public"))) >= 60, "the first air records")

        receiver.down = True  # answers 503: delivery retries with back-off
        publish(node, world, "air", 60, 60)
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
        publish(node, world, "air", 120, 30)
        receiver.down = False
        receiver.start()
        api = start_api(world, tmp_path, port)

        expected = published_air_ids(node, world)
        assert len(expected) == 150
        for audience in ("public", "paris", "nice"):
            until(
                lambda a=audience: set(ids_of(receiver.entities(a))) >= expected,
                f"every air record at {audience}",
            )
        until(lambda: len(ids_of(receiver.entities("paris"))) >= 170, "paris's meters")
        answering(api, url, tokens["public"])
        final = status(url, tokens["public"], subs["public"])
    finally:
        if api.poll() is None:
            api.kill()
            api.wait(BOUND_S)

    for audience in ("public", "paris", "nice"):
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
