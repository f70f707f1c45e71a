"""A federation node and the real api service beside it, for the notification tests
and bench: lyon's ``citeplus federation serve`` on the test broker (its public topics
under a prefix), ``citeplus service api`` reading through it with lyon's certificate,
notification targets on loopback allowed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from services.runtime.config import NodeConfig
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.paths import REPO_ROOT
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from testkit.federation_nodes import T0, Node, make_authority, observation

BOUND_S = 120.0  # generous: two cores shared by many
SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
AIR = "AirQualityObserved"
METER = "ElectricityMeter"
TYPES = {"air": AIR, "meters": METER, "traffic": "TrafficFlowObserved"}
DATA_TOPICS = (
    "public.observations.v1",
    "public.shared.paris.observations.v1",
    "public.energy.aggregates.v2",
)


def until(condition: Callable[[], Any], what: str, bound: float = BOUND_S) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {bound:g} s: {what}")


@dataclass
class NotifyWorld:
    lyon: Node
    prefix: str
    contracts: Any
    public: str
    shared: str

    def start_lyon(self) -> None:
        self.lyon.start().wait_ready()

    def api_env(self, state: Path, port: int) -> dict[str, str]:
        lyon = self.lyon
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

    def start_api(self, state: Path, port: int) -> subprocess.Popen:
        log = (state / "api.log").open("ab")
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "services.cli", "service", "api"),
                *("--metrics-port", "0", "--topic-prefix", self.prefix),
            ],
            cwd=REPO_ROOT,
            env=self.api_env(state, port),
            stdout=log,
            stderr=log,
        )

    def writer(self, node: NodeConfig) -> RecordProducer:
        return RecordProducer(make_producer(node, **{"linger.ms": 5}), self.contracts)

    def publish(
        self,
        node: NodeConfig,
        source: str,
        first: int,
        count: int,
        on_produce: Any = None,
        writer: RecordProducer | None = None,
    ) -> None:
        """``count`` records of ``source`` (entities ``first``..), as publish writes them."""
        writer = writer or self.writer(node)
        topic = self.shared if source == "meters" else self.public
        for i in range(first, first + count):
            record = observation("lyon", source, f"z{i % 4 + 1}", i, T0 + i * 600_000_000, 3)
            record["entity_type"] = TYPES[source]
            writer.produce(topic, record["entity_pseudonym"], record)
            if on_produce is not None:
                on_produce(record)
        assert writer.flush() == 0


def notify_world(node: NodeConfig, root: Path) -> NotifyWorld:
    """Lyon prepared (not started): air and traffic open, meters (personal) shared with
    paris, water (personal) marked open; its public topics created."""
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
    data = [replace(declared[n], name=prefix + n) for n in DATA_TOPICS]
    provision_topics(node, data)
    contracts = connect_contracts(node, data)
    return NotifyWorld(lyon, prefix, contracts, data[0].name, data[1].name)


def answering(process: subprocess.Popen, url: str, token: str) -> None:
    def up() -> bool:
        assert process.poll() is None, "the api exited"
        try:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(url, headers=headers, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    until(up, f"{url} answering")


def subscribe(url: str, token: str, uri: str, types: tuple[str, ...], **endpoint: Any) -> str:
    """A subscription made over HTTP; its id."""
    document = {
        "type": "Subscription",
        "entities": [{"type": t} for t in types],
        "notification": {"endpoint": {"uri": uri, **endpoint}},
    }
    answer = httpx.post(
        url, json=document, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["Location"].rsplit("/", 1)[1]


def status(url: str, token: str, sub_id: str) -> dict:
    """The subscription's ``notification`` member (its delivery status)."""
    answer = httpx.get(f"{url}/{sub_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json().get("notification", {})
