"""Anonymise on raw.v2 (many entities per message): readings/s of the per-record path
and of the columnar fast path, on the same messages in one run, and their ratio to
bare consume + produce measured in the same run.

Messages are RawBatches of ``--members`` meters with ``--rows`` readings each (one by
default: single readings, the case issue 17 is about), the policy of bench/anonymise.py
(one identifier, the IRIS code to its commune, the position to a 250 m grid, three
measures the safety net scans). Three passes over the same raw.v2 messages:

1. ``bare avro`` (the ceiling, bare consume + produce): consume each RawBatch, decode
   and encode it, produce it again;
2. ``per-record path``: the stage through the StageRunner with its fast path off:
   each batch exploded, every member through ``process``, the outputs imploded into
   anonymised.v2 batches by the runner (what any stage without a fast path pays);
3. ``fast path``: the same stage with ``process_batch`` (services/anonymise/columnar.py).

Both stage passes run exactly once (transactions, read_committed, audit records).
Every pass is timed from its first message (a consumer group's join is no part of a
throughput).
On a loaded machine the absolute figures move from run to run; the ratios, measured
on the same messages in the same run, are what to compare.

Run with the local broker up (`citeplus infra up`), e.g.
``python bench/anonymise_batches.py --messages 100 --members 1000``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import bare
from bench.anonymise import CITY, raw_record
from services.anonymise.columnar import anonymise_batch
from services.anonymise.policy import PolicySet, load_policies
from services.anonymise.stage import AnonymiseStage, AnonymiseTopics
from services.anonymise.transform import anonymise_by_epoch
from services.privacy.keys import KeyStore, new_secret
from services.runtime.batches import batching, entity_partition
from services.runtime.cities import load_cities
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import make_producer, produce_bytes
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics


class PerRecordStage(AnonymiseStage):
    """The stage with its fast path off: every batch goes member by member."""

    def process_batch(self, batch: dict[str, Any], meta: Any) -> None:
        return None


def raw_batches(messages: int, members: int, rows: int) -> list[dict[str, Any]]:
    """``messages`` RawBatches of ``members`` meters (distinct across a message),
    ``rows`` readings each, successive slices of their day."""
    out = []
    carrier = batching("RawRecord")
    for i in range(messages):
        part = i % (144 // rows)
        records = [raw_record(m, 0, part=part, rows=rows) for m in range(members)]
        for record in records:
            record["lineage_id"] = f"bench-{i}"
        [batch] = carrier.implode(records)
        out.append(batch)
    return out


def produce(node: NodeConfig, contracts: Contracts, topic: str, batches: list[dict]) -> int:
    """Produce the batches, each to its first member's entity partition; mean size."""
    codec = contracts.codec(topic)
    partitions = codec.spec.partitions
    producer = make_producer(node)
    sizes = []
    for batch in batches:
        value = codec.encode(batch)
        sizes.append(len(value))
        key = f"benchville|courbes|{batch['entity_id'][0]}"
        produce_bytes(producer, topic, key, value, partition=entity_partition(key, partitions))
        producer.poll(0)
    producer.flush(120)
    return sum(sizes) // len(sizes)


def bare_copy(
    node: NodeConfig, contracts: Contracts, source: str, target: str, expected: int
) -> float:
    """Consume ``source``, decode and encode every message, produce it to ``target``:
    seconds from the first message consumed (a group's join is no part of a throughput)."""
    codec = contracts.codec(source)
    run = bare.copy(
        node, source, target, expected, decode=bare.decoder(codec), encode=bare.encoder(codec)
    )
    return run.seconds


def through_stage(
    node: NodeConfig, contracts: Contracts, stage: AnonymiseStage, dlq: str, expected: int
) -> tuple[float, StageRunner]:
    """Seconds of the runner's cycles that consumed something, until ``expected``
    messages went through (cycles waiting for the group's join are not counted)."""
    stage.name = f"bench-anonymise-v2-{uuid.uuid4().hex[:8]}"
    runner = StageRunner(stage, node, contracts, metrics=stage.metrics, dead_letter_topic=dlq)
    runner.start()
    busy = 0.0
    try:
        while runner.summary.records_in < expected:
            started = time.perf_counter()
            if runner.run_once():
                busy += time.perf_counter() - started
    finally:
        runner.close()
    return busy, runner


def transform_only(
    batches: list[dict], policies: PolicySet, keys: KeyStore, partitions: int
) -> tuple[float, float]:
    """Seconds of the per-record transform and of the fast path over the batches, in
    this process (no Kafka, no Avro, no runner)."""
    policy = policies.get("benchville", "courbes")
    assert policy is not None

    def of(epoch: str) -> Any:
        return keys.pseudonymiser("benchville", epoch)

    started = time.perf_counter()
    for batch in batches:
        for member in batching("RawRecord").explode(batch):
            anonymise_by_epoch(member, policy, of)
    per_record = time.perf_counter() - started
    started = time.perf_counter()
    for batch in batches:
        assert anonymise_batch(batch, policy, of, partitions) is not None
    return per_record, time.perf_counter() - started


def setup(args: argparse.Namespace) -> tuple[NodeConfig, Contracts, dict[str, str]]:
    base = load_node_config()
    batch = args.batch_size or base.processing.batch_size
    node = replace(base, processing=replace(base.processing, batch_size=batch, batch_timeout_s=0.2))
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    names = {
        "raw": ("raw.v1", "raw"),
        "raw_batches": ("raw.v2", "raw.v2"),
        "copy_avro": ("raw.v2", "copy.avro"),
        "slow": ("anonymised.v2", "anonymised.slow"),
        "fast": ("anonymised.v2", "anonymised.fast"),
        "audit": ("audit.v1", "audit"),
        "state": ("anonymise.state.v1", "state"),
        "dlq": ("dlq.v1", "dlq"),
        "raw_dlq": ("raw.dlq.v1", "dlq.raw"),
    }
    specs = {
        key: replace(declared[kind], name=prefix + suffix, partitions=args.partitions)
        for key, (kind, suffix) in names.items()
    }
    provision_topics(node, list(specs.values()))
    contracts = connect_contracts(node, list(specs.values()))
    return node, contracts, {key: spec.name for key, spec in specs.items()}


def stage_of(
    kind: type[AnonymiseStage],
    policies: PolicySet,
    keys: KeyStore,
    contracts: Contracts,
    topic: dict[str, str],
    output: str,
) -> AnonymiseStage:
    topics = AnonymiseTopics(
        topic["raw"],
        topic[output],
        topic["audit"],
        topic["state"],
        topic["dlq"],
        raw_batches=topic["raw_batches"],
    )
    return kind(policies, keys, contracts, topics=topics, metrics=ServiceMetrics("anonymise"))


def report(results: list[tuple[str, float]], messages: int, readings: int) -> None:
    ceiling = dict(results)["bare avro (ceiling)"]
    print(f"{'path':28} {'seconds':>8} {'messages/s':>11} {'readings/s':>12} {'vs ceiling':>10}")
    for name, seconds in results:
        print(
            f"{name:28} {seconds:>8.2f} {messages / seconds:>11,.0f} {readings / seconds:>12,.0f} "
            f"{ceiling / seconds:>10.2f}"
        )
    seconds = dict(results)
    print(
        f"\nfast path vs per-record path: x{seconds['per-record path'] / seconds['fast path']:.1f} "
        "(same messages, same run)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100, help="RawBatch messages")
    parser.add_argument("--members", type=int, default=1000, help="meters per message")
    parser.add_argument("--rows", type=int, default=1, choices=[1, 2, 6, 24, 144])
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the node's")
    args = parser.parse_args(argv)
    node, contracts, topic = setup(args)
    work = Path(tempfile.mkdtemp(prefix="citeplus-bench-anonymise-v2-"))
    (work / "benchville.yaml").write_text(CITY)
    policies = load_policies(load_cities(work))
    keys = KeyStore(work / "keys", environ={"CITEPLUS_PSEUDONYM_SECRET_BENCHVILLE": new_secret()})

    batches = raw_batches(args.messages, args.members, args.rows)
    size = produce(node, contracts, topic["raw_batches"], batches)
    messages, readings = len(batches), len(batches) * args.members * args.rows
    print(
        f"Anonymise raw.v2 bench: {messages:,} RawBatches x {args.members:,} meters x "
        f"{args.rows} readings = {readings:,} readings ({size:,} B per message), "
        f"broker {node.kafka.bootstrap}, {args.partitions} partitions\n"
    )
    results = [
        (
            "bare avro (ceiling)",
            bare_copy(node, contracts, topic["raw_batches"], topic["copy_avro"], messages),
        ),
    ]
    for name, kind, output in (
        ("per-record path", PerRecordStage, "slow"),
        ("fast path", AnonymiseStage, "fast"),
    ):
        stage = stage_of(kind, policies, keys, contracts, topic, output)
        seconds, runner = through_stage(node, contracts, stage, topic["dlq"], messages)
        assert runner.summary.dead_letters == 0
        results.append((name, seconds))
    report(results, messages, readings)
    slow_s, fast_s = transform_only(batches[:10], policies, keys, args.partitions)
    n = min(10, messages) * args.members * args.rows
    print(
        f"transform only (no Kafka/Avro/runner): per-record {n / slow_s:,.0f} readings/s, "
        f"fast path {n / fast_s:,.0f} readings/s (x{slow_s / fast_s:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
