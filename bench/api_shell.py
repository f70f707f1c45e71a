"""The common API's service shell: what its middlewares cost per request.

Runs `citeplus service api` as its own process (as in production; the NGSI-LD
routes are not involved) and loads it from this process with aiohttp: requests/s
with 16 in flight, and p50/p99 latency, for a 200 with ETag and gzip (the OpenAPI
document, ~20 KB before compression), a 304 on its ETag, a keyed request (key
checked against the store at every request), an anonymous 404 ProblemDetails, a
429 refused by the quota; then p50/p99 at a steady 100 requests/s. The shell's
share of the issue's goal (>= 1,000 requests/s for a cached entities query) is what
these figures leave for the routes. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from services.api.keys import KeyStore, keys_path
from services.federation.certs import ensure_dev_certificates
from services.runtime.paths import REPO_ROOT
from testkit.ports import free_port


def start_service(state: Path, port: int, metrics: int, anonymous_rate: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "CITEPLUS_NODE_STATE_DIR": str(state),
        "CITEPLUS_NODE_ID": "benchnode",
        "CITEPLUS_API_PORT": str(port),
        "CITEPLUS_API_ANONYMOUS_RATE": str(anonymous_rate),
        "CITEPLUS_API_ANONYMOUS_BURST": "1000000" if anonymous_rate > 1 else "1",
        "CITEPLUS_API_KEY_RATE": "1000000",
        "CITEPLUS_API_KEY_BURST": "1000000",
    }
    command = [sys.executable, "-m", "services.cli", "service", "api"]
    process = subprocess.Popen(
        [*command, "--metrics-port", str(metrics), "--topic-prefix", f"bench.{os.getpid()}."],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the api did not become healthy in 120 s")


async def saturate(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], seconds: float
) -> tuple[float, list[float], set[int]]:
    """Requests/s with 16 in flight, the latencies, the statuses seen."""
    latencies: list[float] = []
    statuses: set[int] = set()
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                statuses.add(response.status)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(16)))
    return len(latencies) / (time.perf_counter() - began), latencies, statuses


async def paced(
    session: aiohttp.ClientSession, url: str, rate: float, seconds: float
) -> list[float]:
    latencies: list[float] = []

    async def one() -> None:
        began = time.perf_counter()
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            await response.read()
        latencies.append(time.perf_counter() - began)

    tasks = []
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


def quantiles(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"p50 {cuts[49] * 1000:6.2f} ms  p99 {cuts[98] * 1000:6.2f} ms"


async def scenarios(port: int, token: str, seconds: float) -> None:
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"{base}/openapi.json", headers={"Accept-Encoding": "gzip"}) as r:
            etag = r.headers["ETag"]
        cases = {
            "200 openapi.json, ETag + gzip": ("/openapi.json", {"Accept-Encoding": "gzip"}),
            "304 If-None-Match": ("/openapi.json", {"If-None-Match": etag}),
            "200 keyed (Bearer)": ("/docs/docs.css", {"Authorization": f"Bearer {token}"}),
            "404 ProblemDetails": ("/ngsi-ld/v1/nothing", {}),
        }
        for name, (path, headers) in cases.items():
            rate, latencies, statuses = await saturate(session, base + path, headers, seconds)
            print(f"  {name:32} {rate:8,.0f} req/s  {quantiles(latencies)}  {sorted(statuses)}")
        latencies = await paced(session, f"{base}/openapi.json", 100.0, seconds)
        print(f"  {'200 at a steady 100 req/s':32} {'':14}{quantiles(latencies)}")


async def refused(port: int, seconds: float) -> None:
    async with aiohttp.ClientSession() as session:
        rate, latencies, statuses = await saturate(
            session, f"http://127.0.0.1:{port}/openapi.json", {}, seconds
        )
    print(
        f"  {'429 over the anonymous quota':32} {rate:8,.0f} req/s  {quantiles(latencies)}  "
        f"{sorted(statuses)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="citeplus-api-bench-") as tmp:
        state = Path(tmp)
        ensure_dev_certificates(state / "federation" / "certs", ["benchnode"])
        token = KeyStore(keys_path(state)).create("bench")[1]
        print(f"api service shell (citeplus service api, one process; {os.cpu_count()} cores)")
        for anonymous_rate, run in (
            (1e6, lambda p: scenarios(p, token, args.seconds)),
            (1.0, lambda p: refused(p, args.seconds)),
        ):
            port, metrics = free_port(), free_port()
            process = start_service(state, port, metrics, anonymous_rate)
            try:
                asyncio.run(run(port))
            finally:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
