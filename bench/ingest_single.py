"""Single readings through ingest, raw.v1 against raw.v2, in one run.

Air-quality, traffic, parking and bike systems push one reading per sensor per
request: a request of 1,000 sensors was 1,000 RawRecord messages on raw.v1 (one
per entity), and is a handful of RawBatch messages on raw.v2 (one per partition).
This bench serves two ingest processes side by side on the local broker -- one
writing a prefixed copy of raw.v1, the other of raw.v2, everything else equal --
and pushes the same requests of 1,000 single readings to each, alternating the
two (ABBA...) so that drift in the machine's load falls on both. It prints
readings/s accepted (answered 200 after the batch's transaction committed) for
each, their ratio, the messages per request, and the CPU each spends preparing a
request in process (parse, build, encode; no broker).

On a shared machine the absolute figures move with the load; the ratio is the
figure to read. Run against a running broker and registry, e.g.
``CITEPLUS_KAFKA_PORT=... python bench/ingest_single.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from confluent_kafka.admin import AdminClient
from ingest import push_all, wait_until_up  # bench/ingest.py (run as a script)

from services.ingest.core import IngestCore, IngestTopics
from services.runtime.cities import load_cities
from services.runtime.config import load_node_config
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicSpec, load_topics
from testkit.ports import free_port

CITY = """
code: benchville
name: Benchville
timezone: Europe/Paris
sources:
  - {id: air, format: ndjson, dataset: air-quality, domain: environment, entity: sensor,
     token: "env:CITEPLUS_TOKEN_BENCH_AIR", numeric: [no2]}
"""
NAMES = ("raw.v1", "raw.v2", "dlq.v1", "raw.dlq.v1", "ingest.state.v1")
SENSORS = 1_000


def single_readings(index: int, sensors: int = SENSORS) -> bytes:
    """Request ``index``: one reading of each of ``sensors`` sensors, ten minutes apart."""
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_795_000_000 + 600 * index))
    lines = [
        json.dumps({"sensor": f"aq-{n:05d}", "t": t, "no2": 10.0 + (index * 7 + n) % 60})
        for n in range(sensors)
    ]
    return ("\n".join(lines) + "\n").encode()


def copies(prefix: str) -> list[TopicSpec]:
    declared = load_topics()
    return [replace(declared[name], name=prefix + name) for name in NAMES]


def serve(args: argparse.Namespace) -> int:
    """The child: one ingest writing ``--raw`` (a prefixed copy), served until stopped."""
    from services.ingest.service import build_core, make_app, serve_forever

    node = load_node_config()
    specs = copies(args.prefix)
    contracts = connect_contracts(node, specs)
    cities = load_cities(Path(args.cities))
    topics = IngestTopics(raw=args.prefix + args.raw, dead_letters=args.prefix + "dlq.v1")
    core = build_core(node, contracts, cities, topics=topics, instance=args.instance)
    serve_forever(make_app(core, cities), "127.0.0.1", args.port)
    return 0


def start(raw: str, prefix: str, cities: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--raw",
            raw,
            "--prefix",
            prefix,
            "--cities",
            str(cities),
            "--port",
            str(port),
            "--instance",
            f"bench-single-{raw}-{uuid.uuid4().hex[:8]}",
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process)
    return process, f"{url}/v1/cities/benchville/sources/air/records"


def prepare_cost(
    prefix: str, cities: Path, bodies: list[bytes], rounds: int = 5
) -> dict[str, tuple[float, float, int]]:
    """Per raw version: (median µs per request over ``rounds`` alternated rounds,
    messages per request, bytes per request), preparing the same requests in this
    process (parse, build, encode; no broker)."""
    node = load_node_config()
    contracts = connect_contracts(node, copies(prefix))
    source = load_cities(cities)["benchville"].source("air")
    cores = {
        raw: IngestCore(
            contracts,
            None,
            topics=IngestTopics(raw=prefix + raw, dead_letters=prefix + "dlq.v1"),
        )
        for raw in ("raw.v1", "raw.v2")
    }
    times: dict[str, list[float]] = {raw: [] for raw in cores}
    for r in range(rounds):
        for raw in sorted(cores, reverse=r % 2 == 1):
            started = time.perf_counter()
            results = [cores[raw].prepare(source, body) for body in bodies]
            times[raw].append((time.perf_counter() - started) / len(bodies) * 1e6)
    out = {}
    for raw, core in cores.items():
        results = [core.prepare(source, body) for body in bodies]
        messages = sum(r.raw_messages for r in results) / len(results)
        size = sum(len(m[2]) for r in results for m in r.messages) / len(results)
        out[raw] = (statistics.median(times[raw]), messages, size)
    return out


def push_alternated(
    args: argparse.Namespace, prefix: str, work: Path, token: str, bodies: list[bytes]
) -> dict[str, list[float]]:
    """Readings/s of each round and side, the two ingests serving side by side."""
    readings = SENSORS * len(bodies)
    servers = {raw: start(raw, prefix, work) for raw in ("raw.v1", "raw.v2")}
    rates: dict[str, list[float]] = {"raw.v1": [], "raw.v2": []}
    try:
        for r in range(args.rounds):
            order = ("raw.v1", "raw.v2") if r % 2 == 0 else ("raw.v2", "raw.v1")
            for raw in order:
                started = time.perf_counter()
                accepted = asyncio.run(push_all(servers[raw][1], token, bodies, args.in_flight))
                assert accepted == readings, (raw, accepted, readings)
                rates[raw].append(readings / (time.perf_counter() - started))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(30)
    return rates


def measure(args: argparse.Namespace) -> int:
    node = load_node_config()
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    work = Path(tempfile.mkdtemp(prefix="citeplus-bench-single-"))
    (work / "benchville.yaml").write_text(CITY)
    token = uuid.uuid4().hex
    os.environ["CITEPLUS_TOKEN_BENCH_AIR"] = token
    provision_topics(node, copies(prefix))
    bodies = [single_readings(i) for i in range(args.requests)]
    print(
        f"Single readings through ingest: {args.rounds} alternated rounds of {len(bodies)} "
        f"requests x {SENSORS:,} sensors x 1 reading, {args.in_flight} requests in flight, "
        f"broker {node.kafka.bootstrap}, topics {prefix}*",
        flush=True,
    )
    try:
        rates = push_alternated(args, prefix, work, token, bodies)
        report(rates, prepare_cost(prefix, work, bodies[: min(20, len(bodies))]))
    finally:
        admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
        for done in admin.delete_topics([prefix + name for name in NAMES]).values():
            done.result()
    return 0


def report(rates: dict[str, list[float]], costs: dict[str, tuple[float, float, int]]) -> None:
    print(f"\n{'raw topic':10} {'readings/s median':>18} {'[min-max]':>22} {'msgs/request':>13}")
    print(f"{'':10} {'':>18} {'':>22} {'µs/request':>13} {'bytes/request':>14}")
    for raw, values in rates.items():
        us, messages, size = costs[raw]
        spread = f"[{min(values):,.0f}-{max(values):,.0f}]"
        print(
            f"{raw:10} {statistics.median(values):>18,.0f} {spread:>22} {messages:>13,.1f} "
            f"{us:>13,.0f} {size:>14,.0f}"
        )
    v1, v2 = (statistics.median(rates[raw]) for raw in ("raw.v1", "raw.v2"))
    paired = [b / a for a, b in zip(rates["raw.v1"], rates["raw.v2"], strict=True)]
    print(
        f"\nraw.v2 / raw.v1 accepted readings/s: {v2 / v1:.2f} (median of the paired rounds "
        f"{statistics.median(paired):.2f}); in process, preparing a request costs "
        f"{costs['raw.v2'][0] / costs['raw.v1'][0]:.2f} x on raw.v2. Figures under the "
        "machine's load: read the ratios."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per side and round")
    parser.add_argument("--rounds", type=int, default=4, help="alternated rounds (ABBA)")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent HTTP requests")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--cities", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return serve(args) if args.serve else measure(args)


if __name__ == "__main__":
    sys.exit(main())
