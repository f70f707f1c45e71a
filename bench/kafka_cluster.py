"""Ingest on one broker and on a local 3-broker cluster, then a broker killed.

1. Throughput: the same NDJSON batches (100 meters x 10 readings) pushed through the
   real ingest app (in process, several requests in flight), acknowledged only after
   Kafka committed them (acks=all): on the running broker (replication 1), then on a
   private 3-broker cluster (replication 3, min.insync.replicas 2). On two cores,
   expect a ratio below 1 (three JVMs and twice the bytes to copy), not a gain.
2. A broker down: batches pushed one after another while the broker leading the raw
   topic's partition 0 is SIGKILLed; printed are the longest acknowledgement, the
   time from the kill until a batch sent after it is acknowledged, any 503, and the
   time until every partition is fully in sync once the broker is restarted.

Run with `make bench`, or directly against a running broker and registry
(CITEPLUS_STATE, CITEPLUS_KAFKA_PORT, CITEPLUS_REGISTRY_PORT as for the tests);
the cluster is the bench's own (free ports, a temporary state directory, stopped
at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from services.ingest.core import IngestTopics
from services.ingest.service import build_core
from services.runtime.cities import load_cities
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicSpec, load_topics
from testkit.cluster import LocalCluster
from testkit.ingest import serve_ingest

CITY = """
code: benchville
name: Benchville
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:CITEPLUS_TOKEN_BENCH_CLUSTER", numeric: [wh]}
"""
TOKEN = "bench-cluster-token"
T0 = 1_736_755_200


def batch(index: int, meters: int = 100, per_meter: int = 10) -> bytes:
    lines = []
    for m in range(meters):
        for k in range(per_meter):
            t = T0 + 600 * (index * per_meter + k)
            lines.append(json.dumps({"meter": f"{m:06d}", "t": t, "wh": 100 + (m + k) % 900}))
    return ("\n".join(lines) + "\n").encode()


def scratch_topics(node: NodeConfig) -> dict[str, TopicSpec]:
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    declared = load_topics()
    specs = {
        name: replace(declared[name], name=prefix + name, partitions=3)
        for name in ("raw.v1", "dlq.v1", "raw.dlq.v1")
    }
    provision_topics(node, list(specs.values()))
    return specs


async def push_all(url: str, bodies: list[bytes], in_flight: int) -> int:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            answer = await client.post(url, content=queue.get_nowait(), headers=_headers())
            answer.raise_for_status()
            accepted += answer.json()["accepted"]

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(in_flight)))
    return accepted


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


class Ingest:
    """The ingest app of one node (one broker or the cluster) on scratch topics."""

    def __init__(self, node: NodeConfig, cities_dir: Path):
        self.node = node
        self.specs = scratch_topics(node)
        self.cities = load_cities(cities_dir)
        contracts = connect_contracts(node, list(self.specs.values()))
        topics = IngestTopics(
            raw=self.specs["raw.v1"].name,
            dead_letters=self.specs["dlq.v1"].name,
            raw_dead_letters=self.specs["raw.dlq.v1"].name,
        )
        instance = f"bench-{uuid.uuid4().hex[:8]}"
        self.core = build_core(node, contracts, self.cities, topics=topics, instance=instance)

    def throughput(self, batches: int, in_flight: int) -> float:
        bodies = [batch(i) for i in range(batches)]
        with serve_ingest(self.core, self.cities) as running:
            url = f"{running.url}/v1/cities/benchville/sources/meters/records"
            asyncio.run(push_all(url, bodies[:in_flight], in_flight))  # warm-up
            started = time.perf_counter()
            accepted = asyncio.run(push_all(url, bodies, in_flight))
            return accepted / (time.perf_counter() - started)


def leader_of_partition_zero(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader


def broker_down(cluster: LocalCluster, ingest: Ingest, seconds: float) -> dict[str, Any]:
    """Push batches back to back while a broker is killed; see the module's docstring."""
    victim = leader_of_partition_zero(cluster.bootstrap, ingest.specs["raw.v1"].name)
    answers: list[tuple[float, float, int]] = []  # (sent at, took, status)
    stop = threading.Event()
    with serve_ingest(ingest.core, ingest.cities) as running:
        url = f"{running.url}/v1/cities/benchville/sources/meters/records"

        def pusher() -> None:
            index = 0
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    sent = time.monotonic()
                    answer = client.post(url, content=batch(index % 1000), headers=_headers())
                    answers.append((sent, time.monotonic() - sent, answer.status_code))
                    index += 1

        thread = threading.Thread(target=pusher)
        thread.start()
        time.sleep(2.0)
        killed_at = time.monotonic()
        cluster.kill(victim)
        time.sleep(seconds)
        stop.set()
        thread.join()
    after = [(sent, took) for sent, took, status in answers if sent >= killed_at and status == 200]
    restarted = time.monotonic()
    cluster.restart(victim)
    cluster.wait_in_sync([s.name for s in ingest.specs.values()])
    statuses = Counter(status for _, _, status in answers)
    return {
        "statuses": dict(statuses),
        "victim": victim,
        "batches": len(answers),
        "refused": sum(1 for _, _, status in answers if status != 200),
        "longest_s": max(took for _, took, _ in answers),
        "first_ack_after_kill_s": (after[0][0] + after[0][1] - killed_at)
        if after
        else float("nan"),
        "in_sync_after_restart_s": time.monotonic() - restarted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60, help="batches of 1,000 readings")
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--down-s", type=float, default=20.0, help="pushing after the kill")
    args = parser.parse_args()
    os.environ["CITEPLUS_TOKEN_BENCH_CLUSTER"] = TOKEN
    with tempfile.TemporaryDirectory(prefix="citeplus-bench-cluster-") as tmp:
        cities_dir = Path(tmp) / "cities"
        cities_dir.mkdir()
        (cities_dir / "benchville.yaml").write_text(CITY)
        single = load_node_config()
        one = Ingest(single, cities_dir).throughput(args.batches, args.in_flight)
        started = time.monotonic()
        with LocalCluster.running(Path(tmp) / "cluster") as cluster:
            cluster_start_s = time.monotonic() - started
            on_cluster = cluster.node_config(single)
            three = Ingest(on_cluster, cities_dir).throughput(args.batches, args.in_flight)
            # A fresh app: the one above closed its producer when it stopped serving.
            down = broker_down(cluster, Ingest(on_cluster, cities_dir), args.down_s)
    print(
        f"ingest, {args.batches} batches of 1,000 readings, {args.in_flight} in flight "
        f"(acknowledged after commit, acks=all):"
    )
    print(f"  1 broker,  replication 1:               {one:>10,.0f} readings/s")
    ratio = three / one
    print(f"  3 brokers, replication 3, min.insync 2: {three:>10,.0f} readings/s  ({ratio:.2f}x)")
    print(f"  the 3-broker cluster started in {cluster_start_s:.1f} s")
    print(
        f"broker {down['victim']} (leader of raw partition 0) SIGKILLed while pushing, "
        f"one batch at a time:"
    )
    print(
        f"  {down['batches']} batches, {down['refused']} refused; longest acknowledgement "
        f"{down['longest_s']:.1f} s; first batch sent after the kill acknowledged "
        f"{down['first_ack_after_kill_s']:.1f} s after it (answers: {down['statuses']})"
    )
    print(
        f"  restarted: every partition in sync again after {down['in_sync_after_restart_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
