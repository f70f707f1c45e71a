"""publish: readings/s landed in chDB from the observations topic through the
sink (consume, decode, expand to one row per reading, insert, commit), and the
latency of the README's analyst questions on 10 million observations (median of
several runs), in process and over the SQL door (ClickHouse's HTTP interface,
with clickhouse-connect: median/p99 per question, queries/s with 1 and 8
clients), and the sink's insert latency while an analyst runs a 10-second query
against its idle value, in one run.

Landing is measured on --landed readings through Kafka; the warehouse is then
filled to --total readings by direct inserts of the same shape, so the query
figures are for a table of that size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import clickhouse_connect

from services.publish.clickhouse_http.door import SqlService
from services.publish.questions import QUESTIONS
from services.publish.rows import Landed, observations_table
from services.publish.sink import SinkRoute, WarehouseSink
from services.publish.sql_users import UserStore, ensure_operator
from services.runtime.config import load_node_config
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.ports import free_port

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
    parser.add_argument("--http-runs", type=int, default=20, help="runs per question over HTTP")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput figure")
    parser.add_argument("--long-query-s", type=int, default=10, help="the analyst's long query")
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
    door = open_door(node, work, warehouse)
    try:
        over_http(door, args)
        sink_beside_a_long_query(door, warehouse, args.long_query_s)
    finally:
        door.service.stop()
    warehouse.close()
    return 0


class Door:
    def __init__(self, service: SqlService, port: int, secret: str):
        self.service, self.port, self.secret = service, port, secret

    def client(self) -> clickhouse_connect.driver.Client:
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.port, username="bench", password=self.secret
        )


def open_door(node, work: Path, warehouse: ChdbWarehouse) -> Door:
    """The SQL door of publish on this warehouse, as the node opens it (sql: section)."""
    ensure_operator(work)
    secret = UserStore(work).add("bench")
    port = free_port()
    configured = replace(node, node=replace(node.node, state_dir=str(work)))
    configured = replace(configured, sql=replace(node.sql, port=port))
    service = SqlService(configured, warehouse.readers(configured.sql.readers)).start()
    return Door(service, port, secret)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def over_http(door: Door, args: argparse.Namespace) -> None:
    client = door.client()
    print(f"\nover HTTP (clickhouse-connect query_arrow), {args.http_runs} runs each:")
    for q in QUESTIONS:
        timings = []
        for _ in range(args.http_runs):
            started = time.perf_counter()
            client.query_arrow(q.sql)
            timings.append(time.perf_counter() - started)
        print(
            f"  {q.slug:32} median {statistics.median(timings) * 1000:8.1f} ms  "
            f"p99 {_percentile(timings, 0.99) * 1000:8.1f} ms"
        )
    for clients in (1, 8):
        rate = throughput(door, clients, args.seconds)
        print(f"  all questions in turn, {clients} client(s): {rate:,.1f} queries/s")


def throughput(door: Door, clients: int, seconds: float) -> float:
    """Queries/s over ``seconds`` with ``clients`` each asking the questions in turn."""
    done: list[int] = []
    deadline = time.perf_counter() + seconds

    def ask() -> None:
        client, count = door.client(), 0
        while time.perf_counter() < deadline:
            client.query_arrow(QUESTIONS[count % len(QUESTIONS)].sql)
            count += 1
        done.append(count)

    threads = [threading.Thread(target=ask) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def _insert_latencies(warehouse: ChdbWarehouse, batches: int, offset: int) -> list[float]:
    """The sink's write step: batches of 50 meter-days (7,200 readings), on its session."""
    timings = []
    for number in range(batches):
        batch = [Landed(r, "late", 0, 0) for r in series(50, offset=offset + number * 50)]
        table = observations_table(batch)
        started = time.perf_counter()
        warehouse.insert_arrow("observations", table)
        timings.append(time.perf_counter() - started)
    return timings


def sink_beside_a_long_query(door: Door, warehouse: ChdbWarehouse, long_s: int) -> None:
    """Goal: the sink's insert latency during a long analyst query under twice its idle value."""
    # The door runs queries read-only, so clickhouse-connect sees every setting as
    # read-only and refuses to send any unless told to; the door applies the lowered limit.
    clickhouse_connect.common.set_setting("invalid_setting_action", "send")
    idle = _insert_latencies(warehouse, 20, 10_000_000)
    answer: list[str] = []

    def long_query() -> None:
        try:
            door.client().query(
                "SELECT count() FROM numbers(100000000000)",
                settings={"max_execution_time": long_s},
            )
        except Exception as exc:  # the timeout is the point
            answer.append(type(exc).__name__)

    analyst = threading.Thread(target=long_query)
    analyst.start()
    time.sleep(0.5)
    busy: list[float] = []
    while analyst.is_alive() and len(busy) < 400:
        busy += _insert_latencies(warehouse, 1, 20_000_000 + len(busy) * 50)
    analyst.join()
    if not busy:
        print(f"\nthe analyst's long query ended at once ({answer}): no figure")
        return
    ratio = statistics.median(busy) / statistics.median(idle)
    print(
        f"\nsink insert latency (7,200 readings per batch), idle: median "
        f"{statistics.median(idle) * 1000:.1f} ms, max {max(idle) * 1000:.1f} ms; while an "
        f"analyst's {long_s} s query runs ({len(busy)} batches): median "
        f"{statistics.median(busy) * 1000:.1f} ms, max {max(busy) * 1000:.1f} ms "
        f"({ratio:.2f}x idle; goal under 2x); the query ended with {answer or 'no error'}"
    )


if __name__ == "__main__":
    sys.exit(main())
