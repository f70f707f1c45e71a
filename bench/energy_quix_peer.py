"""The peer of bench/energy_analytics.py: the same windowed energy aggregate written
with quixstreams, as a Python team would otherwise write it.

Runs in its own virtual environment (quixstreams pins another confluent-kafka
than ours); imports nothing of Cité+. Reads the Observation series (Confluent
wire format, decoded with fastavro like ours), cuts each series into one row per
meter and quarter, re-keys the rows by city|zone|carrier|sector (group_by: a
repartition topic), and keeps tumbling windows of 15 min, 1 h and 1 day with a
48 h grace: energy, distinct meters, largest meter's share and peak summed power,
emitted on every update (``current()``) like ours, exactly once.

Differences from ours, all in the peer's favour: a reading goes whole to the
window of its start (no proportional split), no statistical secrecy, no city
totals, no replace-not-add per meter.

Prints one JSON line: readings, rows, seconds from the first message to the
last reading aggregated in every window.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import fastavro
from quixstreams import Application
from quixstreams.models.serializers import Deserializer

QUARTER_MS = 900_000
GRACE_MS = 48 * 3600 * 1000


def strip_logical(schema):
    if isinstance(schema, dict):
        return {k: strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical(v) for v in schema]
    return schema


class WireAvro(Deserializer):
    """Confluent wire format: magic byte, schema id, Avro body."""

    def __init__(self, schema_path: str):
        super().__init__()
        schema = json.loads(Path(schema_path).read_text())
        self.schema = fastavro.parse_schema(strip_logical(schema), _force=True)

    def __call__(self, value: bytes, ctx):
        buffer = io.BytesIO(value)
        buffer.seek(5)
        return fastavro.schemaless_reader(buffer, self.schema)


def rows(obs: dict) -> list[dict]:
    """One row per meter and quarter: the readings that start in it (ms, kWh, kW)."""
    step = obs["step_seconds"]
    start_ms = obs["start"] // 1000
    key = "|".join(
        (
            obs["city"],
            obs["zone"] or "unknown",
            obs["carrier"] or "electricity",
            obs["sector"] or "unknown",
        )
    )
    by_quarter: dict[int, list] = {}
    for i, kwh in enumerate(obs["values"]):
        t = start_ms + i * step * 1000
        by_quarter.setdefault(t - t % QUARTER_MS, []).append([t, kwh, kwh * 3600 / step])
    return [
        {"k": key, "m": obs["entity_pseudonym"], "t": quarter, "r": readings}
        for quarter, readings in by_quarter.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--readings", type=int, required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args()

    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        loglevel="WARNING",
        commit_interval=1.0,  # ours commits every batch (<= 0.2 s): same latency class
    )
    topic = app.topic(args.topic, value_deserializer=WireAvro(args.schema))
    output = app.topic(f"{args.group}.aggregates", value_serializer="json")
    sdf = app.dataframe(topic)
    progress: dict = {"first": None, "last": None, "seen": {}}

    def explode(obs: dict) -> list[dict]:
        if progress["first"] is None:
            progress["first"] = time.monotonic()
        return rows(obs)

    sdf = sdf.apply(explode, expand=True)
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: value["t"])
    sdf = sdf.group_by(lambda value: value["k"], name="cell")

    def initializer(row: dict) -> dict:
        return reducer({"e": 0.0, "m": {}, "p": {}}, row)

    def reducer(agg: dict, row: dict) -> dict:
        meters, power = agg["m"], agg["p"]
        for t, kwh, kw in row["r"]:
            agg["e"] += kwh
            meters[row["m"]] = meters.get(row["m"], 0.0) + kwh
            power[str(t)] = power.get(str(t), 0.0) + kw
        return agg

    def finish(name: str):
        def emit(window: dict) -> dict:
            agg = window["value"]
            return {
                "start": window["start"],
                "end": window["end"],
                "granularity": name,
                "energy_kwh": agg["e"],
                "meter_count": len(agg["m"]),
                "largest_share": max(agg["m"].values()) / agg["e"] if agg["e"] else 0.0,
                "peak_kw": max(agg["p"].values()),
            }

        return emit

    def count(name: str):
        def seen(row: dict) -> None:
            now = time.monotonic()
            progress["seen"][name] = progress["seen"].get(name, 0) + len(row["r"])
            if all(progress["seen"].get(g, 0) >= args.readings for g in ("PT15M", "PT1H", "P1D")):
                progress["last"] = now
                app.stop()

        return seen

    for name, duration in (("PT15M", QUARTER_MS), ("PT1H", 3_600_000), ("P1D", 86_400_000)):
        branch = sdf.update(count(name))
        branch = (
            branch.tumbling_window(duration_ms=duration, grace_ms=GRACE_MS, name=name)
            .reduce(reducer=reducer, initializer=initializer)
            .current()
        )
        branch.apply(finish(name)).to_topic(output)

    started = time.monotonic()
    app.run()
    end = progress["last"] or time.monotonic()
    first = progress["first"] or started
    print(
        json.dumps(
            {
                "readings": min(progress["seen"].values(), default=0),
                "seconds": end - first,
                "seconds_with_startup": end - started,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
