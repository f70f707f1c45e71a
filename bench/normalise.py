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

``--transform`` measures the transform alone, in process (no broker): the
Normaliser with its state kept in a dict and serialised as the changelog store
does, on four cases: the two above, a DST day pushed one row per request
(10-minute readings of 2025-10-26 local, the repeated hour included), and a day
re-sent with a tenth of its values corrected. ``--baseline REV`` runs the same
cases on the code of git revision REV (a temporary worktree, in a subprocess)
in the same run, alternating rounds: the price of versioned readings and of
the repeated-hour resolution, side by side.
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
        # received the midnight after the meter-day (within the plausible bounds)
        "received_at": int((START + timedelta(days=day + 1)).timestamp() * 1_000_000),
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
                "energie_kwh",
                "double",
                [round(0.05 + 0.001 * ((meter + k) % 97), 3) for k in range(ROWS)],  # Wh
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


def one_row_records(meter: int) -> list[dict[str, Any]]:
    """A meter's 2025-10-26 (local) pushed one 10-minute row per request: 150 rows,
    02:00-02:50 twice (the clock goes back at 03:00 summer time)."""
    walls = [datetime(2025, 10, 26) + k * timedelta(minutes=10) for k in range(144)]
    walls[18:18] = walls[12:18]  # 02:00..02:50 again after 02:50
    out = []
    for k, wall in enumerate(walls):
        record = paris_record(meter, 0)
        record["row_count"] = 1
        record["received_at"] = int(datetime(2025, 10, 27).timestamp() * 1_000_000)
        record["lineage_id"] = f"push-{k}"
        for column in record["columns"]:
            array = "doubles" if column["kind"] == "double" else "strings"
            column[array] = column[array][:1]
            if column["name"] == "horodate":
                column["strings"] = [wall.strftime("%Y-%m-%d %H:%M:%S")]
        out.append(record)
    return out


def corrected_day(meter: int) -> list[dict[str, Any]]:
    """A meter-day, then the same day again with every tenth value corrected."""
    first = paris_record(meter, 0)
    again = paris_record(meter, 0)
    again["lineage_id"] = "bench-corrections"
    values = again["columns"][-1]["doubles"]
    again["columns"][-1]["doubles"] = [v + 0.5 if k % 10 == 0 else v for k, v in enumerate(values)]
    return [first, again]


def transform_cases(meters: int, days: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "paris": [paris_record(m, d) for d in range(days) for m in range(meters)],
        "lyon": [lyon_record(m, d) for d in range(days) for m in range(meters)],
        "dst-1row": [r for m in range(max(1, meters // 10)) for r in one_row_records(m)],
        "fixes": [r for m in range(meters) for r in corrected_day(m)],
    }


def transform_round(meters: int, days: int) -> list[dict[str, Any]]:
    """Each case through the Normaliser (state in a dict, JSON-serialised per put as
    ChangelogStore does); readings in and out per second, state bytes per key."""
    import json

    stage_cities = bench_cities(Path(tempfile.mkdtemp(prefix="citeplus-bench-")))
    from services.normalise.stage import compile_mappings
    from services.normalise.transform import Normaliser
    from services.normalise.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    rows = []
    for case, records in transform_cases(meters, days).items():
        normaliser = Normaliser(vocabulary, compile_mappings(stage_cities, vocabulary))
        state: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        readings_in = readings_out = 0
        started = time.perf_counter()
        for record in records:
            outcome = normaliser.normalise(record, state.get)
            for key, value in outcome.states.items():
                sizes[key] = len(json.dumps(value, separators=(",", ":")))
                state[key] = value
            readings_in += record["row_count"]
            readings_out += outcome.readings
        seconds = time.perf_counter() - started
        rows.append(
            {
                "case": case,
                "records": len(records),
                "in": readings_in,
                "out": readings_out,
                "seconds": seconds,
                "state_bytes": sum(sizes.values()) / max(1, len(sizes)),
            }
        )
    return rows


def _subprocess_round(rev_tree: Path, meters: int, days: int) -> list[dict[str, Any]]:
    import json
    import os
    import subprocess

    """One round of :func:`transform_round` on the code of ``rev_tree``."""
    env = {**os.environ, "PYTHONPATH": str(rev_tree)}
    command = [sys.executable, __file__, "--transform-json", f"--meters={meters}"]
    done = subprocess.run(
        [*command, f"--days={days}"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def transform_main(meters: int, days: int, baseline: str | None, rounds: int) -> int:
    import subprocess

    tree = None
    if baseline:
        tree = Path(tempfile.mkdtemp(prefix="citeplus-baseline-")) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(tree), baseline], check=True
        )
    print(
        f"normalise transform bench (in process, no broker): {meters:,} meters x {days} days "
        f"per case; {rounds} rounds, best of each" + (f"; baseline {baseline}" if baseline else "")
    )
    best: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for _ in range(rounds):
            # both in a fresh subprocess, so neither pays for the other's heap
            runs = [("now", Path(__file__).resolve().parents[1])]
            if tree is not None:
                runs.insert(0, (baseline or "", tree))
            for code, code_tree in runs:
                for row in _subprocess_round(code_tree, meters, days):
                    key = (row["case"], code)
                    if key not in best or row["seconds"] < best[key]["seconds"]:
                        best[key] = row
    finally:
        if tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=False)
    print(
        f"{'case':9} {'code':9} {'records':>8} {'rows in':>9} {'out':>9} {'seconds':>8} "
        f"{'rows in/s':>10} {'state B/key':>11}"
    )
    for (case, code), row in sorted(best.items()):
        print(
            f"{case:9} {code[:9]:9} {row['records']:>8,} {row['in']:>9,} {row['out']:>9,} "
            f"{row['seconds']:>8.2f} {row['in'] / row['seconds']:>10,.0f} "
            f"{row['state_bytes']:>11,.0f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000, help="meters per case")
    parser.add_argument("--days", type=int, default=3, help="meter-days per meter")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1000, help="records per transaction")
    parser.add_argument(
        "--transform", action="store_true", help="the transform alone, in process (no broker)"
    )
    parser.add_argument(
        "--baseline", metavar="REV", help="with --transform: also run git revision REV, paired"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --transform: rounds")
    parser.add_argument("--transform-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.transform_json:  # one round, for a baseline run in a subprocess
        import json

        print(json.dumps(transform_round(args.meters, args.days)))
        return 0
    if args.transform:
        return transform_main(args.meters, args.days, args.baseline, args.rounds)

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
