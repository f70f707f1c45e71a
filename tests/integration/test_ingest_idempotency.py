"""Idempotent pushes over HTTP against the real broker: a push retried with its
``Idempotency-Key`` lands once and gets the first answer again, also from an ingest
restarted over the same state topic; the same key with another body is refused;
concurrent retries land once; pushes without a key behave as before; the command
line's own retries (simulate, file ingest) reuse their keys."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from services.ingest.core import IngestTopics
from services.ingest.files import ingest_paths
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from services.simulate.generator import Payload
from services.simulate.push import Pusher
from testkit.ingest import serve_ingest

pytestmark = pytest.mark.integration

CITY = """
code: keyville
name: Keyville
timezone: Europe/Paris
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:KV_METERS", numeric: [wh]}
"""
URL = "/v1/cities/keyville/sources/meters/records"


def batch(meters: list[str], wh: int = 100) -> bytes:
    """One reading per meter; identical bodies are legitimate (an index that does not move)."""
    return "\n".join(json.dumps({"meter": m, "t": 1736755200, "wh": wh}) for m in meters).encode()


@pytest.fixture()
def keyville(node, isolated_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KV_METERS", "tok-kv")
    (tmp_path / "keyville.yaml").write_text(CITY)
    cities = load_cities(tmp_path)
    specs, contracts = isolated_topics(
        "raw.v1", "dlq.v1", "raw.dlq.v1", "ingest.state.v1", partitions=2
    )
    topics = IngestTopics(raw=specs["raw.v1"].name, dead_letters=specs["dlq.v1"].name)

    def start(instance: str):
        core = build_core(node, contracts, cities, topics=topics, instance=instance)
        return serve_ingest(core, cities)

    def landed() -> list[str]:
        """Entity ids on raw: every committed record, read to the end of each partition."""
        codec = contracts.codec(topics.raw)
        return sorted(codec.decode(value)["entity_id"] for value in read_to_end(node, topics.raw))

    return start, landed, cities


def read_to_end(node, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every committed value of ``topic`` up to the end of each partition (the EOF
    event comes at the last stable offset): no waiting for silence."""
    consumer = Consumer(
        {
            "bootstrap.servers": node.kafka.bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining, values = set(partitions), []
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.05):
                error = message.error()
                if error is None:
                    values.append(message.value())
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
        assert not remaining, f"{topic}: partitions {sorted(remaining)} not read to their end"
        return values
    finally:
        consumer.close()


def post(url: str, body: bytes, key: str | None) -> httpx.Response:
    headers = {"Authorization": "Bearer tok-kv"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(url + URL, content=body, headers=headers, timeout=60)


def test_a_push_retried_three_times_lands_once_with_the_first_answer(keyville):
    start, landed, _ = keyville
    key = str(uuid.uuid4())
    with start("a") as running:
        answers = [post(running.url, batch(["m1", "m2"]), key) for _ in range(4)]
        other = post(running.url, batch(["m1", "m9"], wh=7), key)  # not a retry: refused
        bad_key = post(running.url, batch(["m3"]), "key with\tcontrol")
    first = answers[0]
    assert first.status_code == 200 and first.json()["accepted"] == 2
    assert "Idempotent-Replayed" not in first.headers
    for retry in answers[1:]:
        assert (retry.status_code, retry.content) == (first.status_code, first.content)
        assert retry.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert "different body" in other.json()["error"] and "new key" in other.json()["error"]
    assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.json()["error"]
    assert landed() == ["m1", "m2"]


def test_the_first_answer_survives_a_restart_of_ingest(keyville):
    start, landed, _ = keyville
    key = "batch-2025-01-13-meters"
    with start("before") as running:
        first = post(running.url, batch(["m1"]), key)
    with start("after") as running:  # a new core and app: only the state topic remembers
        retry = post(running.url, batch(["m1"]), key)
    assert (retry.status_code, retry.content) == (200, first.content)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert landed() == ["m1"]


def test_concurrent_retries_land_once_and_unkeyed_identical_pushes_land_each(keyville):
    start, landed, _ = keyville
    key = str(uuid.uuid4())
    body = batch(["m1", "m2", "m3"])
    with start("a") as running, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(running.url, body, key), range(6)))
        # without a key, identical bodies are distinct pushes (a meter that did not move)
        same = [post(running.url, batch(["still"]), None) for _ in range(2)]
    assert {(a.status_code, a.content) for a in answers} == {(200, answers[0].content)}
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert [s.status_code for s in same] == [200, 200]
    assert same[0].json()["lineage_id"] != same[1].json()["lineage_id"]
    assert landed() == ["m1", "m2", "m3", "still", "still"]


class LosesFirstAnswer(httpx.HTTPTransport):
    """The node commits the first request but its answer never arrives (a timeout)."""

    lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not self.lost:
            self.lost = True
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_simulate_and_file_ingest_retry_with_their_own_keys(keyville, tmp_path: Path):
    start, landed, cities = keyville
    source = cities["keyville"].source("meters")
    export = tmp_path / "export.ndjson"
    export.write_bytes(batch(["f1", "f2"]))
    with start("a") as running:
        pusher = Pusher(
            running.url,
            [source],
            client=httpx.Client(transport=LosesFirstAnswer(), timeout=60),
            sleep=lambda _: None,
        )
        report = pusher.push(
            [Payload("keyville", "meters", "application/x-ndjson", batch(["s1"]), 1)]
        )
        pusher.close()
        # `citeplus ingest` run twice over one export (the first run's outcome unknown)
        first = ingest_paths(running.core, source, [export], show_progress=False, keys="file")
        again = ingest_paths(running.core, source, [export], show_progress=False, keys="file")
    assert report.ok and report.of("keyville", "meters").accepted == 1
    assert (first.accepted, first.earlier) == (2, 0)
    assert (again.accepted, again.earlier) == (2, 1)
    assert landed() == ["f1", "f2", "s1"]


def test_a_starting_ingest_tells_a_missing_state_topic_from_a_broker_it_cannot_reach(
    node, isolated_topics
) -> None:
    """An ingest that came up beside a restarting broker took "no answer" for "no state
    topic" and refused every keyed push (503) until restarted (found by the crash run:
    the pushes gave up after ten tries). Only the brokers' own "unknown topic" means
    missing; no answer is waited for, then an error the supervisor restarts on."""
    from services.ingest.idempotency_restore import _partitions
    from services.runtime.errors import CiteplusError
    from testkit.local_node import free_port_block

    specs, _ = isolated_topics("ingest.state.v1", partitions=3)
    assert _partitions(node, specs["ingest.state.v1"].name) == [0, 1, 2]
    assert _partitions(node, f"test.{uuid.uuid4().hex[:8]}.ingest.state.v1") == []

    closed = f"127.0.0.1:{free_port_block(1)}"  # nothing listens there: no broker answers
    unreachable = replace(node, kafka=replace(node.kafka, bootstrap=closed))
    started = time.monotonic()
    with pytest.raises(CiteplusError, match="is Kafka up"):
        _partitions(unreachable, "ingest.state.v1", wait_s=2)
    assert time.monotonic() - started >= 2  # waited for an answer before giving up
