"""A warm-up for bench/pipeline.py: another city's loads through the whole node
before anything is measured.

A city's node runs for months. The broker's and the registry's JIT compilers,
Python's first imports and ClickHouse's first parts are costs of a freshly started
node that a running one no longer pays; measured on a fresh node, they count in
the first load's figures. The warm-up is Bordeaux's: the same services, formats and
topics as the measured Paris loads, but its own keys, energy groups and
watermarks, so nothing it leaves behind (state, open days, releases) joins Paris's
work. Warming up on Paris meters of the measured day did: the day's release and
every stage's state grew with them, and energy's CPU per reading rose by half.
"""

from __future__ import annotations

import datetime as dt
import time

from bench.pipeline_load import T0, source_of, throughput
from bench.pipeline_topics import topic_offsets
from testkit.local_node import LocalNode

CITY, SOURCE = "bordeaux", "courbes-charge-10min"


def bordeaux_csv(meters: range, start: int, intervals: int, step: int = 600) -> bytes:
    """Bordeaux's energy portal export: `,`, UTC ISO times, 10-minute average kW."""
    lines = ["point_livraison,debut_utc,puissance_moyenne_kw,qualite"]
    stamps = [
        dt.datetime.fromtimestamp(start + k * step, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for k in range(intervals)
    ]
    for meter in meters:
        point = f"{30_000_000_000_000 + meter:014d}"
        for k, stamp in enumerate(stamps):
            kw = 0.2 + ((meter * 7 + k * 13) % 300) / 100
            lines.append(f"{point},{stamp},{kw:.2f},reel")
    return ("\n".join(lines) + "\n").encode()


def warm_up(node: LocalNode, meters: int, singles: int) -> None:
    """Bordeaux load curves of ``meters`` meters, then ``singles`` single readings,
    each until every reading is in ClickHouse; their figures printed, as a fresh
    node's (they are not the measured ones)."""
    source = source_of(node, CITY, SOURCE)
    print("\n(0) warm-up: Bordeaux's loads, half the size of Paris's (a fresh node's figures)")
    curves = [bordeaux_csv(range(m, m + 20), T0, 144) for m in range(0, meters, 20)]
    rate = throughput(node, source, curves, meters * 144, workers=4, city=CITY)
    print(f"    load curves {rate:,.0f} readings/s ({meters * 144:,} readings)", flush=True)
    ones = [
        bordeaux_csv(range(100_000 + m, 100_000 + m + 1000), T0 + 86400 * 10, 1)
        for m in range(0, singles, 1000)
    ]
    rate = throughput(node, source, ones, singles, workers=4, city=CITY)
    print(f"    single readings {rate:,.0f} readings/s ({singles:,} readings)", flush=True)
    waited, quiet = settle(node)
    state = "quiet" if quiet else "still writing (the bound passed)"
    print(f"    node {state} after {waited:.1f} s more", flush=True)


def settle(node: LocalNode, quiet_s: float = 2.0, bound_s: float = 60.0) -> tuple[float, bool]:
    """Wait until no topic of the node has moved for ``quiet_s`` (at most ``bound_s``):
    (seconds waited, whether it was quiet). The readings are in ClickHouse before
    energy-analytics, which reads the same topic as publish, has aggregated them all;
    its remaining work would otherwise run into the first measured load."""
    started = time.monotonic()
    offsets, since = topic_offsets(node), time.monotonic()
    while time.monotonic() - started < bound_s:
        time.sleep(0.5)
        now = topic_offsets(node)
        if now != offsets:
            offsets, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return time.monotonic() - started, True
    return time.monotonic() - started, False
