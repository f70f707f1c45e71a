"""The DCAT-AP catalogue's cost: building the JSON-LD document from the nodes'
listings, and the Turtle form (rdflib parses the JSON-LD and serialises the graph),
for federations of growing size. What a ``GET /catalog`` costs when its audience's
answer is not kept (the first request after ``cache_ttl_s``); a kept one is a
dictionary lookup. Also the sizes of both forms, and the tracemalloc peak.

Run: ``uv run python bench/catalog.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

from services.api.catalog.build import Listed, build_catalog
from services.api.catalog.serialise import jsonld_bytes, turtle_bytes
from services.federation.protos import pb
from testkit.catalog_data import LYON, dataset

SIZES = (10, 60, 300)  # datasets: one city, a federation of five, a national scale


def listing(size: int) -> list[Listed]:
    """``size`` open datasets, each with two metrics, one entity type and data."""
    return [
        Listed(
            f"node{i % 5}",
            f"10.0.0.{i % 5}:7443",
            dataset(
                f"city{i % 50}",
                f"source-{i}",
                LYON,
                metrics=["no2", "pm10"],
                level=pb.SHARING_LEVEL_OPEN,
                licence="ODbL-1.0",
                entity_types=["AirQualityObserved"],
                topic="public.observations.v1",
            ),
        )
        for i in range(size)
    ]


def timed(function, repeat: int) -> float:
    """Median seconds of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'datasets':>8} {'build ms':>9} {'json-ld ms':>10} {'turtle ms':>9} "
        f"{'json-ld KiB':>11} {'turtle KiB':>10} {'peak MiB':>8}"
    )
    for size in SIZES:
        listed = listing(size)
        document = build_catalog(listed, ["node0"], "http://api.example", partner=True)
        build = timed(
            lambda x=listed: build_catalog(x, ["node0"], "http://api.example"), args.repeat
        )
        to_json = timed(lambda d=document: jsonld_bytes(d), args.repeat)
        to_turtle = timed(lambda d=document: turtle_bytes(d), args.repeat)
        tracemalloc.start()
        turtle = turtle_bytes(document)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"{size:>8} {build * 1e3:>9.1f} {to_json * 1e3:>10.1f} {to_turtle * 1e3:>9.1f} "
            f"{len(jsonld_bytes(document)) / 1024:>11.0f} {len(turtle) / 1024:>10.0f} "
            f"{peak / 2**20:>8.1f}"
        )


if __name__ == "__main__":
    main()
