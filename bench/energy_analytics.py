"""energy-analytics throughput: readings/s aggregated on the local broker.

Two inputs, each on fresh topics, each measured per reading (``columnar=False``: the
stage's arithmetic of windows.py, reading by reading, "before") and on columns (the
default, "after"), against a bare consume + decode + encode + produce of the same
messages (what any stage pays, with no transaction and no work):

- load curves: meters x days of 10-minute load curves (one Observation of 144
  readings per meter and UTC day) on observations.v1;
- single readings (``--single``): one reading per meter every 10 minutes, a
  thousand meters to an ObservationBatch on observations.v2 (per entity partition),
  as ingest, anonymise and normalise now send them.

For load curves it also measures, on the same messages:

- ceiling: a bare confluent-kafka consumer decoding them with fastavro (the
  foundation's ceiling: nothing is faster in Python on this broker);
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

Each time runs from the first message consumed to the last reading aggregated. On a
machine shared with other work, compare the ratios of one run, not absolute figures.
Run with `make bench`, or directly against a running broker and registry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import bare
from services.energy.main import topic_specs
from services.energy.stage import EnergyStage
from services.runtime.batches import batching, entity_partition
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import RecordProducer, make_producer
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


def single_readings(meters: int, rounds: int) -> list[dict[str, Any]]:
    """One reading per meter every 10 minutes (the day's first ``rounds`` rounds)."""
    out = []
    for k in range(rounds):
        for record in observations(meters, 1):
            out.append(
                {**record, "start": T0 + k * 600_000_000, "values": [record["values"][k % 144]]}
            )
    return out


def produce_batches(
    node: NodeConfig, contracts, topic: str, records: list[dict], partitions: int, size: int
) -> int:
    """``records`` as ObservationBatch messages of up to ``size`` members, each on the
    partition of its members' entities; returns how many messages."""
    writer = RecordProducer(make_producer(node), contracts)
    lanes: dict[int, list[dict]] = {}
    messages = 0
    for record in records:
        p = entity_partition(f"lyon|{record['entity_pseudonym']}", partitions)
        lane = lanes.setdefault(p, [])
        lane.append(record)
        if len(lane) == size:
            messages += _send_batch(writer, topic, p, lanes.pop(p))
    for p, lane in lanes.items():
        messages += _send_batch(writer, topic, p, lane)
    assert writer.flush(120) == 0
    return messages


def _send_batch(writer: RecordProducer, topic: str, partition: int, members: list[dict]) -> int:
    for batch in batching("Observation").implode(members):
        writer.produce(topic, None, batch, partition=partition)
        writer.producer.poll(0)
    return 1


def bare_consume_produce(
    node: NodeConfig, contracts, topic: str, target: str, messages: int
) -> tuple[int, float]:
    """Consume, decode, encode each message again (same schema), produce it to
    ``target``: no transaction, no work; the floor of any stage's cost."""
    codec = contracts.codec(topic)
    run = bare.copy(
        node,
        topic,
        target,
        messages,
        decode=bare.decoder(codec),
        encode=bare.encoder(codec),
        readings=_readings,
    )
    return run.readings, run.seconds


def bare_consume(node: NodeConfig, contracts, topic: str, messages: int) -> tuple[int, float]:
    """Consume and decode each message: the foundation's ceiling."""
    decode = bare.decoder(contracts.codec(topic))
    run = bare.consume(node, topic, messages, decode, _readings)
    return run.readings, run.seconds


def _readings(record: dict[str, Any]) -> int:
    return len(record["values"])


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
    columnar: bool = True,
) -> dict[str, Any]:
    stage = kind(
        topics,
        node=node,
        contracts=contracts,
        name=name,
        partitions=partitions,
        columnar=columnar,
    )
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


def fresh(node: NodeConfig) -> tuple[str, Any, Any, Any]:
    """A fresh copy of the stage's topics: (prefix, topics, specs, contracts)."""
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    topics, specs = topic_specs(prefix)
    provision_topics(node, specs)
    return prefix, topics, specs, connect_contracts(node, specs)


def line(label: str, seconds: float, readings: int, note: str = "") -> float:
    rate = readings / seconds
    print(f"  {label:44} {seconds:8.2f} s {rate:>12,.0f} readings/s  {note}", flush=True)
    return rate


def before_after(node: NodeConfig, args: argparse.Namespace) -> int:
    """Per reading (before) and on columns (after), against bare consume + produce."""
    single = args.single
    if single:
        data = single_readings(args.meters, args.rounds)
    else:
        data = observations(args.meters, args.days)
    total = sum(len(r["values"]) for r in data)
    rates: dict[str, float] = {}
    copies = [fresh(node) for _ in range(4)]  # ceiling in and out, before, after
    for _, topics, specs, contracts in copies[:1] + copies[2:]:
        if single:
            target = topics.observation_batches
            messages = produce_batches(
                node, contracts, target, data, specs[0].partitions, args.batch
            )
        else:
            target = topics.observations
            produce(node, contracts, target, data)
            messages = len(data)
    shape = f"{args.batch}-member ObservationBatch" if single else "144-reading Observation"
    print(
        f"energy-analytics, {'single readings' if single else 'load curves'}: "
        f"{total:,} readings in {messages:,} messages ({shape}), "
        f"{copies[0][2][0].partitions} partitions, batches of up to {node.processing.batch_size}",
        flush=True,
    )
    _, topics, _, contracts = copies[0]
    out_topic = copies[1][1].observation_batches if single else copies[1][1].observations
    source = topics.observation_batches if single else topics.observations
    readings, seconds = bare_consume_produce(node, contracts, source, out_topic, messages)
    rates["bare"] = line("bare consume + decode + encode + produce", seconds, readings)
    for label, copy, columnar in (
        ("per reading (before)", 2, False),
        ("columnar (after)", 3, True),
    ):
        prefix, topics, specs, contracts = copies[copy]
        got = ours(
            node,
            contracts,
            topics,
            f"{prefix}energy-analytics",
            total,
            specs[0].partitions,
            columnar=columnar,
        )
        rates[label] = line(
            f"energy-analytics, {label}",
            got["seconds"],
            got["readings"],
            f"({got['batches']} transactions)",
        )
    after, before = rates["columnar (after)"], rates["per reading (before)"]
    print(
        f"ratio after / before: {after / before:.2f}; to bare consume + produce: "
        f"before {before / rates['bare']:.3f}, after {after / rates['bare']:.3f}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--single", action="store_true", help="single readings on v2 batches")
    parser.add_argument("--rounds", type=int, default=30, help="--single: readings per meter")
    parser.add_argument("--batch", type=int, default=1000, help="--single: members a message")
    parser.add_argument("--no-peer", action="store_true", help="skip the quixstreams peer")
    parser.add_argument(
        "--before-after-only", action="store_true", help="skip the release rule and peer runs"
    )
    args = parser.parse_args(argv)

    base = load_node_config()
    node = replace(base, processing=replace(base.processing, batch_size=2000, batch_timeout_s=0.2))
    before_after(node, args)
    if args.single or args.before_after_only:
        return 0
    release_and_peer(node, args)
    return 0


def release_and_peer(node: NodeConfig, args: argparse.Namespace) -> None:
    """The release rule's cost and the quixstreams peer, on load curves."""
    prefix, topics, specs, contracts = fresh(node)
    data = observations(args.meters, args.days)
    total = sum(len(r["values"]) for r in data)
    produce(node, contracts, topics.observations, data)
    readings, seconds = bare_consume(node, contracts, topics.observations, len(data))
    assert readings == total
    ceiling = line("ceiling (bare consume + decode)", seconds, readings)
    result = ours(node, contracts, topics, f"{prefix}energy-analytics", total, specs[0].partitions)
    rate = line(
        "energy-analytics (ours, exactly once)",
        result["seconds"],
        result["readings"],
        f"({result['aggregates']:,} aggregate upserts, {result['batches']} transactions)",
    )
    other_prefix, other_topics, other_specs, other_contracts = fresh(node)
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
    bare = line("same, without the release rule", without["seconds"], without["readings"])
    print(
        f"\nrelease rule: {result['days_released']} city-days released once each; "
        f"ratio with / without: {rate / bare:.3f}"
    )
    print(f"ratio ours / ceiling: {rate / ceiling:.3f}")
    if not args.no_peer:
        got = peer(node, topics.observations, total)
        peer_rate = line("quixstreams 3.28.1 peer (exactly once)", got["seconds"], got["readings"])
        print(f"ratio peer / ceiling: {peer_rate / ceiling:.3f}")
        print(f"ratio ours / peer: {rate / peer_rate:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
