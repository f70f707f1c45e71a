"""api: requests/s and p50/p99 latency of the common NGSI-LD API on this machine.

Nodes are what serves the API for real (testkit/api_nodes.py): a federation server
on its own chDB warehouse, seeded with --days of 10-minute readings of six sources x
two zones x --entities entities per zone, and the ``api`` service reading through
the federation API with the node's certificate. Quotas are raised out of the way:
this measures the API, not its rate limits. Four questions:

- entities of one type in one city (100 air-quality stations of lyon, one page);
- one entity's temporal values over 31 days aggregated hourly (744 buckets, sum/avg/
  min/max);
- a geo query near a point (stations within 2 km of the centre);
- a federated query over two nodes (air-quality stations of lyon and paris).

The first three run on a node alone (local queries), the last on a second pair of
nodes. The api caches answers per audience and query for ``api.cache_ttl_s``, so the
three local questions are asked again with a condition every reading meets that is
new at every request (``q=no2>-n``): the same answer, never from the cache.
Each is measured twice: closed loop (--concurrency clients back to back for
--seconds: the most requests/s it serves) and open loop (--rate requests/s on a
fixed schedule for --seconds, latency counted from when each request was due, so a
stall delays the ones behind it as it would real users: the p99 the goal is about).
The load generator runs on the same machine and takes CPU from the API: figures are
a floor. Goals (issue 19): >= 1,000 requests/s for the first; p99 <= 50 ms at 100
requests/s for each local query.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from api_notify import main as notify_main  # bench/api_notify.py (run as a script)

from services.runtime.config import load_node_config
from testkit.api_nodes import ApiNode, World, start_world
from testkit.api_world import CENTRES, T0_US

BASE = "/ngsi-ld/v1"
GOAL_RPS = 1000.0
GOAL_P99_MS = 50.0


@dataclass(frozen=True)
class Question:
    name: str
    path: str
    local: bool


@dataclass(frozen=True)
class Figures:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


def uncached(question: Question, marker: str) -> Question:
    """The same question made new at every request (``marker`` holds ``{n}``), so that
    no answer comes from the api's cache: what a request costs when it must be read."""
    return Question(question.name + ", every request a cache miss", question.path + marker, True)


def questions(days: int) -> list[Question]:
    lat, lon = CENTRES["lyon"]
    station = "urn:ngsi-ld:AirQualityObserved:lyon:lyon-air-z1-1"  # nothing to escape
    temporal = (
        f"{BASE}/temporal/entities/{station}?timerel=between&timeAt={iso(T0_US)}"
        f"&endTimeAt={iso(T0_US + min(days, 31) * 86_400_000_000)}"
        "&aggrMethods=sum,avg,min,max&aggrPeriodDuration=PT1H&options=aggregatedValues"
    )
    listed = [
        Question(
            "entities of one type in one city",
            f"{BASE}/entities?type=AirQualityObserved&limit=100"
            "&idPattern=urn:ngsi-ld:AirQualityObserved:lyon:.*",
            True,
        ),
        Question("one entity, 31 days aggregated hourly", temporal, True),
        Question(
            "geo query near a point",
            f"{BASE}/entities?type=AirQualityObserved&georel=near;maxDistance==2000"
            f"&geometry=Point&coordinates=[{lon},{lat}]&limit=100",
            True,
        ),
        Question(
            "federated query over two nodes",
            f"{BASE}/entities?type=AirQualityObserved&limit=100",
            False,
        ),
    ]
    # A condition every reading meets, different at every request: the same answer,
    # never from the cache. (The temporal question's window is the month either way.)
    # The one-entity route takes no q (NGSI-LD): its miss asks the entities route by id.
    by_id = listed[1].path.replace(
        f"/temporal/entities/{station}?", f"/temporal/entities?id={station}&"
    )
    misses = [
        uncached(listed[0], "&q=no2>-{n}"),
        uncached(Question(listed[1].name, by_id, True), "&q=no2>-{n}"),
        uncached(listed[2], "&q=no2>-{n}"),
    ]
    return [*listed, *misses]


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summarise(latencies: list[float], statuses: dict[int, int], seconds: float) -> Figures:
    errors = sum(n for status, n in statuses.items() if status != 200)
    return Figures(
        len(latencies),
        errors,
        seconds,
        1000 * percentile(latencies, 0.5),
        1000 * percentile(latencies, 0.99),
        statuses,
    )


FAILURES: dict[int, str] = {}  # status -> the first answer of that status (why it failed)


SERIAL = itertools.count(1)


async def fetch(session: aiohttp.ClientSession, url: str, statuses: dict[int, int]) -> None:
    """One GET; ``{n}`` in the URL becomes a number never used before (a cache miss)."""
    async with session.get(url.replace("{n}", str(next(SERIAL)))) as response:
        body = await response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status != 200 and response.status not in FAILURES:
            FAILURES[response.status] = body[:300].decode("utf-8", "replace")


async def closed_loop(url: str, concurrency: int, seconds: float) -> Figures:
    """``concurrency`` clients, each sending its next request when the last answered."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await fetch(session, url, {})  # warm: connections, caches
        end = time.perf_counter() + seconds

        async def client() -> None:
            while (began := time.perf_counter()) < end:
                await fetch(session, url, statuses)
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return summarise(latencies, statuses, time.perf_counter() - started)


async def open_loop(url: str, rate: float, seconds: float) -> Figures:
    """A request every 1/rate s whatever the answers; latency from when it was due."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await fetch(session, url, {})
        started = time.perf_counter()

        async def one(due: float) -> None:
            await fetch(session, url, statuses)
            latencies.append(time.perf_counter() - due)

        tasks = []
        for i in range(int(rate * seconds)):
            due = started + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        return summarise(latencies, statuses, time.perf_counter() - started)


def answer_size(node: ApiNode, question: Question) -> str:
    """What the question returns (entities or buckets), to show it is not empty."""
    import httpx

    response = httpx.get(node.url + question.path.replace("{n}", "0"), timeout=60)
    body = response.json()
    if isinstance(body, list):
        return f"{len(body)} entities, {len(response.content):,} bytes"
    buckets = sum(len(v.get("sum", [])) for v in body.values() if isinstance(v, dict))
    cached = response.headers.get("ETag") and response.headers.get("Cache-Control")
    return f"{buckets} buckets, {len(response.content):,} bytes, cache: {cached or 'none'}"


def report(question: Question, node: ApiNode, args: argparse.Namespace) -> None:
    url = node.url + question.path
    print(f"\n{question.name}  ({answer_size(node, question)})")
    closed = asyncio.run(closed_loop(url, args.concurrency, args.seconds))
    print(
        f"  closed loop x{args.concurrency}: {closed.rps:,.0f} req/s, p50 {closed.p50_ms:.1f} ms,"
        f" p99 {closed.p99_ms:.1f} ms, {closed.errors} not 200 {closed.statuses}"
    )
    opened = asyncio.run(open_loop(url, args.rate, args.seconds))
    print(
        f"  open loop {args.rate:g} req/s: p50 {opened.p50_ms:.1f} ms, p99 {opened.p99_ms:.1f} ms,"
        f" {opened.errors} not 200 {opened.statuses}"
    )
    for status, body in sorted(FAILURES.items()):
        print(f"  first {status}: {body}")
    FAILURES.clear()
    if question.name.startswith("entities of one type"):
        print(f"  goal >= {GOAL_RPS:,.0f} req/s: {closed.rps / GOAL_RPS:.2f} x the goal")
    if question.local:
        ratio = opened.p99_ms / GOAL_P99_MS
        print(f"  goal p99 <= {GOAL_P99_MS:.0f} ms at 100 req/s: p99 is {ratio:.2f} x the bound")


def world(root: Path, cities: tuple[str, ...], args: argparse.Namespace) -> World:
    node = load_node_config()
    started = time.perf_counter()
    built = start_world(
        root,
        cities,
        infrastructure=(node.kafka.bootstrap, node.registry.url),
        days=args.days,
        entities=args.entities,
    )
    readings = len(cities) * 6 * 2 * args.entities * 144 * args.days
    print(
        f"nodes {', '.join(cities)}: {readings:,} readings seeded and served"
        f" in {time.perf_counter() - started:.1f} s"
    )
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31, help="days of readings (31: a month)")
    parser.add_argument("--entities", type=int, default=50, help="entities per source and zone")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument(
        "--only",
        choices=("queries", "notifications"),
        help="run one half: the entity queries, or the notifications (bench/api_notify.py)",
    )
    args = parser.parse_args(argv)
    if args.only != "queries":
        print("notifications (subscriptions, bench/api_notify.py):")
        notify_main([])
        if args.only == "notifications":
            return 0
    root = Path(tempfile.mkdtemp(prefix="citeplus-bench-api-"))
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        local = world(root / "local", ("lyon",), args)
        try:
            for question in questions(args.days):
                if question.local:
                    report(question, local.nodes["lyon"], args)
        finally:
            local.stop()
        pair = world(root / "pair", ("lyon", "paris"), args)
        try:
            for question in questions(args.days):
                if not question.local:
                    report(question, pair.nodes["lyon"], args)
        finally:
            pair.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
