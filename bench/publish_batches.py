"""publish's ClickHouse sink on single readings, in process (no broker): what each
observations.v2 reading costs from the message's bytes to its row, step by step.

Single readings (air, traffic: one value per entity) reach publish as ObservationBatch
messages of some ten to three hundred members; the sink decodes each as it arrives
(Avro, then the batch's checks) and turns each insert's messages into one Arrow table
(services/publish/batch_rows.py). The same inserts are also turned into rows the v1
way (each message exploded into members, through services/publish/rows.py), the
reference the columnar route must equal, and the figures are printed as µs per
reading and as ratios within this run. ``--insert`` adds chDB's own insert of the
tables (with the rollup views), for scale.

Single-process figures on a shared machine: compare the ratios, not the absolute
numbers; each figure is the best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.runner_batches import best_of
from services.publish.batch_rows import check_observation_batch, observation_batches_table
from services.publish.rows import Landed, observations_table
from services.runtime import wire
from services.runtime.batches import batching
from services.runtime.codec import parse_plain
from services.runtime.schemas import load_schemas

OBSERVATION = batching("Observation")
V2 = parse_plain(load_schemas()["ObservationBatch"].expanded)
TOPIC = "observations.v2"
ZONES = {"lyon": "Europe/Paris", "grenoble": "Europe/Paris"}
T0 = 1_763_769_600_000_000  # 2025-11-22T00:00Z, µs
KINDS = (  # (domain, metric, unit, entity type): what single readings measure
    ("air", "air.no2", "ug/m3", "AirQualityObserved"),
    ("air", "air.pm10", "ug/m3", "AirQualityObserved"),
    ("traffic", "traffic.intensity", "vehicles/h", "TrafficFlowObserved"),
    ("water", "water.level", "m", "WaterLevelObserved"),
)


def members(rng: random.Random, number: int, count: int) -> list[dict]:
    """One source batch of ``count`` sensors, one reading each, as normalise gives them."""
    city = ("lyon", "grenoble")[number % 2]
    source = ("air-sensors", "city-sensors", "traffic-loops")[number % 3]
    records = []
    for i in range(count):
        domain, metric, unit, kind = KINDS[rng.randrange(len(KINDS))]
        records.append(
            {
                "city": city,
                "domain": domain,
                "metric": metric,
                "unit": unit,
                "entity_pseudonym": f"{city[0]}{number:05d}{i:03d}",
                "entity_type": kind,
                "zone": f"69{rng.randrange(40):03d}",
                "position": {"lat": 45.7 + rng.random() / 10, "lon": 4.8 + rng.random() / 10},
                "start": T0 + number * 1_000_000 + i,
                "step_seconds": 0,
                "times": [],
                "values": [round(rng.uniform(0, 120), 2)],
                "quality": [],
                "source": source,
                "dataset": source,
                "lineage_id": f"batch-{number}",
                "key_epoch": "2025-11",
                "sector": None,
                "carrier": None,
                "versions": [],
                "replaced": [],
            }
        )
    return records


def workload(readings: int, smallest: int, largest: int, seed: int = 17) -> list[bytes]:
    """Encoded messages holding ``readings`` single readings in all."""
    rng = random.Random(seed)
    out, total = [], 0
    while total < readings:
        count = min(rng.randint(smallest, largest), readings - total)
        [batch] = OBSERVATION.implode(members(rng, len(out), count))
        out.append(wire.encode(2, V2, batch))
        total += count
    return out


def inserts(records: list[dict], per_insert: int) -> list[list[Landed]]:
    """The decoded messages cut into inserts of about ``per_insert`` readings each."""
    out: list[list[Landed]] = [[]]
    rows = 0
    for offset, record in enumerate(records):
        if rows >= per_insert:
            out.append([])
            rows = 0
        out[-1].append(Landed(record, TOPIC, offset % 6, offset))
        rows += len(record["values"])
    return out


def decode(messages: Sequence[bytes]) -> list[dict]:
    """The Avro half of the sink's ``_decoded``."""
    return [wire.decode(value, V2) for value in messages]


def check(records: Sequence[dict]) -> None:
    """The other half: the batch's own checks, then the rows' (services.publish.sink)."""
    for record in records:
        OBSERVATION.check(record)
        check_observation_batch(record)


def v1_rows(batch: Sequence[Landed]) -> object:
    members = [
        Landed(m, x.topic, x.partition, x.offset)
        for x in batch
        for m in OBSERVATION.explode(x.record)
    ]
    return observations_table(members, ZONES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--smallest", type=int, default=10, help="members in a message, least")
    parser.add_argument("--largest", type=int, default=300, help="members in a message, most")
    parser.add_argument(
        "--per-insert", type=int, default=2_000, help="readings per insert (10,000/s at 200 ms)"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--insert", action="store_true", help="also time chDB's insert")
    args = parser.parse_args(argv)

    messages = workload(args.readings, args.smallest, args.largest)
    records = decode(messages)
    check(records)
    batches = inserts(records, args.per_insert)
    n = sum(len(r["values"]) for r in records)
    for batch in batches:  # the figures below are of equal tables
        assert observation_batches_table(batch, ZONES).equals(v1_rows(batch))

    def rows() -> None:
        for batch in batches:
            observation_batches_table(batch, ZONES)

    def reference() -> None:
        for batch in batches:
            v1_rows(batch)

    figures = {
        "Avro decode": best_of(args.rounds, lambda: decode(messages)),
        "checks as decoded": best_of(args.rounds, lambda: check(records)),
        "rows, columnar (batch_rows)": best_of(args.rounds, rows),
        "rows, v1 way (explode + rows)": best_of(args.rounds, reference),
    }
    if args.insert:
        figures["chDB insert of the tables"] = insert_seconds(batches, args.rounds)
    print(
        f"{n:,} single readings in {len(messages):,} messages "
        f"({args.smallest}-{args.largest} members), {len(batches):,} inserts of "
        f"~{args.per_insert:,} readings"
    )
    columnar = figures["rows, columnar (batch_rows)"]
    for name, seconds in figures.items():
        print(
            f"  {name:32} {seconds / n * 1e6:7.3f} µs/reading  {n / seconds:>12,.0f} readings/s"
            f"  {seconds / columnar:6.2f}x columnar rows"
        )
    return 0


def insert_seconds(batches: list[list[Landed]], rounds: int) -> float:
    """chDB's insert of every table (with the rollup views), fresh tables per round."""
    from services.warehouse.chdb_embedded import ChdbWarehouse
    from services.warehouse.migrations import migrate

    tables = [observation_batches_table(batch, ZONES) for batch in batches]
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="citeplus-bench-publish-batches-") as work:
        warehouse = ChdbWarehouse(Path(work) / "warehouse")
        try:
            migrate(warehouse)
            for _ in range(min(rounds, 3)):
                warehouse.command("TRUNCATE TABLE observations")
                started = time.perf_counter()
                for table in tables:
                    warehouse.insert_arrow("observations", table)
                best = min(best, time.perf_counter() - started)
        finally:
            warehouse.close()
    return best


if __name__ == "__main__":
    raise SystemExit(main())
