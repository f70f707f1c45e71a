"""Readings/s through the normalise stage on the local broker, and the ratio to a
bare confluent-kafka consume + produce of the same messages.

Two cases of AnonymisedRecords of 144 rows (one meter-day each), as the city files
map them: Paris load curves (kWh per interval, naive local times) and Lyon Linky
frames (cumulative Wh registers differenced per meter, state in the changelog).
For each case, in the same run:

- bare: a plain confluent-kafka consumer and idempotent producer (no transaction)
  that decode each AnonymisedRecord and encode one 144-value Observation with
  fastavro: what any stage costs at least for this message flow;
- stage: ``NormaliseStage`` under the shared ``StageRunner`` (transactions,
  read_committed, changelog state, dead letters), from the deploy/ city files.

Run with the broker and registry up (``make bench`` starts them), or with
CITEPLUS_KAFKA_BOOTSTRAP / CITEPLUS_REGISTRY_URL pointing at running ones.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import yaml
from confluent_kafka import Consumer

from services.normalise.stage import NormaliseStage, NormaliseTopics
from services.runtime import wire
from services.runtime.cities import CityConfig, load_cities
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.kafka import RecordProducer, consumer_settings, make_producer
from services.runtime.paths import CITIES_DIR
from services.runtime.processor import StageRunner
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicSpec, load_topics

ROWS = 144
PARIS = ZoneInfo("Europe/Paris")
START = datetime(2025, 1, 13)


def _column(name: str, kind: str, values: list[Any]) -> dict[str, Any]:
    column = {"name": name, "kind": kind, "strings": [], "doubles": [], "longs": []}
    column["booleans"] = []
    column[{"string": "strings", "double": "doubles", "long": "longs"}[kind]] = values
    column["missing"] = []
    return column


def _base(city: str, source: str, meter: int, day: int) -> dict[str, Any]:
    return {
        "city": city,
        "source": source,
        "dataset": "bench",
        "format": "csv",
        "entity_pseudonym": f"{city}-meter-{meter:06d}",
        "entity_type": None,
        "key_epoch": "2025-01",
        "policy_version": "bench",
        "lineage_id": f"bench-{day}",
        "received_at": 1_736_800_000_000_000,
        "row_count": ROWS,
        "event_times": [],
        "attributes": {},
    }


def paris_record(meter: int, day: int) -> dict[str, Any]:
    first = START + timedelta(days=day)
    stamps = [
        (first + k * timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S") for k in range(ROWS)
    ]
    return {
        **_base("paris", "enedis-courbes-charge", meter, day),
        "columns": [
            _column("iris", "string", [f"7510{meter % 80:05d}"] * ROWS),
            _column("secteur", "string", ["residentiel"] * ROWS),
            _column("horodate", "string", stamps),
            _column("pas", "string", ["PT10M"] * ROWS),
            _column(
                "energie_kwh", "double", [0.05 + 0.001 * ((meter + k) % 97) for k in range(ROWS)]
            ),
        ],
    }


def lyon_record(meter: int, day: int) -> dict[str, Any]:
    first = (START + timedelta(days=day)).replace(tzinfo=PARIS)
    stamps = []
    for k in range(ROWS):
        local = (first + k * timedelta(minutes=10)).astimezone(PARIS)
        stamps.append(("E" if local.dst() else "H") + local.strftime("%y%m%d%H%M%S"))
    base = 1_000_000 + meter * 10_000 + day * ROWS * 150
    registers = [f"{base + k * (100 + meter % 50):09d}" for k in range(ROWS)]
    return {
        **_base("lyon", "linky-habitat", meter, day),
        "attributes": {"zone": f"6938{meter % 60:05d}", "sector": "residential"},
        "columns": [
            _column("DATE@time", "string", stamps),
            _column("EAST", "string", registers),
        ],
    }


@dataclass
class Result:
    case: str
    path: str
    messages: int
    readings: int
    seconds: float

    def row(self) -> str:
        return (
            f"{self.case:6} {self.path:6} {self.messages:>8,} {self.readings:>10,} "
            f"{self.seconds:>8.2f} {self.messages / self.seconds:>9,.0f} "
            f"{self.readings / self.seconds:>12,.0f}"
        )


def produce_inputs(node: NodeConfig, contracts: Contracts, topic: str, records: list[dict]) -> None:
    writer = RecordProducer(make_producer(node), contracts)
    for i, record in enumerate(records):
        writer.produce(topic, f"{record['city']}|{record['entity_pseudonym']}", record)
        if i % 5_000 == 0:
            writer.producer.poll(0)
    assert writer.flush(120) == 0


def observation_of(record: dict[str, Any], values: list[float]) -> dict[str, Any]:
    return {
        "city": record["city"],
        "domain": "energy",
        "metric": "active_energy_import",
        "unit": "kWh",
        "entity_pseudonym": record["entity_pseudonym"],
        "entity_type": "ElectricityMeter",
        "zone": None,
        "position": None,
        "start": 1_736_722_800_000_000,
        "step_seconds": 600,
        "times": [],
        "values": values,
        "quality": [],
        "source": record["source"],
        "dataset": record["dataset"],
        "lineage_id": record["lineage_id"],
        "key_epoch": record["key_epoch"],
        "sector": None,
        "carrier": "electricity",
    }


def bare(node: NodeConfig, contracts: Contracts, source: str, target: str, expected: int) -> int:
    """Consume, decode, encode one Observation per message, produce: no transactions."""
    reader = contracts.codec(source)._reader
    out_codec = contracts.codec(target)
    writer_schema, header = out_codec._reader, wire.HEADER.pack(0, out_codec.schema_id)
    consumer = Consumer(consumer_settings(node, group_id=f"bench-bare-{uuid.uuid4().hex}"))
    producer = make_producer(node)
    consumer.subscribe([source])
    seen = readings = 0
    while seen < expected:
        for message in consumer.consume(1000, 1.0):
            if message.error():
                continue
            buffer = io.BytesIO(message.value())
            buffer.seek(5)
            record = fastavro.schemaless_reader(buffer, reader)
            column = record["columns"][-1]
            values = column["doubles"] or [float(v) for v in column["strings"]]
            out = io.BytesIO()
            out.write(header)
            fastavro.schemaless_writer(out, writer_schema, observation_of(record, values))
            while True:
                try:
                    producer.produce(target, out.getvalue(), key=message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
            readings += len(values)
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    return readings


def bench_cities(directory: Path) -> dict[str, CityConfig]:
    """The two benched sources as deploy/cities declares them (mapping included),
    alone in city files of their own, so that other sources do not matter here."""
    for code, source_id in (("paris", "enedis-courbes-charge"), ("lyon", "linky-habitat")):
        document = yaml.safe_load((CITIES_DIR / f"{code}.yaml").read_text(encoding="utf-8"))
        source = next(s for s in document["sources"] if s["id"] == source_id)
        source = {k: v for k, v in source.items() if k not in ("privacy", "sharing", "registry")}
        city = {k: document[k] for k in ("code", "name", "timezone")} | {"sources": [source]}
        (directory / f"{code}.yaml").write_text(yaml.safe_dump(city), encoding="utf-8")
    return load_cities(directory)


def staged(
    node: NodeConfig, contracts: Contracts, stage: NormaliseStage, dlq: str, expected: int
) -> tuple[int, int]:
    """Run the stage until it consumed ``expected`` records (group join included)."""
    runner = StageRunner(stage, node, contracts, dead_letter_topic=dlq)
    runner.start()
    readings = 0
    try:
        while runner.summary.records_in < expected:
            runner.run_once()
        readings = int(runner.metrics.readings_out.labels(stage.name)._value.get())
    finally:
        runner.close()
    return readings, runner.summary.dead_letters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000, help="meters per case")
    parser.add_argument("--days", type=int, default=3, help="meter-days per meter")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1000, help="records per transaction")
    args = parser.parse_args(argv)

    base = load_node_config()
    node = replace(
        base, processing=replace(base.processing, batch_size=args.batch, batch_timeout_s=0.2)
    )
    declared = load_topics()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    specs: list[TopicSpec] = [replace(declared["dlq.v1"], name=prefix + "dlq")]
    cases = {"paris": paris_record, "lyon": lyon_record}
    names: dict[tuple[str, str], str] = {}
    for case in cases:
        for role, declared_name in (
            ("in", "anonymised.v1"),
            ("bare-out", "observations.v1"),
            ("out", "observations.v1"),
            ("state", "normalise.state.v1"),
        ):
            name = f"{prefix}{case}.{role}"
            names[(case, role)] = name
            specs.append(replace(declared[declared_name], name=name, partitions=args.partitions))
    provision_topics(node, specs)
    contracts = connect_contracts(node, specs)

    cities = bench_cities(Path(tempfile.mkdtemp(prefix="citeplus-bench-")))
    messages = args.meters * args.days
    print(
        f"normalise bench: {messages:,} messages of {ROWS} rows per case "
        f"({args.meters:,} meters x {args.days} days), broker {node.kafka.bootstrap}, "
        f"{args.partitions} partitions, {args.batch} records per transaction",
        flush=True,
    )
    print(
        f"{'case':6} {'path':6} {'messages':>8} {'readings':>10} {'seconds':>8} "
        f"{'msg/s':>9} {'readings/s':>12}"
    )
    results: list[Result] = []
    for case, make in cases.items():
        records = [make(meter, day) for day in range(args.days) for meter in range(args.meters)]
        produce_inputs(node, contracts, names[(case, "in")], records)
        started = time.perf_counter()
        readings = bare(node, contracts, names[(case, "in")], names[(case, "bare-out")], messages)
        results.append(Result(case, "bare", messages, readings, time.perf_counter() - started))
        print(results[-1].row(), flush=True)
        topics = NormaliseTopics(
            input=names[(case, "in")], output=names[(case, "out")], state=names[(case, "state")]
        )
        stage = NormaliseStage(node, contracts, cities, topics=topics)  # loads the vocabulary
        stage.name = f"bench-normalise-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        readings, dead = staged(node, contracts, stage, prefix + "dlq", messages)
        results.append(Result(case, "stage", messages, readings, time.perf_counter() - started))
        print(results[-1].row(), flush=True)
        assert dead == 0, f"{dead} dead letters"

    print("\nratio stage/bare (readings/s; 1.00 = normalising costs nothing over the bare flow):")
    for case in cases:
        ours, theirs = (
            next(r for r in results if (r.case, r.path) == (case, p)) for p in ("stage", "bare")
        )
        ratio = (ours.readings / ours.seconds) / (theirs.readings / theirs.seconds)
        print(f"  {case:6} {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
