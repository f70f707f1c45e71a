"""bench/pipeline.py with ``--brokers 3`` and/or ``--workers N``: the load-curve
readings/s of a one-broker, one-worker node and of the node asked for, in the same
run (on two cores expect the ratio, not a gain), then on the latter a broker
SIGKILLed while a load is pushed: the time until every reading pushed is in
ClickHouse (lag back to zero) counted from the kill, and the time until every
partition is in sync again after its restart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.pipeline_load import T0, landed, paris_csv, paris_source, push, throughput
from testkit.local_node import LocalNode


def curves_rate(node: LocalNode, meters: int, first_meter: int = 0) -> float:
    """Load-curve readings/s from the push to ClickHouse on ``node``."""
    url, token = paris_source(node)
    payloads = [
        paris_csv(range(m, m + 20), T0, 144) for m in range(first_meter, first_meter + meters, 20)
    ]
    return throughput(node, (url, token), payloads, meters * 144, workers=4)


def broker_kill_recovery(node: LocalNode, meters: int) -> tuple[float, float]:
    """Push load curves, SIGKILL broker 2 two seconds in; (seconds from the kill until
    every reading pushed is in ClickHouse, seconds from its restart until in sync)."""
    import threading

    url, token = paris_source(node)
    cluster = node.cluster()
    payloads = [paris_csv(range(m, m + 20), T0, 144) for m in range(900_000, 900_000 + meters, 20)]
    before = landed(node)

    def send() -> None:
        with httpx.Client(timeout=120) as client, ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda body: push(client, url, token, body), payloads))

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(2)
    cluster.kill(2)
    killed = time.perf_counter()
    sender.join()
    while landed(node) < before + meters * 144:
        time.sleep(0.25)
        if time.perf_counter() - killed > 900:
            raise SystemExit("readings did not all land within 15 minutes of the kill")
    drained = time.perf_counter() - killed
    restarted = time.perf_counter()
    cluster.restart(2)
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10).topics
    cluster.wait_in_sync([t for t in topics if not t.startswith("__")], timeout_s=300)
    return drained, time.perf_counter() - restarted


def scaled(args: argparse.Namespace) -> int:
    """One broker and one worker, then the node asked for, in the same run."""
    rates: dict[str, float] = {}
    shapes = [
        ("1 broker, 1 worker", 1, 1),
        (f"{args.brokers} brokers, {args.workers} workers", args.brokers, args.workers),
    ]
    recovery: tuple[float, float] | None = None
    for label, brokers, workers in shapes:
        node = LocalNode(
            Path(tempfile.mkdtemp(prefix="citeplus-bench-pipeline-")),
            brokers=brokers,
            workers=workers,
        )
        print(f"\n== {label}: starting a private node in {node.state} ...", flush=True)
        node.up()
        try:
            rates[label] = curves_rate(node, args.meters)
            print(f"    {rates[label]:,.0f} readings/s ingest -> ClickHouse", flush=True)
            if brokers > 1:
                recovery = broker_kill_recovery(node, args.meters)
        finally:
            node.down()
    (base, base_rate), (other, other_rate) = rates.items()
    print(
        f"\nload curves: {base}: {base_rate:,.0f} readings/s; {other}: {other_rate:,.0f} "
        f"readings/s (ratio {other_rate / base_rate:.2f})"
    )
    if recovery is not None:
        print(
            f"broker 2 SIGKILLed under load: every reading in ClickHouse {recovery[0]:.1f} s "
            f"after the kill; every partition in sync {recovery[1]:.1f} s after its restart"
        )
    return 0
