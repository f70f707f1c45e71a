"""Anonymise throughput: readings/s through the stage on the local broker, and
the ratio to the foundation ceiling measured in the same run on the same messages.

Messages are RawRecords of one meter-day at 10 minutes (144 rows) with a
realistic policy: one identifier (the delivery point), two quasi-identifiers
(the IRIS code truncated to the commune, the position to a 250 m grid cell) and
measures (time text, energy, a quality label the safety net scans).

Four passes over the same messages on the local broker:

1. ``bare bytes``: a confluent-kafka consumer copies the raw bytes to another
   topic (no decode, no transaction): Kafka alone;
2. ``bare avro`` (the ceiling): the same, decoding each message with fastavro
   and encoding it again: what any stage pays before doing anything;
3. ``anonymise``: the stage through the runtime's StageRunner (transactions,
   read_committed, audit records per batch), as `citeplus service anonymise` runs it;
4. ``anonymise, coarsened to the day``: the same messages from a source of the
   same city declared personal without consent (coarsen to P1D): every record
   is folded into its meter's open day in the changelog-backed store
   (``anonymise.state.v1``, one state write per meter-day and batch) and one
   record per meter-day leaves when the day closes (the last days by the wall
   clock, included in the time). The ratio to pass 3 is the cost of stateful
   coarsening.

Run with `make bench`, or directly with CITEPLUS_KAFKA_BOOTSTRAP /
CITEPLUS_REGISTRY_URL pointing at running ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import bare
from services.anonymise.policy import load_policies
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.anonymise.transform import anonymise
from services.privacy.keys import KeyStore, new_secret
from services.runtime.cities import load_cities
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import make_producer, produce_bytes
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics

CITY = """
code: benchville
name: Benchville
sources:
  - id: courbes
    format: csv
    dataset: load-curves
    domain: energy
    entity: pdl
    token: env:CITEPLUS_TOKEN_BENCH
    privacy:
      version: bench-1
      personal: true
      consent: true
      fields:
        pdl: identifier
        iris: {class: quasi-identifier, prefix: 5}
        position: {class: quasi-identifier, grid: 250}
        horodate: measure
        energie_kwh: measure
        qualite: measure
  - id: courbes-sans-consentement
    format: csv
    dataset: load-curves
    domain: energy
    entity: pdl
    token: env:CITEPLUS_TOKEN_BENCH
    privacy:
      version: bench-1
      personal: true
      fields:
        pdl: identifier
        iris: {class: quasi-identifier, prefix: 5}
        position: {class: quasi-identifier, grid: 250}
        horodate: measure
        energie_kwh: measure
        qualite: measure
      coarsen: {to: P1D, sum: [energie_kwh], lateness: PT6H, quiet: PT1H}
"""
T0 = 1_736_722_800_000_000  # 2025-01-13T00:00:00+01:00
ROWS = 144


def column(name: str, kind: str, values: list[Any]) -> dict[str, Any]:
    out = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": [], "booleans": []}
    out[{"string": "strings", "double": "doubles"}[kind]] = values
    out["missing"] = []
    return out


def raw_record(
    meter: int, day: int, source: str = "courbes", part: int = 0, rows: int = ROWS
) -> dict[str, Any]:
    """``rows`` ten-minute readings of a meter-day (its ``part``-th slice), column-wise:
    the whole day by default, one reading per message with ``rows=1``."""
    start = T0 + day * 86_400_000_000
    pdl = f"{30001234500000 + meter:014d}"
    date = (datetime(2025, 1, 13) + timedelta(days=day)).strftime("%Y-%m-%d")
    slots = range(part * rows, (part + 1) * rows)
    times = [f"{date} {k // 6:02d}:{k % 6 * 10:02d}:00" for k in slots]
    return {
        "city": "benchville",
        "source": source,
        "dataset": "load-curves",
        "format": "csv",
        "entity_id": pdl,
        "entity_type": None,
        "lineage_id": f"bench-{day}",
        "received_at": start + 86_400_000_000,
        "row_count": rows,
        "event_times": [start + k * 600_000_000 for k in slots],
        "columns": [
            column("pdl", "string", [pdl] * rows),
            column("iris", "string", [f"3306301{meter % 40:02d}"] * rows),
            column(
                "position", "string", [f"44.{8300 + meter % 997},-0.{5700 + meter % 991}"] * rows
            ),
            column("horodate", "string", times),
            column("energie_kwh", "double", [0.05 + 0.001 * ((meter + k) % 300) for k in slots]),
            column("qualite", "string", ["reel" if k % 50 else "estime" for k in slots]),
        ],
        "attributes": {},
    }


def produce_inputs(
    node: NodeConfig,
    contracts: Contracts,
    topic: str,
    messages: int,
    source: str = "courbes",
    rows: int = ROWS,
) -> tuple[int, int]:
    """``messages`` slices of ``rows`` readings of 500 meters, in time order (meters
    interleaved): with 144 rows, each meter-day once, as a data hub's daily batch sends
    them; with 1, one reading per message, as a gateway pushing every interval does.
    Returns the mean message size and the number of meter-days touched."""
    codec = contracts.codec(topic)
    producer = make_producer(node)
    parts = ROWS // rows
    sizes, days = [], set()
    for i in range(messages):
        meter, slot = i % 500, i // 500
        day, part = (slot // parts) % 20, slot % parts
        days.add((meter, day))
        record = raw_record(meter, day, source, part, rows)
        value = codec.encode(record)
        if i < 500:
            sizes.append(len(value))
        produce_bytes(producer, topic, f"benchville|{source}|{record['entity_id']}", value)
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(120)
    return sum(sizes) // len(sizes), len(days)


def bare_copy(
    node: NodeConfig, contracts: Contracts, source: str, target: str, expected: int, avro: bool
) -> float:
    """Consume ``source`` and produce every message to ``target`` (decoded and encoded
    again when ``avro``, else its bytes as they are); seconds taken from the start, the
    group's join included, as the stage's pass below is timed."""
    if not avro:
        return bare.copy(node, source, target, expected).seconds_with_join
    codec = contracts.codec(source)
    decode, encode = bare.decoder(codec), bare.encoder(codec)
    return bare.copy(node, source, target, expected, decode=decode, encode=encode).seconds_with_join


class BenchClock:
    """Wall clock that the bench moves forward to close the last days (source quiet)."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew


def through_stage(
    node: NodeConfig,
    contracts: Contracts,
    stage: AnonymiseStage,
    dlq: str,
    expected: int,
    *,
    days: int = 0,
) -> tuple[float, StageRunner]:
    """Seconds to consume ``expected`` messages (and release ``days`` meter-days)."""
    stage.name = f"bench-anonymise-{uuid.uuid4().hex[:8]}"
    runner = StageRunner(stage, node, contracts, metrics=stage.metrics, dead_letter_topic=dlq)
    runner.start()
    started = time.perf_counter()
    try:
        while runner.summary.records_in < expected:
            runner.run_once()
        if days:
            stage._clock.skew = 7 * 86400  # type: ignore[attr-defined]
            while stage.days.released < days:
                # No input is left: the days close by the wall clock, on the runner's tick.
                runner.run_once()
                runner.tick()
    finally:
        seconds = time.perf_counter() - started
        runner.close()
    return seconds, runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="RawRecords of 144 readings")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the node's")
    parser.add_argument(
        "--rows",
        type=int,
        default=ROWS,
        choices=[1, 2, 3, 4, 6, 8, 12, 16, 18, 24, 36, 48, 72, 144],
        help="readings per message (1: one reading per message; default a meter-day)",
    )
    args = parser.parse_args(argv)

    base = load_node_config()
    batch = args.batch_size or base.processing.batch_size
    node = replace(base, processing=replace(base.processing, batch_size=batch, batch_timeout_s=0.2))
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    names = {
        "raw": ("raw.v1", "raw"),
        "copy_bytes": ("raw.v1", "copy.bytes"),
        "copy_avro": ("raw.v1", "copy.avro"),
        "raw_daily": ("raw.v1", "raw.daily"),
        "anonymised": ("anonymised.v1", "anonymised"),
        "state": ("anonymise.state.v1", "state"),
        "state_plain": ("anonymise.state.v1", "state.plain"),  # the first stage's own
        "audit": ("audit.v1", "audit"),
        "dlq": ("dlq.v1", "dlq"),
        "raw_dlq": ("raw.dlq.v1", "dlq.raw"),  # its rejects, whole (restricted)
    }
    specs = {
        key: replace(declared[kind], name=prefix + suffix, partitions=args.partitions)
        for key, (kind, suffix) in names.items()
    }
    provision_topics(node, list(specs.values()))
    contracts = connect_contracts(node, list(specs.values()))
    topic = {key: spec.name for key, spec in specs.items()}

    work = Path(tempfile.mkdtemp(prefix="citeplus-bench-anonymise-"))
    (work / "benchville.yaml").write_text(CITY)
    policies = load_policies(load_cities(work))
    keys = KeyStore(work / "keys", environ={"CITEPLUS_PSEUDONYM_SECRET_BENCHVILLE": new_secret()})
    stage = AnonymiseStage(
        policies,
        keys,
        contracts,
        topics=AnonymiseTopics(
            topic["raw"], topic["anonymised"], topic["audit"], topic["state_plain"], topic["dlq"]
        ),
        metrics=ServiceMetrics("anonymise"),
    )
    daily_topics = AnonymiseTopics(
        topic["raw_daily"], topic["anonymised"], topic["audit"], topic["state"], topic["dlq"]
    )
    daily_stage = AnonymiseStage(
        policies,
        keys,
        contracts,
        topics=daily_topics,
        metrics=ServiceMetrics("anonymise"),
        clock=BenchClock(),
        node=node,
    )

    messages = args.messages
    rows = args.rows
    readings = messages * rows
    size, _ = produce_inputs(node, contracts, topic["raw"], messages, rows=rows)
    _, meter_days = produce_inputs(
        node, contracts, topic["raw_daily"], messages, "courbes-sans-consentement", rows
    )
    print(
        f"Anonymise bench: {messages:,} RawRecords x {rows} readings = {readings:,} readings "
        f"({size:,} B per message), broker {node.kafka.bootstrap}, {args.partitions} partitions, "
        f"batches of {batch}",
        flush=True,
    )
    print("policy: 1 identifier, 2 quasi-identifiers (prefix, 250 m grid), 3 measures\n")

    # Transform alone, in this process, for the record (no Kafka, no Avro).
    sample = [raw_record(m, m % 3, part=0, rows=rows) for m in range(500)]
    policy = policies.get("benchville", "courbes")
    pseudonymise = keys.pseudonymiser("benchville", "2025-01")
    started = time.perf_counter()
    for record in sample:
        anonymise(record, policy, pseudonymise)
    transform_s = (time.perf_counter() - started) * messages / len(sample)

    results = [
        (
            "bare bytes",
            bare_copy(node, contracts, topic["raw"], topic["copy_bytes"], messages, False),
        ),
        (
            "bare avro (ceiling)",
            bare_copy(node, contracts, topic["raw"], topic["copy_avro"], messages, True),
        ),
    ]
    stage_s, runner = through_stage(node, contracts, stage, topic["dlq"], messages)
    results.append(("anonymise (StageRunner, EOS)", stage_s))
    assert runner.summary.records_out >= messages and runner.summary.dead_letters == 0
    # the three passes first: the stateful one below waits for its days to close
    ceiling = dict(results)["bare avro (ceiling)"]
    print(f"{'path':30} {'seconds':>8} {'messages/s':>11} {'readings/s':>12} {'vs ceiling':>10}")

    def row(name: str, seconds: float) -> None:
        print(
            f"{name:30} {seconds:>8.2f} {messages / seconds:>11,.0f} {readings / seconds:>12,.0f} "
            f"{ceiling / seconds:>10.2f}",
            flush=True,
        )

    for name, seconds in results:
        row(name, seconds)
    daily_s, daily_runner = through_stage(
        node, contracts, daily_stage, topic["dlq"], messages, days=meter_days
    )
    row("anonymise, coarsened to the day", daily_s)
    assert daily_runner.summary.dead_letters == 0
    assert daily_stage.days.released == meter_days
    only = "transform only (no Kafka/Avro)"
    rate = messages / transform_s
    print(f"{only:30} {transform_s:>8.2f} {rate:>11,.0f} {rate * rows:>12,.0f}")
    print(
        f"stateful coarsening: {readings / daily_s:,.0f} readings/s vs {readings / stage_s:,.0f} "
        f"without, ratio {stage_s / daily_s:.2f} (same messages, same run); "
        f"{daily_stage.days.released:,} meter-days released"
    )
    audits = runner.metrics.registry.get_sample_value(
        "citeplus_records_out_total", {"service": stage.name, "topic": topic["audit"]}
    )
    print(
        f"\n{rows} readings per message; {runner.summary.batches} transactions, "
        f"{audits or 0:.0f} audit records"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
