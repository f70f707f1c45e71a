"""The load bench/pipeline.py offers a whole node from outside, over its HTTP ingest
API, and what it reads back: readings landed in ClickHouse, their `landed_at`
(set by ClickHouse itself at insert, `DEFAULT now64(3)` in
deploy/clickhouse/001_observations.sql), and the memory of every process.

Latency is measured open loop: requests leave at the times a schedule fixes, from a
pool of senders, whether or not earlier ones were answered, and a request's latency
is counted from its *scheduled* time. A closed loop (send, wait, send) would slow
its own offer down when the node queues, and hide the queue it is meant to show.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from testkit.local_node import LocalNode

T0 = 1_736_722_800  # 2025-01-13T00:00:00+01:00, epoch seconds
PARIS = ZoneInfo("Europe/Paris")


def energy_of(city: str) -> str:
    """The ClickHouse filter of ``city``'s energy readings (the loads' metric)."""
    return f"city = '{city}' AND metric = 'active_energy_import'"


METRIC = energy_of("paris")


def paris_csv(meters: range, start: int, intervals: int, step: int = 600) -> bytes:
    """Paris's transport (Enedis-style export): `;`, decimal comma, naive local times,
    kWh per interval. Its source declares consent, so 10-minute curves are kept."""
    lines = ["prm;iris;secteur;horodate;pas;energie_kwh"]
    stamps = [
        dt.datetime.fromtimestamp(start + k * step, PARIS).strftime("%Y-%m-%d %H:%M:%S")
        for k in range(intervals)
    ]
    for meter in meters:
        prm = f"{19_000_000_000_000 + meter:014d}"
        zone = f"75101{meter % 60:04d}"
        sector = "residentiel" if meter % 4 else "professionnel"
        for k, local in enumerate(stamps):
            kwh = f"{0.04 + ((meter * 7 + k * 13) % 300) / 1000:.3f}".replace(".", ",")
            lines.append(f"{prm};{zone};{sector};{local};PT10M;{kwh}")
    return ("\n".join(lines) + "\n").encode()


def push(client: httpx.Client, url: str, token: str, body: bytes) -> dict:
    """POST one payload; ingest answers 503 while its producer is full: retry then."""
    for attempt in range(40):
        response = client.post(url, content=body, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            return response.json()
        time.sleep(min(1.0, 0.1 * (attempt + 1)))
    response.raise_for_status()
    return {}


def paris_source(node: LocalNode) -> tuple[str, str]:
    """The URL and token of Paris's load-curve source on ``node``."""
    return source_of(node, "paris", "enedis-courbes-charge")


def source_of(node: LocalNode, city: str, source: str) -> tuple[str, str]:
    """The URL and token of ``city``'s ``source`` on ``node`` (its dev secrets)."""
    from services.runtime.cities import load_cities
    from services.runtime.dev_secrets import dev_env_file, read_env_file
    from services.runtime.paths import CITIES_DIR

    reference = load_cities(CITIES_DIR)[city].source(source).token
    token = read_env_file(dev_env_file(node.state))[reference.removeprefix("env:")]
    return f"{node.ingest_url}/v1/cities/{city}/sources/{source}/records", token


def landed(node: LocalNode, city: str = "paris") -> int:
    """``city``'s energy readings in ClickHouse (rows of the observations table)."""
    table = node.sql(f"SELECT count() AS n FROM observations WHERE {energy_of(city)}")
    return int(table.column("n")[0].as_py())


def throughput(
    node: LocalNode,
    source: tuple[str, str],
    payloads: list[bytes],
    readings: int,
    workers: int,
    city: str = "paris",
) -> float:
    """Readings/s from the first push until every reading pushed is in ClickHouse."""
    url, token = source
    before = landed(node, city)
    started = time.time()
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda body: push(client, url, token, body), payloads))
    pushed_s = time.time() - started
    while landed(node, city) < before + readings:
        time.sleep(1.0)  # each count is a query publish answers: do not load it much
        if time.time() - started > 900:
            raise SystemExit("readings did not all land within 15 minutes")
    # The end is when the last reading landed (ClickHouse's own `landed_at`), not when
    # the once-a-second count saw it: the poll would add up to a second to the run.
    total_s = last_landed(node, city) - started
    print(f"    pushed in {pushed_s:.1f} s, all in ClickHouse after {total_s:.2f} s", flush=True)
    return readings / total_s


def last_landed(node: LocalNode, city: str = "paris") -> float:
    """When ``city``'s latest energy reading landed, epoch seconds (its `landed_at`)."""
    table = node.sql(
        "SELECT toUnixTimestamp64Milli(max(landed_at)) AS at "
        f"FROM observations WHERE {energy_of(city)}"
    )
    return int(table.column("at")[0].as_py()) / 1000


@dataclass
class Latency:
    """Per-request latencies (seconds) of one open-loop run; ``lost`` requests had not
    fully landed when the wait ended (they count as slower than every landed one)."""

    offered: int
    per_request: int
    seconds: list[float]
    lost: int
    bound_s: float
    sent: dict[str, float] = field(default_factory=dict)  # lineage -> scheduled send
    landed: dict[str, float] = field(default_factory=dict)  # lineage -> last landed_at

    def quantile(self, q: float) -> float:
        """The q-quantile, or +inf when it falls among the requests not landed."""
        ranked = sorted(self.seconds) + [float("inf")] * self.lost
        if not ranked:
            return float("inf")
        return ranked[min(len(ranked) - 1, int(len(ranked) * q))]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) if not self.lost else self.quantile(0.5)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)


def open_loop(
    send: Callable[[int], str], requests: int, interval_s: float, senders: int = 32
) -> dict[str, float]:
    """Call ``send(i)`` at its scheduled time from a pool; {its answer: scheduled time}."""
    scheduled: dict[int, float] = {}
    futures: dict[int, Future[str]] = {}
    first = time.time() + 0.5
    with ThreadPoolExecutor(senders) as pool:
        for i in range(requests):
            at = first + i * interval_s
            time.sleep(max(0.0, at - time.time()))
            scheduled[i] = at
            futures[i] = pool.submit(send, i)
    return {futures[i].result(): scheduled[i] for i in range(requests)}


def landing_times(
    node: LocalNode, sent: dict[str, float], per_request: int, bound_s: float
) -> dict[str, float]:
    """{lineage id: when its last reading landed}, for the requests fully landed
    within ``bound_s`` seconds of now."""
    deadline = time.time() + bound_s
    done: dict[str, float] = {}
    ids = ", ".join(f"'{lineage}'" for lineage in sent)
    while time.time() < deadline and len(done) < len(sent):
        rows = node.sql(
            "SELECT lineage_id, count() AS n, toUnixTimestamp64Milli(max(landed_at)) AS at "
            f"FROM observations WHERE {METRIC} AND lineage_id IN ({ids}) GROUP BY lineage_id"
        ).to_pylist()
        done = {r["lineage_id"]: r["at"] / 1000 for r in rows if r["n"] >= per_request}
        time.sleep(0.5)
    return done


def latency(
    node: LocalNode, source: tuple[str, str], rate: int, seconds: int, meter_base: int
) -> Latency:
    """Offer ``rate`` single readings/s (one reading per meter, 10 requests a second)
    for ``seconds``; each request's latency = its last reading's `landed_at` minus the
    time it was scheduled to leave."""
    url, token = source
    per_request = max(1, rate // 10)
    bodies = [
        paris_csv(
            range(meter_base + i * per_request, meter_base + (i + 1) * per_request),
            T0 + 86400 * 30,
            1,
        )
        for i in range(seconds * 10)
    ]
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=32)) as client:
        sent = open_loop(
            lambda i: push(client, url, token, bodies[i])["lineage_id"], len(bodies), 0.1
        )
    bound_s = max(60.0, 6.0 * seconds)
    done = landing_times(node, sent, per_request, bound_s)
    return Latency(
        offered=rate,
        per_request=per_request,
        seconds=[done[k] - sent[k] for k in done],
        lost=len(sent) - len(done),
        bound_s=bound_s,
        sent=sent,
        landed=done,
    )


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MB of ``pid`` (VmRSS, VmHWM), NaN when it is gone."""
    found = {"VmRSS:": float("nan"), "VmHWM:": float("nan")}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            label = line.split(":")[0] + ":"
            if label in found:
                found[label] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def node_pids(node: LocalNode) -> dict[str, int]:
    """Every long-running process of the node, by name: services, broker, registry."""
    pids = {**node.service_pids(), "kafka broker": node.broker_pid() or 0}
    registry_pid = node.state / "registry" / "registry.pid"
    if registry_pid.exists():
        pids["schema registry"] = int(registry_pid.read_text().strip())
    return {name: pid for name, pid in pids.items() if pid}
