"""Cité+ on a 3-broker KRaft cluster, with brokers killed under ingest's feet.

One private cluster for the module (testkit/cluster.py: own state directory and
free ports, stopped at the end even on failure); the shared test broker is not
touched. Topics are replicated 3 times and a write needs 2 in sync: with one
broker killed ingest keeps acknowledging, with two killed it answers 503 with
Retry-After and keeps nothing; once the brokers are back, every acknowledged
batch (and every retried one) is on the topic exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.node.kafka_health import kafka_health, render_kafka_health
from services.runtime.cities import load_cities
from services.runtime.config import NodeConfig
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import ProvisionReport, TopicSpec, load_topics, provision
from testkit.cluster import LocalCluster
from testkit.ingest import serve_ingest
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

CITY = """
code: downtown
name: Downtown
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:DOWNTOWN_METERS"}
"""
HEADERS = {"Authorization": "Bearer tok"}
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster.running(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def own(cluster: LocalCluster, node: NodeConfig) -> NodeConfig:
    return cluster.node_config(node)


@pytest.fixture(scope="module")
def specs(own: NodeConfig) -> dict[str, TopicSpec]:
    prefix = f"test.{uuid.uuid4().hex[:8]}."
    declared = load_topics()
    made = {
        name: replace(declared[name], name=prefix + name, partitions=3)
        for name in ("raw.v1", "dlq.v1", "raw.dlq.v1")
    }
    provision_topics(own, list(made.values()))
    return made


def batch(first: int, count: int = 4) -> bytes:
    return "\n".join(
        f'{{"meter": "m{i}", "wh": {i}}}' for i in range(first, first + count)
    ).encode()


def keys_of(first: int, count: int = 4) -> list[bytes]:
    return [f"downtown|meters|m{i}".encode() for i in range(first, first + count)]


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], bound_s: float = 60.0) -> T:
    """``probe()`` once ``ok`` holds for it (the cluster notices a crash in seconds)."""
    deadline = time.monotonic() + bound_s
    while True:
        value = probe()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def _topic_configs(admin: AdminClient, topic: ConfigResource) -> dict | None:
    """A topic's configuration, or None while the broker asked does not know it yet."""
    try:
        return admin.describe_configs([topic])[topic].result()
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise


def set_min_insync(node: NodeConfig, topic: str, value: str) -> None:
    entry = ConfigEntry("min.insync.replicas", value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    admin.incremental_alter_configs([resource])[resource].result()


def test_topics_and_internal_topics_are_replicated_three_times(
    own: NodeConfig, specs: dict[str, TopicSpec]
) -> None:
    admin = AdminClient({"bootstrap.servers": own.kafka.bootstrap})
    raw = specs["raw.v1"].name
    described = eventually(
        lambda: admin.list_topics(raw, timeout=10).topics[raw].partitions,
        lambda found: len(found) == 3,  # a new topic's metadata reaches every broker soon
    )
    partitions = described.values()
    assert {len(p.replicas) for p in partitions} == {3}
    topic = ConfigResource(ConfigResource.Type.TOPIC, raw)
    # The broker asked may not have the new topic's metadata yet (UNKNOWN_TOPIC_OR_PART).
    configs = eventually(lambda: _topic_configs(admin, topic), lambda found: found is not None)
    assert configs is not None, f"{raw}'s configuration was never described"
    assert configs["min.insync.replicas"].value == "2"
    assert configs["unclean.leader.election.enable"].value == "false"
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    settings = admin.describe_configs([broker])[broker].result()
    for key, wanted in {
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "min.insync.replicas": "2",
        "default.replication.factor": "3",
        "unclean.leader.election.enable": "false",
    }.items():
        assert settings[key].value == wanted, key

    again = provision_topics(own, list(specs.values()))
    assert set(again.verified) == {s.name for s in specs.values()}
    # A topic made by hand at 3 replicas but accepting writes held by one: reported.
    loose = f"{raw}.loose"
    admin.create_topics(
        [NewTopic(loose, 3, 3, config={"min.insync.replicas": "1"})], operation_timeout=30
    )[loose].result()

    def verify_loose() -> ProvisionReport | None:
        try:
            return provision(admin, [replace(specs["raw.v1"], name=loose)], 3)
        except KafkaException:  # the new topic not known to every broker yet
            return None

    report = eventually(verify_loose, lambda found: found is not None)
    assert report is not None
    [problem] = report.mismatches
    assert "min.insync.replicas=1 (node wants 2 with 3 replicas" in problem


def test_brokers_killed_under_ingest(
    cluster: LocalCluster, own: NodeConfig, specs: dict[str, TopicSpec], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DOWNTOWN_METERS", "tok")
    (tmp_path / "cities").mkdir()
    (tmp_path / "cities" / "downtown.yaml").write_text(CITY)
    cities = load_cities(tmp_path / "cities")
    contracts = connect_contracts(own, list(specs.values()))
    topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)
    topics = replace(topics, raw_dead_letters=specs["raw.dlq.v1"].name)
    names = [s.name for s in specs.values()]
    core = build_core(own, contracts, cities, topics=topics)  # the node's commit bound
    acknowledged: list[int] = []

    with serve_ingest(core, cities) as running:
        url = f"{running.url}/v1/cities/downtown/sources/meters/records"

        def push(first: int) -> httpx.Response:
            answer = httpx.post(url, content=batch(first), headers=HEADERS, timeout=120)
            if answer.status_code == 200:
                acknowledged.append(first)
            return answer

        assert push(0).status_code == 200
        # The transaction log is created by ingest's first transaction: in sync soon after.
        assert eventually(lambda: kafka_health(own), lambda h: h.clean).clean

        # One broker crashes: 2 replicas of 3 remain in sync, writes go on.
        cluster.kill(3)
        for first in (100, 200, 300):
            answer = push(first)
            assert answer.status_code == 200, answer.text
        health = eventually(lambda: kafka_health(own), lambda h: h.down == [3])
        assert health.under_replicated and not health.offline
        assert "DOWN 3" in render_kafka_health(health)

        # Fewer replicas in sync than the topic demands (the controller still works):
        # the brokers refuse with NOT_ENOUGH_REPLICAS, ingest answers 503, keeps nothing.
        set_min_insync(own, topics.raw, "3")
        answer = push(500)
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        set_min_insync(own, topics.raw, "2")
        assert push(500).status_code == 200

        # A second one: fewer in sync than min.insync.replicas, nothing is acknowledged.
        cluster.kill(2)
        refused = []
        for first in (1000,):
            answer = push(first)
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["retry"] is True
            refused.append(first)

        cluster.restart(2)
        cluster.restart(3)
        # The client's retries, once the brokers are back: as long as ingest says to
        # retry (a 503 while its producer re-initialises beside the coordinator still
        # aborting the killed transaction), after the Retry-After it gives; bounded.
        for first in [*refused, 2000]:
            answer = push(first)
            deadline = time.monotonic() + 180
            while answer.status_code == 503 and time.monotonic() < deadline:
                assert answer.json()["retry"] is True, answer.text
                time.sleep(int(answer.headers["Retry-After"]))
                answer = push(first)
            assert answer.status_code == 200, answer.text

    cluster.wait_in_sync(names)
    # The internal topics (offsets, transactions) catch up too: status clean again.
    health = eventually(lambda: kafka_health(own), lambda h: h.clean, bound_s=120)
    assert health.clean, render_kafka_health(health)
    wanted = [key for first in acknowledged for key in keys_of(first)]
    landed = Counter(m.key() for m in read_all(own, topics.raw, expected=len(wanted)))
    assert sorted(landed) == sorted(wanted)  # nothing acknowledged lost, nothing refused kept
    assert set(landed.values()) == {1}, "a batch landed twice"
