"""Single readings through normalise: readings/s of the per-record path and of the
columnar fast path on the same anonymised.v2 batches, and their ratio to a bare
consume + produce, in one run.

The input is what the pipeline bench's single-reading run gives normalise: Paris
load-curve sources pushed one 10-minute reading per meter, ``--per-batch`` meters
per push (ingest shards each push by entity: one AnonymisedBatch message per
partition). ``--rounds`` pushes per meter, each ten minutes after the previous,
so that after the first round every meter has a state (the steady state).

Three paths read the same messages, in the same run, on the local broker, each
timed from its first message (bare) or its partitions' assignment (the stage, its
changelog restore included), so that the consumer group join is left out:

- bare: a plain consumer and idempotent producer (no transaction) that decode each
  AnonymisedBatch and encode one ObservationBatch of its members with fastavro;
  what any stage costs at least for this message flow;
- records: ``NormaliseStage`` under the shared ``StageRunner`` with its fast path
  off: every member exploded and normalised alone, the outputs imploded again;
- columnar: the same stage with its fast path (services/normalise/fastpath.py).

``--transform`` measures the transforms alone, in process (no broker, no state
changelog): explode + per-record normalise + implode vs the fast path.
``--stage`` measures the columnar stage in process, no broker: ``process_batch``
(state store and changelog values included), the state's changelog records (its
delta records) and the Avro encoding of every emit, as the runner encodes them;
what the broker run adds is Kafka's part.
``--history N`` (with ``--stage``) first feeds, untimed, N earlier readings per
meter (10 minutes apart), then times ``--rounds`` more: a sensor's steady state,
whose 48 h lateness window holds ~288 values rewritten to the changelog with each
reading (one reading per meter, the default, never shows that price).

Run with the broker and registry up (``make bench`` starts them), or with
CITEPLUS_KAFKA_BOOTSTRAP / CITEPLUS_REGISTRY_URL pointing at running ones. On a
loaded machine read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bench import bare as bare_loop
from bench.normalise import START, bench_cities, paris_record
from services.normalise.fastpath import BatchNormaliser
from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime.batches import batching, entity_partition
from services.runtime.codec import Contracts, TopicCodec
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import make_producer
from services.runtime.processor import StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.schemas import load_schemas
from services.runtime.stage import InputMeta
from services.runtime.topics import TopicSpec, load_topics


@lru_cache(maxsize=100_000)
def _day(meter: int) -> dict[str, Any]:
    """Meter ``meter``'s first day, built once (a long history reads it per reading)."""
    return paris_record(meter, 0)


def single(meter: int, round_: int) -> dict[str, Any]:
    """Meter ``meter``'s reading of round ``round_`` (10 minutes apart), one row."""
    day = _day(meter)
    record = {**day, "columns": [dict(column) for column in day["columns"]]}
    record["row_count"] = 1
    record["lineage_id"] = f"push-{round_}-{meter // 1000}"
    at = START + timedelta(minutes=10 * round_)
    stamp = at.strftime("%Y-%m-%d %H:%M:%S")
    # received a day later, as paris_record's: a long history stays within the
    # source's bounds (a time far ahead of its reception is left to the per-record path)
    record["received_at"] = int((at + timedelta(days=1)).timestamp() * 1_000_000)
    for column in record["columns"]:
        array = "doubles" if column["kind"] == "double" else "strings"
        column[array] = column[array][round_ % len(column[array]) :][:1]
        if column["name"] == "horodate":
            column["strings"] = [stamp]
    return record


def pushes(
    meters: int, rounds: int, per_batch: int, partitions: int, first_round: int = 0
) -> list[tuple[int, dict]]:
    """(partition, AnonymisedBatch) per push and partition, in push order, rounds
    ``first_round`` onwards (a history's next readings continue its times)."""
    carrier = batching("AnonymisedRecord")
    out = []
    for round_ in range(first_round, first_round + rounds):
        for first in range(0, meters, per_batch):
            by_partition: dict[int, list[dict[str, Any]]] = {}
            for meter in range(first, min(first + per_batch, meters)):
                member = single(meter, round_)
                key = f"{member['city']}|{member['entity_pseudonym']}"
                by_partition.setdefault(entity_partition(key, partitions), []).append(member)
            for partition, members in by_partition.items():
                out += [(partition, batch) for batch in carrier.implode(members)]
    return out


class RecordsOnly(NormaliseStage):
    """The stage with its fast path off: every member through ``process``."""

    def process_batch(self, batch: dict[str, Any], meta: Any) -> None:
        return None


def produce(node: NodeConfig, contracts: Contracts, topic: str, batches: list) -> None:
    producer = make_producer(node)
    codec = contracts.codec(topic)
    for partition, batch in batches:
        producer.produce(topic, codec.encode(batch), partition=partition)
        producer.poll(0)
    assert producer.flush(120) == 0


def bare(
    node: NodeConfig, contracts: Contracts, source: str, target: str, expected: int
) -> tuple[int, float]:
    """Consume, decode each AnonymisedBatch, encode one ObservationBatch of its
    members (their value, time and pseudonym), produce: no transactions. Readings
    and seconds from the first message (the group join left out)."""
    write = bare_loop.encoder(contracts.codec(target))
    run = bare_loop.copy(
        node,
        source,
        target,
        expected,
        decode=bare_loop.decoder(contracts.codec(source)),
        encode=lambda batch: write(observation_batch(batch)),
        readings=lambda batch: len(batch["entity_pseudonym"]),
        same_partition=True,
    )
    return run.readings, run.seconds


def staged(
    node: NodeConfig, contracts: Contracts, stage: NormaliseStage, dlq: str, expected: int
) -> tuple[int, float, int]:
    """Run the stage until it consumed ``expected`` messages: readings out, seconds
    from its partitions' assignment (join left out, changelog restore in), dead letters."""
    runner = StageRunner(stage, node, contracts, dead_letter_topic=dlq)
    runner.start()
    try:
        while runner.summary.records_in < expected:
            runner.run_once()
        seconds = time.monotonic() - (runner._assigned_at or time.monotonic())
        readings = int(runner.metrics.readings_out.labels(stage.name)._value.get())
    finally:
        runner.close()
    return readings, seconds, runner.summary.dead_letters


def observation_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The least an ObservationBatch of these members holds (no mapping applied)."""
    n = len(batch["entity_pseudonym"])
    values = batch["columns"][-1]["doubles"]
    return {
        "city": batch["city"],
        "source": batch["source"],
        "dataset": batch["dataset"],
        "lineage_id": batch["lineage_id"],
        "entity_pseudonym": batch["entity_pseudonym"],
        "position": [None] * n,
        "start": [1_736_722_800_000_000] * n,
        "step_seconds": [600] * n,
        "times": [],
        "times_counts": [0] * n,
        "values": values,
        "values_counts": [1] * n,
        "quality": [],
        "quality_counts": [0] * n,
        "versions": [],
        "versions_counts": [0] * n,
        "replaced": [],
        "replaced_counts": [0] * n,
        "dictionary": ["energy", "active_energy_import", "kWh", "ElectricityMeter"],
        **{name: [i] * n for i, name in enumerate(("domain", "metric", "unit", "entity_type"))},
        **{name: [-1] * n for name in ("zone", "key_epoch", "sector", "carrier")},
    }


def broker_run(args: argparse.Namespace) -> int:
    base = load_node_config()
    node = replace(
        base, processing=replace(base.processing, batch_size=args.batch, batch_timeout_s=0.2)
    )
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    roles = {
        "in": "anonymised.v2",
        "v1": "anonymised.v1",
        "dlq": "dlq.v1",
        **{f"{path}-out": "observations.v2" for path in ("bare", "records", "columnar")},
        **{f"{path}-state": "normalise.state.v1" for path in ("records", "columnar")},
    }
    specs: dict[str, TopicSpec] = {
        role: replace(declared[name], name=prefix + role, partitions=args.partitions)
        for role, name in roles.items()
    }
    provision_topics(node, list(specs.values()))
    contracts = connect_contracts(node, list(specs.values()))
    batches = pushes(args.meters, args.rounds, args.per_batch, args.partitions)
    readings = args.meters * args.rounds
    produce(node, contracts, specs["in"].name, batches)
    print(
        f"normalise single readings: {readings:,} readings ({args.meters:,} meters x "
        f"{args.rounds} rounds) in {len(batches):,} AnonymisedBatch messages "
        f"(~{readings / len(batches):,.0f} readings each), {args.partitions} partitions, "
        f"{args.batch} messages per transaction, broker {node.kafka.bootstrap}",
        flush=True,
    )
    rates = {}
    done, seconds = bare(node, contracts, specs["in"].name, specs["bare-out"].name, len(batches))
    rates["bare"] = _row("bare", done, seconds)
    cities = bench_cities(Path(tempfile.mkdtemp(prefix="citeplus-bench-")))
    for path, kind in (("records", RecordsOnly), ("columnar", NormaliseStage)):
        topics = NormaliseTopics(
            input=specs["v1"].name,
            output=specs[f"{path}-out"].name,
            state=specs[f"{path}-state"].name,
            dead_letters=specs["dlq"].name,
            input_batches=specs["in"].name,
        )
        stage = kind(node, contracts, cities, topics=topics)
        stage.name = f"bench-normalise-{path}-{uuid.uuid4().hex[:6]}"
        done, seconds, dead = staged(node, contracts, stage, specs["dlq"].name, len(batches))
        rates[path] = _row(path, done, seconds)
        assert dead == 0, f"{dead} dead letters"
        if path == "columnar":
            print(f"    (fast path took {stage.columnar.total('columnar'):,} readings)")
    _ratios(rates)
    return 0


def _row(path: str, readings: int, seconds: float) -> float:
    rate = readings / seconds
    print(f"  {path:9} {readings:>10,} readings {seconds:>8.2f} s {rate:>12,.0f} readings/s")
    return rate


def _ratios(rates: dict[str, float]) -> None:
    print("ratios (readings/s):")
    print(f"  records / bare     {rates['records'] / rates['bare']:.2f}")
    print(f"  columnar / bare    {rates['columnar'] / rates['bare']:.2f}")
    print(f"  columnar / records {rates['columnar'] / rates['records']:.2f}")


def transform_run(args: argparse.Namespace) -> int:
    """Both transforms in process on the same batches, state in a dict."""
    from services.normalise.stage import compile_mappings
    from services.normalise.transform import Normaliser
    from services.normalise.vocabulary import load_vocabulary

    cities = bench_cities(Path(tempfile.mkdtemp(prefix="citeplus-bench-")))
    vocabulary = load_vocabulary()
    batches = [b for _, b in pushes(args.meters, args.rounds, args.per_batch, args.partitions)]
    readings = args.meters * args.rounds
    print(
        f"normalise transforms in process: {readings:,} single readings in "
        f"{len(batches):,} batches (no broker, no changelog)"
    )
    anonymised, observation = batching("AnonymisedRecord"), batching("Observation")
    rates = {}
    for path in ("records", "columnar"):
        norm = Normaliser(vocabulary, compile_mappings(cities, vocabulary))
        fast = BatchNormaliser(norm)
        state: dict[str, Any] = {}
        started = time.perf_counter()
        for batch in batches:
            if path == "columnar":
                outcome = fast.normalise_batch(batch, state.get)
                assert outcome is not None, "the fast path declined a bench batch"
                state.update(outcome.states)
                outcome.rows.batch(np.arange(len(outcome.rows)))
                continue
            found = []
            for member in anonymised.explode(batch):
                result = norm.normalise(member, state.get)
                state.update(result.states)
                found += result.observations
            observation.implode(found)
        rates[path] = _row(path, readings, time.perf_counter() - started)
    print(f"ratio columnar / records {rates['columnar'] / rates['records']:.2f}")
    return 0


def offline_contracts(specs: list[TopicSpec]) -> Contracts:
    """Codecs for ``specs`` without a registry (ids 1, 2...): enough to encode."""
    schemas = load_schemas()
    return Contracts(
        {
            spec.name: TopicCodec(spec, schemas[spec.value], k, None)  # type: ignore[arg-type]
            for k, spec in enumerate(specs, start=1)
        }
    )


def stage_run(args: argparse.Namespace) -> int:
    """The columnar stage in process: process_batch, its emits encoded, committed."""
    declared = load_topics()
    specs = {
        name: replace(declared[name], partitions=args.partitions)
        for name in ("anonymised.v1", "anonymised.v2", "observations.v2", "normalise.state.v1")
    }
    contracts = offline_contracts(list(specs.values()))
    cities = bench_cities(Path(tempfile.mkdtemp(prefix="citeplus-bench-")))
    topics = NormaliseTopics(
        input="anonymised.v1",
        output="observations.v2",
        state="normalise.state.v1",
        input_batches="anonymised.v2",
    )
    history = pushes(args.meters, args.history, args.per_batch, args.partitions)
    batches = pushes(args.meters, args.rounds, args.per_batch, args.partitions, args.history)
    readings = args.meters * args.rounds
    print(
        f"normalise stage in process: {readings:,} single readings in {len(batches):,} "
        "batches (state changelog values and Avro encoding included, no broker)"
        + (f", after a history of {args.history} readings per meter" if args.history else "")
    )
    # The inputs (a dict per reading and column, ~40 per reading) out of the garbage
    # collector's sight: a service holds one poll's messages, not the whole run's, and
    # a full collection of them (~0.45 s for 20,000 meters) landing in the timed part
    # or not made the figure swing by half. The stage's own objects stay in sight.
    gc.collect()
    gc.freeze()
    for attempt in range(2):
        stage = NormaliseStage(load_node_config(), contracts, cities, topics=topics)
        _feed(stage, contracts, history)
        collections = _Collections()
        started = time.perf_counter()
        with collections:
            out = _feed(stage, contracts, batches)
        seconds = time.perf_counter() - started
        rate = _row(f"stage #{attempt + 1}", readings, seconds)
        print(
            f"    {1e6 / rate:.1f} µs per reading, of which garbage collection "
            f"{1e6 * collections.seconds / readings:.1f} ({collections.full} full)"
        )
    print(f"  ({out:,} bytes encoded in the last pass)")
    return 0


class _Collections:
    """The garbage collector's time while inside (a full collection scans every
    object the stage keeps: whether one lands in a run moves its figure)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2

    def __enter__(self) -> None:
        gc.callbacks.append(self._note)

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)


def _feed(stage: NormaliseStage, contracts: Contracts, batches: list[tuple[int, dict]]) -> int:
    """Each batch through ``process_batch``, then the state's changelog records (its
    delta, rewrites and tombstones, as the runner asks for them at a transaction's
    end), every emit encoded, committed: bytes encoded."""
    out = 0
    for offset, (partition, batch) in enumerate(batches):
        meta = InputMeta("anonymised.v2", partition, offset, None, 0)
        stage.store.begin_record()
        emits = stage.process_batch(batch, meta)
        assert emits is not None, "the fast path declined a bench batch"
        emits += stage.store.changelog_emits()
        out += sum(len(contracts.codec(e.topic).encode(e.value)) for e in emits if e.value)
        stage.store.commit()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="readings per meter")
    parser.add_argument("--per-batch", type=int, default=1000, help="meters per push")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=100, help="messages per transaction")
    parser.add_argument("--transform", action="store_true", help="in process, no broker")
    parser.add_argument(
        "--stage", action="store_true", help="the columnar stage in process, no broker"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="with --stage: earlier readings per meter fed first, untimed (steady state)",
    )
    args = parser.parse_args(argv)
    if args.history and not args.stage:
        parser.error("--history goes with --stage")
    if args.stage:
        return stage_run(args)
    return transform_run(args) if args.transform else broker_run(args)


if __name__ == "__main__":
    sys.exit(main())
