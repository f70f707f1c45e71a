"""The whole node on this machine: the five services, the broker and the
registry, measured from the HTTP ingest API to rows in ClickHouse.

(1) sustained readings/s with meter load curves sent as a city would (a day of
    10-minute readings per meter per payload) and with single readings (one
    reading per meter per payload);
(2) end-to-end latency p50/p99 at a fixed offered load (default 5,000 readings/s),
    from the HTTP push to the row in ClickHouse (observations.landed_at);
(3) resident memory of every process;
and the throughput as a ratio to the Kafka ceiling measured in the same run.
The node is a private one (own state, ports and broker): nothing else is disturbed.

With ``--brokers 3`` and/or ``--workers N``: the load-curve readings/s of a one-broker,
one-worker node and of the node asked for, in the same run (on two cores expect the
ratio, not a gain), then on the latter a broker SIGKILLed while a load is pushed: the
time until every reading pushed is in ClickHouse (lag back to zero) counted from the
kill, and the time until every partition is in sync again after its restart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from testkit.local_node import LocalNode

T0 = 1_736_722_800  # 2025-01-13T00:00:00+01:00, epoch seconds


def paris_csv(meters: range, start: int, intervals: int, step: int = 600) -> bytes:
    """Paris's transport (Enedis-style export): `;`, decimal comma, naive local times,
    kWh per interval. Its source declares consent, so 10-minute curves are kept."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    lines = ["prm;iris;secteur;horodate;pas;energie_kwh"]
    for meter in meters:
        prm = f"{19_000_000_000_000 + meter:014d}"
        zone = f"75101{meter % 60:04d}"
        sector = "residentiel" if meter % 4 else "professionnel"
        for k in range(intervals):
            local = dt.datetime.fromtimestamp(start + k * step, paris).strftime("%Y-%m-%d %H:%M:%S")
            kwh = f"{0.04 + ((meter * 7 + k * 13) % 300) / 1000:.3f}".replace(".", ",")
            lines.append(f"{prm};{zone};{sector};{local};PT10M;{kwh}")
    return ("\n".join(lines) + "\n").encode()


def push(client: httpx.Client, url: str, token: str, body: bytes) -> dict:
    for attempt in range(20):
        response = client.post(url, content=body, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            return response.json()
        time.sleep(0.2 * (attempt + 1))
    response.raise_for_status()
    return {}


def landed(node: LocalNode) -> int:
    return (
        node.sql(
            "SELECT count() AS n FROM observations "
            "WHERE city = 'paris' AND metric = 'active_energy_import'"
        )
        .column("n")[0]
        .as_py()
    )


def throughput(
    node: LocalNode, url: str, token: str, payloads: list[bytes], readings: int, workers: int
) -> float:
    before = landed(node)
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda body: push(client, url, token, body), payloads))
    pushed_s = time.perf_counter() - started
    while landed(node) < before + readings:
        time.sleep(0.25)
        if time.perf_counter() - started > 900:
            raise SystemExit("readings did not all land within 15 minutes")
    total_s = time.perf_counter() - started
    print(f"    pushed in {pushed_s:.1f} s, all in ClickHouse after {total_s:.1f} s", flush=True)
    return readings / total_s


def latency(node: LocalNode, url: str, token: str, rate: int, seconds: int) -> list[float]:
    """Offer `rate` readings/s in 10 batches per second; latency per batch to ClickHouse."""
    per_batch = max(1, rate // 10)
    sent: dict[str, float] = {}
    meter_base = 500_000
    with httpx.Client(timeout=60) as client:
        next_at = time.perf_counter()
        for i in range(seconds * 10):
            body = paris_csv(
                range(meter_base + i * per_batch, meter_base + (i + 1) * per_batch),
                T0 + 86400 * 30,
                1,
            )
            answer = push(client, url, token, body)
            sent[answer["lineage_id"]] = time.time()
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.time() + 120
    done: dict[str, float] = {}
    while time.time() < deadline and len(done) < len(sent):
        rows = node.sql(
            "SELECT lineage_id, toUnixTimestamp64Milli(max(landed_at)) AS at FROM observations "
            "WHERE city = 'paris' AND metric = 'active_energy_import' GROUP BY lineage_id"
        ).to_pylist()
        done = {r["lineage_id"]: r["at"] / 1000 for r in rows if r["lineage_id"] in sent}
        time.sleep(1.0)
    return sorted(done[k] - sent[k] for k in done)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def paris_source(node: LocalNode) -> tuple[str, str]:
    """The URL and token of Paris's load-curve source on ``node``."""
    from services.runtime.cities import load_cities
    from services.runtime.dev_secrets import dev_env_file, read_env_file
    from services.runtime.paths import CITIES_DIR

    reference = load_cities(CITIES_DIR)["paris"].source("enedis-courbes-charge").token
    token = read_env_file(dev_env_file(node.state))[reference.removeprefix("env:")]
    return f"{node.ingest_url}/v1/cities/paris/sources/enedis-courbes-charge/records", token


def curves_rate(node: LocalNode, meters: int, first_meter: int = 0) -> float:
    """Load-curve readings/s from the push to ClickHouse on ``node``."""
    url, token = paris_source(node)
    payloads = [
        paris_csv(range(m, m + 20), T0, 144) for m in range(first_meter, first_meter + meters, 20)
    ]
    return throughput(node, url, token, payloads, meters * 144, workers=4)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000, help="meters for the load-curve run")
    parser.add_argument(
        "--singles", type=int, default=100_000, help="readings for the single-reading run"
    )
    parser.add_argument(
        "--rate", type=int, default=5000, help="offered load for latency (readings/s)"
    )
    parser.add_argument("--seconds", type=int, default=20, help="duration of the latency run")
    parser.add_argument(
        "--brokers", type=int, choices=(1, 3), default=1, help="brokers of the node (1 or 3)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="workers of each scalable stage (default 1)"
    )
    args = parser.parse_args(argv)
    if args.brokers > 1 or args.workers > 1:
        return scaled(args)

    node = LocalNode(Path(tempfile.mkdtemp(prefix="citeplus-bench-pipeline-")))
    print(f"starting a private node in {node.state} ...", flush=True)
    node.up()
    try:
        url, token = paris_source(node)

        print(
            "\n(1a) load curves: a day of 10-minute readings per meter, 20 meters per payload",
            flush=True,
        )
        payloads = [paris_csv(range(m, m + 20), T0, 144) for m in range(0, args.meters, 20)]
        curves = throughput(node, url, token, payloads, args.meters * 144, workers=4)
        print(f"    {curves:,.0f} readings/s ingest -> ClickHouse ({args.meters * 144:,} readings)")

        print("\n(1b) single readings: one reading per meter, 1,000 meters per payload", flush=True)
        payloads = [
            paris_csv(range(100_000 + m, 100_000 + m + 1000), T0 + 86400 * 10, 1)
            for m in range(0, args.singles, 1000)
        ]
        singles = throughput(node, url, token, payloads, args.singles, workers=4)
        print(f"    {singles:,.0f} readings/s ingest -> ClickHouse ({args.singles:,} readings)")

        print(f"\n(2) latency at {args.rate:,} readings/s offered for {args.seconds} s", flush=True)
        lat = latency(node, url, token, args.rate, args.seconds)
        if lat:
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"    {len(lat)} batches: p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms")

        print("\n(3) resident memory", flush=True)
        pids = {**node.service_pids(), "kafka broker": node.broker_pid()}
        registry_pid = node.state / "registry" / "registry.pid"
        if registry_pid.exists():
            pids["schema registry"] = int(registry_pid.read_text().strip())
        for name, pid in pids.items():
            if pid:
                print(f"    {name:18} {rss_mb(pid):8.0f} MB")

        print(
            "\n(4) Kafka ceiling in the same run (bare confluent-kafka, 144-point series)",
            flush=True,
        )
        from dataclasses import replace

        from bench.kafka_ceiling import consume_bare, produce_bare, records
        from services.runtime.config import load_node_config
        from services.runtime.provisioning import connect_contracts, provision_topics
        from services.runtime.topics import load_topics

        config = load_node_config(env=node.env)
        spec = replace(load_topics()["observations.v1"], name="bench.ceiling.observations")
        provision_topics(config, [spec])
        contracts = connect_contracts(config, [spec])
        data = records(144, 3000)
        started = time.perf_counter()
        produce_bare(config, contracts, spec.name, data)
        consume_bare(config, contracts, spec.name, len(data))
        ceiling = len(data) * 144 / (time.perf_counter() - started)
        print(f"    produce + consume: {ceiling:,.0f} readings/s")
        print(
            f"\nratio pipeline/ceiling: load curves {curves / ceiling:.3f}, "
            f"single readings {singles / ceiling:.4f}"
        )
        print(
            "goal: 57,000 readings/s (every French meter at 10 minutes): "
            f"load curves at {curves / 57_000:.2f}x the goal"
        )
    finally:
        node.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
