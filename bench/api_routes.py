"""NGSI-LD routes alone: requests/s and p50/p99 latency of the common API's HTTP layer
(parsing, representation, cache, aiohttp) over an in-memory federation of two nodes,
no gRPC and no warehouse: the ceiling the whole node (bench/api.py) can approach.

The server runs in its own process (one core), the client in this one with N
concurrent connections for a fixed number of requests per case:

1. entities of one type in one city, cached (the answer is kept ``cache_ttl_s``);
2. the same with the cache off (every request parsed, read, represented);
3. a geo query near a point (cache off);
4. one entity's readings over 31 days aggregated hourly (cache off).

Run: ``uv run python bench/api_routes.py [--requests 3000] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from datetime import datetime, timedelta

import aiohttp
from aiohttp import web

from services.api.ngsi.routes import add_ngsi_routes
from testkit.api_reader import InMemoryReader, MemoryNode, entity
from testkit.ports import free_port

STATIONS = 500
CASES = {
    "entities, one type, one city (cached)": (
        True,
        "/ngsi-ld/v1/entities?type=AirQualityObserved&idPattern=urn:ngsi-ld:"
        "AirQualityObserved:lyon:.*&limit=20",
    ),
    "entities, one type, one city (no cache)": (
        False,
        "/ngsi-ld/v1/entities?type=AirQualityObserved&idPattern=urn:ngsi-ld:"
        "AirQualityObserved:lyon:.*&limit=20",
    ),
    "geo near a point (no cache)": (
        False,
        "/ngsi-ld/v1/entities?type=AirQualityObserved&georel=near;maxDistance==3000"
        "&geometry=Point&coordinates=[4.835,45.764]&limit=50",
    ),
    "31 days hourly, one entity (no cache)": (
        False,
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:lyon:S0007"
        "?timerel=between&timeAt=2026-01-01T00:00:00Z&endTimeAt=2026-02-01T00:00:00Z"
        "&options=aggregatedValues&aggrMethods=avg,max&aggrPeriodDuration=PT1H",
    ),
}


def federation() -> dict[str, MemoryNode]:
    nodes = {}
    for city, lon, lat in (("lyon", 4.83, 45.76), ("paris", 2.35, 48.85)):
        node = MemoryNode()
        for i in range(STATIONS):
            position = (lon + (i % 25) * 0.004, lat + (i // 25) * 0.004)
            node.entities.append(
                entity(city, f"S{i:04d}", values={"no2": float(i % 80)}, position=position)
            )
        start = datetime(2026, 1, 1)
        node.series[(city, "S0007")] = {
            "no2": [(start + timedelta(minutes=15 * k), float(k % 60)) for k in range(31 * 96)]
        }
        nodes[city] = node
    return nodes


def serve(port: int, cached: bool) -> None:
    app = web.Application()
    add_ngsi_routes(app, InMemoryReader(federation()), cache_ttl_s=60.0 if cached else 0.0)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def load(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    left = iter(range(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in left:
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: {response.status}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url) as warm:
            await warm.read()
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


async def ready(port: int) -> None:
    for _ in range(600):
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/ngsi-ld/v1/jsonldContexts/citeplus.jsonld"),
            ):
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not start")


def run_case(name: str, cached: bool, path: str, requests: int, concurrency: int) -> None:
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port, cached), daemon=True)
    server.start()
    try:
        asyncio.run(ready(port))
        elapsed, latencies = asyncio.run(
            load(f"http://127.0.0.1:{port}{path}", requests, concurrency)
        )
    finally:
        server.terminate()
        server.join()
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:45s} {requests / elapsed:8.0f} req/s   p50 {cuts[49] * 1000:6.1f} ms"
        f"   p99 {cuts[98] * 1000:6.1f} ms   ({concurrency} connections)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"NGSI-LD routes over an in-memory federation ({STATIONS} stations per city)")
    for name, (cached, path) in CASES.items():
        run_case(name, cached, path, args.requests, args.concurrency)


if __name__ == "__main__":
    main()
