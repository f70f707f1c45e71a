"""When Kafka is down, ingest answers 503 and keeps nothing of the batch; what it
acknowledged before survives, and the retried batch lands exactly once.

Uses a broker of its own (own state directory and ports) so it can stop it
without disturbing the other tests.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import replace

import httpx
import pytest

from services.infra.kafka_broker import start_broker, stop_broker
from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
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


def free_port_pair() -> int:
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def batch(first: int, count: int) -> bytes:
    return "\n".join(
        f'{{"meter": "m{i}", "wh": {i}}}' for i in range(first, first + count)
    ).encode()


# How long after the broker is back the abandoned producer was seen retrying its epoch
# bump (about 10 s in the runs that failed): batches keep coming through that window.
AFTER_RESTART_S = 14


def producers_of_broker(port: int) -> re.Pattern[str]:
    """A client log line of a producer about the broker on ``port``."""
    return re.compile(rf"rdkafka#(producer-\d+)\|.*127\.0\.0\.1:{port}\b")


def test_broker_down_gives_503_and_loses_nothing_acknowledged(
    node, tmp_path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port_pair()
    monkeypatch.setenv("CITEPLUS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("CITEPLUS_KAFKA_PORT", str(port))
    monkeypatch.setenv("CITEPLUS_KAFKA_CONTROLLER_PORT", str(port + 1))
    monkeypatch.setenv("DOWNTOWN_METERS", "tok")
    (tmp_path / "cities").mkdir()
    (tmp_path / "cities" / "downtown.yaml").write_text(CITY)
    cities = load_cities(tmp_path / "cities")

    own = replace(node, kafka=replace(node.kafka, bootstrap=start_broker(port=port)))
    try:
        declared = load_topics()
        specs = [
            replace(declared[n], name=f"down.{n}", partitions=1)
            for n in ("raw.v1", "dlq.v1", "raw.dlq.v1")
        ]
        provision_topics(own, specs)
        contracts = connect_contracts(own, specs)
        topics = IngestTopics(raw="down.raw.v1", dead_letters="down.dlq.v1")
        core = build_core(own, contracts, cities, topics=topics, timeout_s=4)
        url = None
        with serve_ingest(core, cities) as running:
            url = f"{running.url}/v1/cities/downtown/sources/meters/records"
            headers = {"Authorization": "Bearer tok"}
            first = httpx.post(url, content=batch(0, 5), headers=headers, timeout=60)
            assert first.status_code == 200 and first.json()["accepted"] == 5

            stop_broker()
            started = time.monotonic()
            refused = httpx.post(url, content=batch(100, 5), headers=headers, timeout=60)
            waited = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert refused.json()["retry"] is True and "retry later" in refused.json()["error"]
            assert waited < 30
            # Still down: this batch's producer fails to get its transactional id.
            again = httpx.post(url, content=batch(100, 5), headers=headers, timeout=60)
            assert again.status_code == 503, again.text

            # Every producer that talked to this broker so far was given up (the first
            # in a failed transaction, the next unable to start one); none may outlive it.
            abandoned = set(producers_of_broker(port).findall(capfd.readouterr().err))
            start_broker(port=port)
            retried = httpx.post(url, content=batch(100, 5), headers=headers, timeout=60)
            assert retried.status_code == 200, retried.text
            # The producer of the failed transaction must be gone, not merely dropped:
            # alive, it bumps its epoch once the broker is back and fences its successor.
            later = 0
            back = time.monotonic()
            while time.monotonic() - back < AFTER_RESTART_S:
                time.sleep(1)
                more = httpx.post(url, content=batch(200 + later, 1), headers=headers, timeout=60)
                assert more.status_code == 200, more.text
                later += 1
            after = capfd.readouterr().err
            assert len(abandoned) == 2, (
                f"expected the two given-up producers in the log: {abandoned}"
            )
            assert not [
                line
                for line in after.splitlines()
                if any(f"rdkafka#{name}|" in line for name in abandoned)
            ], f"the abandoned producer {abandoned} still talks to the broker"

        keys = sorted(m.key() for m in read_all(own, "down.raw.v1", expected=10 + later))
        assert keys == sorted(
            f"downtown|meters|m{i}".encode()
            for i in [*range(5), *range(100, 105), *range(200, 200 + later)]
        )
        # Ingest closed: its producer too. Left open, it would try to reach the broker,
        # which is stopped now, for as long as the process lives.
        capfd.readouterr()
        stop_broker()
        time.sleep(2)
        left = producers_of_broker(port).findall(capfd.readouterr().err)
        assert not left, f"producers still talking to the broker after ingest closed: {left}"
    finally:
        stop_broker()
