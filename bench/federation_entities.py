"""federation_entities: QueryEntities and QueryTemporal calls/s and latency (p50,
p99) of one node, as the common API calls them (the node's certificate, on behalf
of ``public``), over mutual TLS on loopback.

The node (an in-process federation server on its own chDB warehouse,
testkit/entity_world.py) holds --stations open air stations with hourly NO2 over
--days days, besides the small test city. Each question is asked --calls times
in a row by one client, each call timed from request to last page:
- entities of one type in one city (AirQualityObserved, limit 100, with count);
- a geo query near a point (1 km);
- a q condition on latest values (no2 > 40, limit 100);
- one entity's readings over the last 31 days, aggregated hourly;
- one entity's last 100 raw readings.
No cache: every call runs its warehouse query.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.federation.protos import pb
from testkit.entity_world import T0, FederationWorld

DAY_US = 86_400_000_000


def questions(days: int) -> dict[str, Callable[[Any], Any]]:
    station = pb.EntityQuery(entities=[pb.EntityRef(city="lyon", entity="air-s00042")])
    hourly = pb.TemporalQuery(entities=station)
    hourly.end.FromMicroseconds(T0 + days * DAY_US)
    hourly.start.FromMicroseconds(T0 + max(0, days - 31) * DAY_US)
    hourly.period.FromSeconds(3600)
    last = pb.TemporalQuery(entities=station, last_n=100)
    near = pb.GeoFilter(
        relation=pb.GEO_RELATION_NEAR, point=pb.GeoPoint(lat=45.71, lon=4.85), max_distance_m=1000
    )
    high = pb.ConditionGroup(
        all_of=[pb.ValueCondition(metric="no2", op=pb.COMPARISON_GT, value=40)]
    )
    return {
        "entities of one type, one city (limit 100, count)": lambda c: c.entities(
            pb.EntityQuery(
                cities=["lyon"], entity_types=["AirQualityObserved"], limit=100, count=True
            )
        ),
        "geo near a point (1 km)": lambda c: c.entities(pb.EntityQuery(geo=near, limit=100)),
        "q no2 > 40 on latest values (limit 100)": lambda c: c.entities(
            pb.EntityQuery(any_of=[high], limit=100)
        ),
        "one entity, 31 days aggregated hourly": lambda c: c.temporal(hourly),
        "one entity, last 100 raw readings": lambda c: c.temporal(last),
    }


def measure(client: Any, ask: Callable[[Any], Any], calls: int) -> tuple[float, float, float, int]:
    """(calls/s, p50 ms, p99 ms, messages of the last answer)."""
    times = []
    pages = 0
    started = time.perf_counter()
    for _ in range(calls):
        begin = time.perf_counter()
        pages = len(list(ask(client)))
        times.append((time.perf_counter() - begin) * 1000)
    elapsed = time.perf_counter() - started
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return calls / elapsed, statistics.median(times), p99, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="citeplus-bench-entities-"))
    try:
        began = time.perf_counter()
        world = FederationWorld(root, hours=args.days * 24, extra_stations=args.stations)
        readings = args.stations * args.days * 24
        print(
            f"node: {args.stations} stations x {args.days} days hourly = {readings:,} readings "
            f"(+ the test city), filled in {time.perf_counter() - began:.1f} s"
        )
        try:
            with world.client("lyon", on_behalf_of="public") as client:
                for name, ask in questions(args.days).items():
                    ask_all = lambda c, a=ask: list(a(c))  # noqa: E731
                    ask_all(client)  # warm-up (holdings cache, connection)
                    rate, p50, p99, pages = measure(client, ask, args.calls)
                    print(
                        f"{name:<52} {rate:8.1f} calls/s  p50 {p50:7.1f} ms  "
                        f"p99 {p99:7.1f} ms  ({pages} page(s))"
                    )
        finally:
            world.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
