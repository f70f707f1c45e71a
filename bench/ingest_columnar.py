"""Ingest's CPU per request of single readings, the general path against the
column by column one, in one run and in process (no broker, no HTTP).

The requests are bench/pipeline.py's single readings -- Paris's load-curve CSV,
one reading per meter, 1,000 distinct meters per request -- and, with
``--gaps``, the same with every tenth reading blank (a column whose kind differs
between entities, typed value by value). Both paths prepare the same requests
(parse, build the raw.v2 batches, encode) on the declared raw.v2 contract,
alternating rounds (ABBA...) so that drift in the machine's load falls on both;
the figure is the median round of process CPU time, in µs per request and per
reading, and the ratio general / columnar. Before timing, the two paths' messages
are compared byte for byte (same lineage id and arrival time): a bench of a path
that gives other bytes would measure the wrong thing.

Usage: ``python bench/ingest_columnar.py [--requests 20] [--rounds 6] [--gaps]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.pipeline_load import T0, paris_csv
from services.ingest.core import IngestCore
from services.runtime.cities import SourceConfig, load_cities
from services.runtime.paths import CITIES_DIR
from testkit.codecs import offline_contracts

METERS = 1_000


def requests(count: int, gaps: bool) -> list[bytes]:
    """``count`` requests of single readings from distinct meters, ten minutes apart."""
    bodies = []
    for i in range(count):
        first = 100_000 + METERS * i
        body = paris_csv(range(first, first + METERS), T0 + 600 * i, 1)
        if gaps:
            lines = body.decode().split("\n")
            for n in range(1, len(lines) - 1, 10):
                lines[n] = lines[n].rsplit(";", 1)[0] + ";"
            body = "\n".join(lines).encode()
        bodies.append(body)
    return bodies


def same_messages(
    general: IngestCore, columnar: IngestCore, source: SourceConfig, bodies: list[bytes]
) -> None:
    """Both paths give the same messages for every request, or the bench stops."""
    for body in bodies:
        fixed = {"lineage_id": "bench", "received_at_us": T0 * 1_000_000}
        old = general.prepare(source, body, **fixed)
        new = columnar.prepare(source, body, **fixed)
        if old.messages != new.messages or old.answer() != new.answer():
            raise SystemExit("the columnar path gave other messages: nothing to measure")


def cpu_per_request(core: IngestCore, source: SourceConfig, bodies: list[bytes]) -> float:
    started = time.process_time()
    for body in bodies:
        core.prepare(source, body)
    return (time.process_time() - started) / len(bodies) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per round")
    parser.add_argument("--rounds", type=int, default=6, help="alternated rounds (ABBA)")
    parser.add_argument("--gaps", action="store_true", help="every tenth reading blank")
    args = parser.parse_args(argv)
    source = load_cities(CITIES_DIR)["paris"].source("enedis-courbes-charge")
    contracts = offline_contracts("raw.v2", "dlq.v1", "raw.dlq.v1")
    cores = {
        "general": IngestCore(contracts, None, columnar=False),
        "columnar": IngestCore(contracts, None),
    }
    bodies = requests(args.requests, args.gaps)
    same_messages(cores["general"], cores["columnar"], source, bodies)
    for core in cores.values():  # warm both before timing
        cpu_per_request(core, source, bodies[:2])
    times: dict[str, list[float]] = {name: [] for name in cores}
    for r in range(args.rounds):
        for name in sorted(cores, reverse=r % 2 == 1):
            times[name].append(cpu_per_request(cores[name], source, bodies))
    print(
        f"IngestCore.prepare, {len(bodies)} requests x {METERS:,} meters x 1 reading"
        f"{' (every tenth blank)' if args.gaps else ''}, raw.v2, "
        f"{args.rounds} alternated rounds; messages identical on both paths"
    )
    print(f"{'path':10} {'µs/request':>12} {'µs/reading':>11} {'[min-max µs/request]':>22}")
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"[{min(values):,.0f}-{max(values):,.0f}]"
        print(f"{name:10} {median:>12,.0f} {median / METERS:>11.2f} {spread:>22}")
    paired = [a / b for a, b in zip(times["general"], times["columnar"], strict=True)]
    ratio = statistics.median(times["general"]) / statistics.median(times["columnar"])
    print(
        f"\ngeneral / columnar CPU per request: {ratio:.2f} "
        f"(median of the paired rounds {statistics.median(paired):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
