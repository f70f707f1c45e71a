"""energy-analytics throughput: readings/s aggregated on the local broker.

Produces meters x days of 10-minute load curves (one Observation series of 144
readings per meter and UTC day, Confluent wire format) to a fresh observations
topic, then measures, on the same messages:

- ceiling: a bare confluent-kafka consumer decoding them with fastavro (the
  foundation's ceiling: nothing is faster in Python on this broker);
- bare consume + produce: the same consumer re-encoding each message and producing
  it to another topic (idempotent producer, no transaction): what any stage that
  reads these messages and writes as many costs at least, the yardstick the other
  stage benches use (normalise.py, anonymise.py);
- ours: the energy-analytics stage (StageRunner, transactions, read_committed):
  regroup by city, 15 min / 1 h / 1 day windows per zone and sector and city
  totals, statistical secrecy, upserts, changelog state;
- without the release rule: the same stage, on its own copy of the topics, minus
  the one release of every closed day (energy.aggregates.released.v2): what the
  release rule costs, same run, same data (with 4 days and 48 h of lateness, the
  first two days close and are released during the run);
- peer: the same windowed aggregate written with quixstreams, exactly once, in
  its own virtual environment (var/bench-venvs/quix, created on first run with
  pip: quixstreams pins another confluent-kafka than ours), bench/energy_quix_peer.py.

Each time runs from the first message consumed to the last reading aggregated.
Run with `make bench`, or directly against a running broker and registry.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer

from services.energy.main import topic_specs
from services.energy.stage import EnergyStage
from services.runtime import wire
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import (
    RecordProducer,
    consumer_settings,
    make_producer,
    produce_bytes,
)
from services.runtime.paths import AVRO_DIR, REPO_ROOT
from services.runtime.processor import StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics

T0 = 1_763_769_600_000_000  # 2025-11-22T00:00:00Z
DAY_US = 86_400_000_000
QUIX = "quixstreams==3.28.1"
PEER_VENV = REPO_ROOT / "var" / "bench-venvs" / "quix"


def load_curve(meter: int, day: int) -> list[float]:
    """A plausible day: night base, morning and evening peaks, meter-specific size."""
    size = 0.05 + 0.01 * (meter % 17)
    curve = []
    for k in range(144):
        hour = k / 6
        shape = 1.0 + (1.5 if 7 <= hour < 9 else 0) + (2.0 if 18 <= hour < 22 else 0)
        curve.append(round(size * shape * (1 + 0.1 * ((meter + day + k) % 5)), 3))
    return curve


def observations(meters: int, days: int) -> list[dict[str, Any]]:
    out = []
    for day in range(days):
        for m in range(meters):
            zone = f"69381{m // 40:04d}" if m < meters - 20 else f"69381{9000 + m % 4:04d}"
            out.append(
                {
                    "city": "lyon",
                    "domain": "energy",
                    "metric": "active_energy_import",
                    "unit": "kWh",
                    "entity_pseudonym": f"meter-{m:06d}",
                    "entity_type": "ElectricityMeter",
                    "zone": zone,
                    "position": None,
                    "start": T0 + day * DAY_US,
                    "step_seconds": 600,
                    "times": [],
                    "values": load_curve(m, day),
                    "quality": [],
                    "source": "bench",
                    "dataset": "load-curves",
                    "lineage_id": "bench",
                    "key_epoch": None,
                    "sector": "residential" if m % 7 else "tertiary",
                    "carrier": "electricity",
                }
            )
    return out


def produce(node: NodeConfig, contracts, topic: str, records: list[dict]) -> None:
    writer = RecordProducer(make_producer(node), contracts)
    for i, record in enumerate(records):
        writer.produce(topic, f"lyon|{record['entity_pseudonym']}", record)
        if i % 1000 == 0:
            writer.producer.poll(0)
    assert writer.flush(120) == 0


def bare_relay(
    node: NodeConfig, contracts, topic: str, target: str, messages: int
) -> tuple[int, float]:
    """Consume, decode, encode again and produce each message: no transaction."""
    parsed = contracts.codec(topic)._reader
    header = wire.HEADER.pack(0, contracts.codec(target).schema_id)
    consumer = Consumer(consumer_settings(node, group_id=f"bench-{uuid.uuid4().hex}"))
    producer = make_producer(node)
    consumer.subscribe([topic])
    seen = readings = 0
    first = None
    while seen < messages:
        for message in consumer.consume(500, 1.0):
            if message.error():
                continue
            first = first or time.perf_counter()
            buffer = io.BytesIO(message.value())
            buffer.seek(5)
            record = fastavro.schemaless_reader(buffer, parsed)
            out = io.BytesIO()
            out.write(header)
            fastavro.schemaless_writer(out, parsed, record)
            produce_bytes(producer, target, message.key(), out.getvalue())
            readings += len(record["values"])
            seen += 1
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - first
    consumer.close()
    return readings, seconds


def bare_consume(node: NodeConfig, contracts, topic: str, messages: int) -> tuple[int, float]:
    parsed = contracts.codec(topic)._reader
    consumer = Consumer(consumer_settings(node, group_id=f"bench-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    seen = readings = 0
    first = None
    while seen < messages:
        for message in consumer.consume(500, 1.0):
            if message.error():
                continue
            first = first or time.perf_counter()
            buffer = io.BytesIO(message.value())
            buffer.seek(5)
            readings += len(fastavro.schemaless_reader(buffer, parsed)["values"])
            seen += 1
    seconds = time.perf_counter() - first
    consumer.close()
    return readings, seconds


class WithoutRelease(EnergyStage):
    """The stage as it was before the release rule: closed days are not released."""

    def _release_closed_days(self, released_at: int) -> list:
        return []


def ours(
    node: NodeConfig,
    contracts,
    topics,
    name: str,
    total: int,
    partitions: int,
    kind: type[EnergyStage] = EnergyStage,
) -> dict[str, Any]:
    stage = kind(topics, node=node, contracts=contracts, name=name, partitions=partitions)
    runner = StageRunner(
        stage, node, contracts, instance=name, dead_letter_topic=topics.dead_letters
    )
    runner.start()
    first = None
    idle_since = time.monotonic()
    try:
        while stage.readings_aggregated < total:
            if runner.run_once():
                idle_since = time.monotonic()
                first = first or time.perf_counter()
            elif time.monotonic() - idle_since > 15:
                raise RuntimeError(
                    f"stalled at {stage.readings_aggregated:,} of {total:,} readings "
                    f"(dead letters: {runner.summary.dead_letter_reasons})"
                )
        seconds = time.perf_counter() - first
    finally:
        runner.close()
    return {
        "readings": stage.readings_aggregated,
        "seconds": seconds,
        "aggregates": stage.aggregates_published,
        "batches": runner.summary.batches,
        "days_released": stage.days_released,
    }


def peer_python() -> Path:
    """The peer's interpreter, in a virtual environment of its own (created once)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} with {QUIX} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    check = subprocess.run(
        [str(python), "-c", "import quixstreams, fastavro; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0 or check.stdout.strip() != QUIX.split("==")[1]:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", QUIX, "fastavro==1.13.1"], check=True
        )
    return python


def peer(node: NodeConfig, topic: str, total: int) -> dict[str, Any]:
    python = peer_python()
    result = subprocess.run(
        [
            str(python),
            str(Path(__file__).with_name("energy_quix_peer.py")),
            "--bootstrap",
            node.kafka.bootstrap,
            "--topic",
            topic,
            "--schema",
            str(AVRO_DIR / "Observation.avsc"),
            "--readings",
            str(total),
            "--group",
            f"bench-quix-{uuid.uuid4().hex[:8]}",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"quixstreams peer failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--no-peer", action="store_true", help="skip the quixstreams peer")
    args = parser.parse_args(argv)

    base = load_node_config()
    node = replace(base, processing=replace(base.processing, batch_size=2000, batch_timeout_s=0.2))
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    topics, specs = topic_specs(prefix)
    relay = replace(specs[0], name=f"{prefix}bare-relay")
    provision_topics(node, [*specs, relay])
    contracts = connect_contracts(node, [*specs, relay])
    data = observations(args.meters, args.days)
    total = sum(len(r["values"]) for r in data)
    produce(node, contracts, topics.observations, data)
    print(
        f"energy-analytics: {args.meters:,} meters x {args.days} days = {len(data):,} messages "
        f"of 144 readings ({total:,} readings), broker {node.kafka.bootstrap}, "
        f"{specs[0].partitions} partitions, batches of up to {node.processing.batch_size}",
        flush=True,
    )
    rows: list[tuple[str, float, str]] = []

    readings, seconds = bare_consume(node, contracts, topics.observations, len(data))
    assert readings == total
    ceiling = readings / seconds
    rows.append(("ceiling (bare consume + decode)", seconds, ""))
    print(f"  {rows[-1][0]:40} {seconds:8.2f} s {ceiling:>12,.0f} readings/s", flush=True)

    readings, seconds = bare_relay(node, contracts, topics.observations, relay.name, len(data))
    assert readings == total
    relayed = readings / seconds
    print(
        f"  {'bare consume + produce (no transaction)':40} {seconds:8.2f} s "
        f"{relayed:>12,.0f} readings/s",
        flush=True,
    )

    result = ours(node, contracts, topics, f"{prefix}energy-analytics", total, specs[0].partitions)
    rate = result["readings"] / result["seconds"]
    print(
        f"  {'energy-analytics (ours, exactly once)':40} {result['seconds']:8.2f} s "
        f"{rate:>12,.0f} readings/s  ({result['aggregates']:,} aggregate upserts, "
        f"{result['batches']} transactions)",
        flush=True,
    )
    # The release rule's cost: the same data on a copy of the topics, without it.
    other_prefix = f"bench.{uuid.uuid4().hex[:6]}."
    other_topics, other_specs = topic_specs(other_prefix)
    provision_topics(node, other_specs)
    other_contracts = connect_contracts(node, other_specs)
    produce(node, other_contracts, other_topics.observations, data)
    without = ours(
        node,
        other_contracts,
        other_topics,
        f"{other_prefix}energy-analytics",
        total,
        other_specs[0].partitions,
        WithoutRelease,
    )
    bare = without["readings"] / without["seconds"]
    print(
        f"  {'same, without the release rule':40} {without['seconds']:8.2f} s "
        f"{bare:>12,.0f} readings/s",
        flush=True,
    )
    print(
        f"\nrelease rule: {result['days_released']} city-days released once each; "
        f"ratio with / without: {rate / bare:.3f}"
    )
    print(f"ratio ours / ceiling: {rate / ceiling:.3f}")
    print(f"ratio ours / bare consume + produce: {rate / relayed:.3f}")
    if not args.no_peer:
        got = peer(node, topics.observations, total)
        peer_rate = got["readings"] / got["seconds"]
        print(
            f"  {'quixstreams 3.28.1 peer (exactly once)':40} {got['seconds']:8.2f} s "
            f"{peer_rate:>12,.0f} readings/s"
        )
        print(f"ratio peer / ceiling: {peer_rate / ceiling:.3f}")
        print(f"ratio ours / peer: {rate / peer_rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
