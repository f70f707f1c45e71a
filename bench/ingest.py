"""Ingest throughput: readings/s accepted through the HTTP API (NDJSON batches of
1,000 readings, several requests in flight) and through the file path, on the
local broker, each compared with a bare confluent-kafka producer sending the
very same raw messages (RawBatch on raw.v2, ingest's default: the ceiling for
this message shape). Then the peak
memory (RSS) of a fresh ingest process while eight gzip bombs (1 MB each, 1 GiB
once inflated) arrive at once: ingest must refuse them (413) without inflating
them, and stay under 300 MB.

A reading here is one accepted row (one meter, one time, one value). The ingest
service runs as its own process (`citeplus service ingest`), as in production.
The cost of idempotency keys is measured in the same run: pushes with and without
an `Idempotency-Key` header (a fresh key per batch) alternate in pairs, and the
medians and their ratio are printed.
Run with `make bench`, or directly against a running broker and registry.
Single readings (one per sensor per request) on raw.v1 against raw.v2:
bench/ingest_single.py.
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
import zlib
from dataclasses import replace
from pathlib import Path

import httpx

from services.ingest.core import IngestCore, IngestTopics
from services.ingest.files import ingest_paths
from services.ingest.service import build_core
from services.policy.topics import declared_topics
from services.runtime.cities import SourceConfig, load_cities
from services.runtime.config import load_node_config
from services.runtime.group_commit import produce_outgoing
from services.runtime.kafka import make_producer
from services.runtime.provisioning import connect_contracts, prepare_node

CITY = """
code: benchville
name: Benchville
sources:
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: meter,
     token: "env:CITEPLUS_TOKEN_BENCH_METERS", numeric: [wh]}
"""
T0 = 1_736_755_200


def ndjson_batch(index: int, meters: int, per_meter: int) -> bytes:
    """One batch: ``meters`` meters × ``per_meter`` consecutive 10-minute readings."""
    lines = []
    for m in range(meters):
        meter = f"{(index * meters + m) % 20_000:012d}"
        for k in range(per_meter):
            t = T0 + 600 * (index * per_meter + k)
            lines.append(json.dumps({"meter": meter, "t": t, "wh": 100 + (m * 7 + k) % 900}))
    return ("\n".join(lines) + "\n").encode()


async def push_all(
    url: str, token: str, batches: list[bytes], in_flight: int, *, keys: bool = False
) -> int:
    """Push every batch, ``in_flight`` at a time; with ``keys``, each with a fresh key."""
    accepted = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in batches:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            headers = {"Authorization": f"Bearer {token}"}
            if keys:
                headers["Idempotency-Key"] = uuid.uuid4().hex
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()
            accepted += response.json()["accepted"]

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(in_flight)))
    return accepted


def gzip_bomb(inflated: int = 1 << 30) -> bytes:
    """A gzip body of ``inflated`` bytes of blank lines (~1 MB per GiB), built in steps."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\n" * (1 << 20)
    parts = [packer.compress(block) for _ in range(inflated // len(block))]
    return b"".join([*parts, packer.flush()])


def memory_kb(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak since start) of a process, in kB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for process {pid}")


async def send_bombs(endpoint: str, token: str, bomb: bytes, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"}

    async def one(client: httpx.AsyncClient) -> str:
        try:
            response = await client.post(endpoint, content=bomb, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return str(response.status_code)

    async with httpx.AsyncClient(timeout=120) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


def start_service(port: int, cities_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "service",
            "ingest",
            "--port",
            str(port),
            "--cities",
            str(cities_dir),
            # Its own transactional id: another bench on the same broker must not fence it.
            "--instance",
            f"bench-{uuid.uuid4().hex[:8]}",
        ],
        stderr=subprocess.DEVNULL,
    )


def bomb_memory(port: int, cities_dir: Path, token: str, count: int = 8) -> None:
    """Peak RSS of a fresh ingest process while ``count`` gzip bombs arrive at once."""
    bomb = gzip_bomb()
    url = f"http://127.0.0.1:{port}"
    service = start_service(port, cities_dir)
    try:
        wait_until_up(url, service)
        idle_mb = memory_kb(service.pid, "VmRSS") / 1024
        started = time.perf_counter()
        endpoint = f"{url}/v1/cities/benchville/sources/meters/records"
        statuses = asyncio.run(send_bombs(endpoint, token, bomb, count))
        seconds = time.perf_counter() - started
        peak_mb = memory_kb(service.pid, "VmHWM") / 1024
        probe = time.perf_counter()
        healthy = httpx.get(f"{url}/healthz", timeout=120).status_code
        probe_s = time.perf_counter() - probe
    finally:
        service.terminate()
        service.wait(30)
    print(
        f"\n{count} concurrent gzip bombs of {len(bomb) / 1e6:.2f} MB (1 GiB inflated each): "
        f"answers {sorted(statuses)} in {seconds:.1f} s; ingest RSS {idle_mb:.0f} MB idle, "
        f"peak {peak_mb:.0f} MB (goal: under 300 MB); /healthz then answered {healthy} "
        f"in {probe_s:.1f} s"
    )


def paired_key_cost(
    url: str, token: str, batches: list[bytes], in_flight: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Readings/s without and with keys, alternated (ABBA...) so that drift in the
    machine's load falls on both sides."""
    plain: list[float] = []
    keyed: list[float] = []
    readings = 1000 * len(batches)
    for r in range(rounds):
        for use_keys in (False, True) if r % 2 == 0 else (True, False):
            started = time.perf_counter()
            accepted = asyncio.run(push_all(url, token, batches, in_flight, keys=use_keys))
            assert accepted == readings, (accepted, readings)
            (keyed if use_keys else plain).append(readings / (time.perf_counter() - started))
    return plain, keyed


def key_cpu_cost(
    core: IngestCore, source: SourceConfig, batches: list[bytes]
) -> tuple[float, float]:
    """µs per batch: what a key adds on ingest's side (body fingerprint, scope, the
    answer's text and its state record) and what parsing and encoding the batch cost."""
    from services.ingest import idempotency

    topic = idempotency.state_topic_beside(core.topics.raw)
    store = idempotency.IdempotencyStore(topic, core.contracts.codec(topic))
    results = [core.prepare(source, body) for body in batches]
    started = time.perf_counter()
    for _ in range(3):
        results = [core.prepare(source, body) for body in batches]
    prepare_us = (time.perf_counter() - started) / (3 * len(batches)) * 1e6
    started = time.perf_counter()
    for n, (body, result) in enumerate(zip(batches * 3, results * 3, strict=True)):
        scope = idempotency.scope_of(source.city, source.id, f"key-{n}")
        fingerprint = idempotency.fingerprint_of(body)
        store.lookup(scope, fingerprint)
        answer = idempotency.Answer(result.status, json.dumps(result.answer()))
        store.message(scope, fingerprint, answer, time.time())
        store.remember(scope, fingerprint, answer, time.time())
    key_us = (time.perf_counter() - started) / (3 * len(batches)) * 1e6
    return key_us, prepare_us


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ingest service exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("ingest service did not answer in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches of 1,000 readings")
    parser.add_argument(
        "--in-flight", type=int, default=4, help="concurrent HTTP requests (16 is measured as well)"
    )
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument(
        "--bombs-only", action="store_true", help="only the memory figure under gzip bombs"
    )
    parser.add_argument(
        "--pairs", type=int, default=20, help="rounds of the with/without keys comparison"
    )
    parser.add_argument(
        "--pair-batches",
        type=int,
        default=25,
        help="batches per side of a pair (short sides share the machine's load drift)",
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="citeplus-bench-ingest-"))
    (work / "cities").mkdir()
    (work / "cities" / "benchville.yaml").write_text(CITY)
    token = uuid.uuid4().hex
    os.environ["CITEPLUS_TOKEN_BENCH_METERS"] = token
    node = load_node_config()
    prepare_node(node, declared_topics(node))
    if args.bombs_only:
        bomb_memory(args.port, work / "cities", token)
        return 0
    cities = load_cities(work / "cities")
    source = cities["benchville"].source("meters")
    batches = [ndjson_batch(i, meters=100, per_meter=10) for i in range(args.batches)]
    readings = 1000 * len(batches)
    print(
        f"Ingest bench: {readings:,} readings in {len(batches)} NDJSON batches of 1,000 "
        f"(100 meters x 10 readings -> 100 RawRecords per batch, on {IngestTopics().raw} a few "
        f"messages), broker {node.kafka.bootstrap}",
        flush=True,
    )

    # 1. HTTP: the service in its own process.
    url = f"http://127.0.0.1:{args.port}"
    service = start_service(args.port, work / "cities")
    try:
        wait_until_up(url, service)
        endpoint = f"{url}/v1/cities/benchville/sources/meters/records"
        http_s: dict[int, float] = {}
        for in_flight in sorted({args.in_flight, 16}):
            started = time.perf_counter()
            accepted = asyncio.run(push_all(endpoint, token, batches, in_flight))
            http_s[in_flight] = time.perf_counter() - started
            assert accepted == readings, (accepted, readings)
        plain, keyed = paired_key_cost(
            endpoint, token, batches[: args.pair_batches], args.in_flight, args.pairs
        )
    finally:
        service.terminate()
        service.wait(30)

    # 2. Files: the same batches as files, through `ingest_paths` in this process.
    files = work / "files"
    files.mkdir()
    for i, body in enumerate(batches):
        (files / f"{i:05d}.ndjson").write_bytes(body)
    contracts = connect_contracts(node, declared_topics(node))
    core = build_core(node, contracts, cities, instance=f"bench-files-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    summary = ingest_paths(core, source, sorted(files.iterdir()), show_progress=False)
    file_s = time.perf_counter() - started
    core.sink.close()
    assert summary.accepted == readings

    key_us, prepare_us = key_cpu_cost(core, source, batches[:50])

    # 3. Ceiling: a bare producer sending the same encoded RawRecords.
    prepared = [core.prepare(source, body).messages for body in batches]
    messages = [m for batch in prepared for m in batch]
    producer = make_producer(replace(node))
    started = time.perf_counter()
    for message in messages:
        produce_outgoing(producer, message)
    producer.flush(120)
    bare_s = time.perf_counter() - started
    size = sum(len(m[2]) for m in messages) / len(messages)

    print(f"{'path':32} {'seconds':>8} {'readings/s':>12} {'ratio to bare':>14}")
    rows = [
        *((f"HTTP API, {n} requests in flight", seconds) for n, seconds in http_s.items()),
        ("files (citeplus ingest)", file_s),
        ("bare producer, same messages", bare_s),
    ]
    for name, seconds in rows:
        print(f"{name:32} {seconds:>8.2f} {readings / seconds:>12,.0f} {bare_s / seconds:>14.2f}")
    plain_median, keyed_median = statistics.median(plain), statistics.median(keyed)
    pair_ratios = [k / p for p, k in zip(plain, keyed, strict=True)]
    print(
        f"\nIdempotency-Key cost, HTTP API, {args.in_flight} in flight, {args.pairs} alternated "
        f"pairs of {min(args.pair_batches, len(batches))} batches (readings/s, median [min-max]):\n"
        f"  without keys {plain_median:>10,.0f} [{min(plain):,.0f}-{max(plain):,.0f}]\n"
        f"  with keys    {keyed_median:>10,.0f} [{min(keyed):,.0f}-{max(keyed):,.0f}]\n"
        f"  ratio of medians with/without {keyed_median / plain_median:.3f} "
        f"(cost {100 * (1 - keyed_median / plain_median):+.1f}%); median of the "
        f"{len(pair_ratios)} paired ratios {statistics.median(pair_ratios):.3f}"
    )
    print(
        f"  in process, per batch of 1,000 readings: a key costs {key_us:,.0f} µs "
        f"(fingerprint, answer, state record, store), parsing and encoding {prepare_us:,.0f} µs "
        f"({100 * key_us / prepare_us:.1f}%)"
    )
    print(
        f"\n{len(messages):,} raw messages of {size:,.0f} B on average "
        f"({readings / len(messages):.0f} readings each); topic {IngestTopics().raw}"
    )
    bomb_memory(args.port, work / "cities", token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
