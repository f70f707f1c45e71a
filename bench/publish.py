"""publish: readings/s landed in chDB from the observations topic through the
sink (consume, decode, expand to one row per reading, insert, commit), and the
latency of the README's analyst questions on 10 million observations (median of
several runs), in one run.

Landing is measured on --landed readings through Kafka; the warehouse is then
filled to --total readings by direct inserts of the same shape, so the query
figures are for a table of that size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from services.publish.questions import QUESTIONS
from services.publish.rows import Landed, observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.runtime.config import load_node_config
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate

T0 = 1_736_722_800_000_000  # 2025-01-13T00:00:00+01:00
DAY_US = 86_400_000_000
ZONES = [f"69381{z:04d}" for z in range(40)]


def meter_day(meter: int, day: int) -> dict:
    """One meter's day of 10-minute readings: a household-like curve."""
    base = 0.05 + (meter % 7) * 0.01
    values = [
        round(
            base
            * (1.0 + (1.5 if 42 <= i <= 54 or 108 <= i <= 132 else 0.0) + (meter * i % 5) * 0.05),
            4,
        )
        for i in range(144)
    ]
    return {
        "city": ("lyon", "paris", "nice", "bordeaux", "angers")[meter % 5],
        "domain": "energy",
        "metric": "active_energy_import",
        "unit": "kWh",
        "entity_pseudonym": f"m{meter:07d}",
        "entity_type": "ElectricityMeter",
        "zone": ZONES[meter % len(ZONES)],
        "position": None,
        "start": T0 + day * DAY_US,
        "step_seconds": 600,
        "times": [],
        "values": values,
        "quality": [],
        "source": "bench",
        "dataset": "load-curves",
        "lineage_id": "bench",
        "key_epoch": "2025-01",
        "sector": "residential" if meter % 4 else "professional",
        "carrier": "electricity",
    }


def series(count: int, offset: int = 0) -> list[dict]:
    meters = 5000
    return [meter_day((offset + i) % meters, (offset + i) // meters) for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landed", type=int, default=2_000_000, help="readings landed via Kafka")
    parser.add_argument("--total", type=int, default=10_000_000, help="readings in the table")
    parser.add_argument("--runs", type=int, default=5, help="runs per query (median)")
    args = parser.parse_args(argv)

    node = load_node_config()
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    topic = replace(declared["observations.v1"], name=prefix + "observations")
    provision_topics(node, [topic])
    contracts = connect_contracts(node, [topic])
    landed_series = args.landed // 144
    writer = RecordProducer(make_producer(node), contracts)
    for record in series(landed_series):
        writer.produce(topic.name, record["entity_pseudonym"], record)
    writer.flush(120)

    work = Path(tempfile.mkdtemp(prefix="citeplus-bench-publish-"))
    warehouse = ChdbWarehouse(work / "warehouse")
    migrate(warehouse)
    sink = WarehouseSink(
        node,
        contracts,
        warehouse,
        [SinkRoute(topic.name, "observations", observations_table)],
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        max_messages=2000,
    )
    sink.start()
    started = time.perf_counter()
    while sink.summary.messages < landed_series:
        sink.run_once()
    landing_s = time.perf_counter() - started
    sink.close()
    rows = sink.summary.rows
    print(
        f"publish bench: sink landed {rows:,} readings ({landed_series:,} series of 144) "
        f"from Kafka "
        f"into chDB in {landing_s:.2f} s: {rows / landing_s:,.0f} readings/s "
        f"({landed_series / landing_s:,.0f} messages/s)",
        flush=True,
    )

    filled, chunk = rows, 2000
    started = time.perf_counter()
    while filled < args.total:
        batch = [Landed(r, "fill", 0, 0) for r in series(chunk, offset=filled // 144)]
        warehouse.insert_arrow("observations", observations_table(batch))
        filled += chunk * 144
    fill_s = time.perf_counter() - started
    count = warehouse.query_arrow("SELECT count() AS n FROM observations").column("n")[0].as_py()
    print(
        f"filled to {count:,} readings by direct Arrow inserts in {fill_s:.1f} s "
        f"({(count - rows) / fill_s:,.0f} readings/s, expansion + insert)",
        flush=True,
    )
    warehouse.command("OPTIMIZE TABLE observations_hourly FINAL")
    warehouse.command("OPTIMIZE TABLE observations_daily FINAL")

    print(f"\nquery latency on {count:,} observations, median of {args.runs} runs:")
    for q in QUESTIONS:
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            result = warehouse.query_arrow(q.sql)
            timings.append(time.perf_counter() - started)
        print(
            f"  {q.slug:32} {statistics.median(timings) * 1000:8.1f} ms  ({result.num_rows} rows)"
        )
    raw = "SELECT zone, sum(value) FROM observations WHERE city = 'lyon' GROUP BY zone"
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        warehouse.query_arrow(raw)
        timings.append(time.perf_counter() - started)
    print(f"  {'full scan (no rollup), for scale':32} {statistics.median(timings) * 1000:8.1f} ms")
    warehouse.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
