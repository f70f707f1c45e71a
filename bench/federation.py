"""federation: QueryAggregates latency (median, p99) and Subscribe throughput
(records/s and readings/s) of one node on this machine, in one run.

A node (a ``citeplus federation serve`` process with its own chDB warehouse) is
seeded with --days of 10-minute readings of four sources x four zones x
--entities entities, and answers a partner over mutual TLS on loopback:
- QueryAggregates: --queries sequential calls of each question (hourly NO2 rollups
  of one day; 15-minute energy rollups of a week; hourly energy aggregates of a
  week), each call timed from request to last page;
- Subscribe: --records Observation series of 144 readings published on the node's
  public topic (one record in ten of another dataset, filtered out by the node),
  read from the earliest position to the end in batches of 1000.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from services.federation.protos import pb
from services.runtime.config import load_node_config
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from testkit.federation_nodes import T0, Node, make_authority, observation

T0_S = T0 // 1_000_000


def question(kind: int, granularity: int, hours: int, metrics: list[str]) -> pb.AggregateQuery:
    query = pb.AggregateQuery(kind=kind, granularity=granularity, metrics=metrics, page_size=1000)
    query.start.FromSeconds(T0_S)
    query.end.FromSeconds(T0_S + hours * 3600)
    return query


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="days of readings in the warehouse")
    parser.add_argument("--entities", type=int, default=50, help="entities per source and zone")
    parser.add_argument("--queries", type=int, default=200, help="calls per question")
    parser.add_argument("--records", type=int, default=20_000, help="records to subscribe to")
    args = parser.parse_args(argv)

    node = load_node_config()
    root = Path(tempfile.mkdtemp(prefix="citeplus-bench-federation-"))
    certs = make_authority(root / "certs", ["lyon", "paris"])
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    lyon = Node(
        "lyon",
        root / "lyon",
        certs,
        node.kafka.bootstrap,
        node.registry.url,
        prefix,
        sharing={
            "air": {"level": "open", "licence": "ODbL-1.0"},
            "traffic": {"level": "open", "licence": "ODbL-1.0"},
            "meters": {"level": "shared", "partners": ["paris"]},
        },
        seed_days=args.days,
        seed_entities=args.entities,
    )
    started = time.perf_counter()
    assert lyon.prepare().wait() == 0, "seeding failed"
    readings = 4 * 4 * args.entities * 144 * args.days
    print(f"warehouse: {readings:,} readings seeded in {time.perf_counter() - started:.1f} s")

    spec = replace(load_topics()["public.observations.v1"], name=prefix + "public.observations.v1")
    provision_topics(node, [spec])
    contracts = connect_contracts(node, [spec])
    writer = RecordProducer(make_producer(node), contracts)
    for i in range(args.records):
        source = "traffic" if i % 10 == 9 else "air"
        record = observation(
            "lyon", source, f"z{i % 4 + 1}", i, T0 + (i // 4) * 86_400_000_000, 144
        )
        writer.produce(spec.name, record["entity_pseudonym"], record)
    assert writer.flush(120) == 0
    wanted = sum(1 for i in range(args.records) if i % 10 != 9)

    lyon.start()
    try:
        lyon.wait_ready()
        questions = {
            "NO2 hourly rollups, 1 day, 4 zones": question(
                pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS, pb.GRANULARITY_PT1H, 24, ["no2"]
            ),
            "energy 15-min rollups, 7 days, 4 zones": question(
                pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS,
                pb.GRANULARITY_PT15M,
                24 * 7,
                ["active_energy_import"],
            ),
            "energy aggregates hourly, 7 days, 5 zones": question(
                pb.AGGREGATE_KIND_ENERGY_AGGREGATES, pb.GRANULARITY_PT1H, 24 * 7, []
            ),
        }
        with lyon.client("paris") as client:
            print(f"\nQueryAggregates over mTLS (loopback), {args.queries} calls each:")
            for name, query in questions.items():
                for _ in range(3):  # warm up (connection, caches)
                    list(client.query(query))
                times, rows = [], 0
                for _ in range(args.queries):
                    begin = time.perf_counter()
                    pages = list(client.query(query))
                    times.append((time.perf_counter() - begin) * 1000)
                    rows = sum(len(p.rollups) + len(p.energy) for p in pages)
                print(
                    f"  {name:<44} {rows:>5} rows  median {statistics.median(times):7.2f} ms"
                    f"  p99 {percentile(times, 0.99):7.2f} ms"
                )

            request = pb.SubscribeRequest(dataset="lyon/air", max_batch=1000, stop_at_end=True)
            setattr(request, "from", pb.START_POINT_EARLIEST)
            begin = time.perf_counter()
            received = sum(len(b.records) for b in client.subscribe(request, timeout=600))
            elapsed = time.perf_counter() - begin
        assert received == wanted, (received, wanted)
        print(
            f"\nSubscribe (lyon/air from earliest, {args.records:,} published, one in ten of "
            f"another dataset):\n  {received:,} records of 144 readings in {elapsed:.2f} s: "
            f"{received / elapsed:,.0f} records/s, {received * 144 / elapsed:,.0f} readings/s"
        )
    finally:
        lyon.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
