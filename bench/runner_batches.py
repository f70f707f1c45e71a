"""What the runner's own work costs per single reading, v1 messages against v2
batches, in process (no broker: the runner's decode, explode, check, implode and
encode, not Kafka's).

1,000 Observations of one reading each (single readings: air quality, traffic...),
the case issue 17 is about, pass through an identity transform three ways:

- v1: one message per entity, decoded and encoded each (what every stage paid);
- v2 per member: one ObservationBatch decoded, exploded, each member checked by
  encoding it alone as its v1 record, then imploded by the outbox and encoded
  (the runner's path for a stage with no fast path);
- v2 fast, batched: ``process_batch`` returns the batch as it is (``Emit.batched``):
  one decode and one encode per message, the floor of the runner's cost.

Prints µs per reading and each path's speed-up over v1. Single-process figures on a
shared machine: compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from services.runtime import wire
from services.runtime.batches import batching
from services.runtime.codec import parse_plain
from services.runtime.outbox import Outbox, member_key
from services.runtime.schemas import load_schemas
from services.runtime.stage import Emit

OBSERVATIONS = batching("Observation")
SCHEMAS = load_schemas()
V1 = parse_plain(SCHEMAS["Observation"].expanded)
V2 = parse_plain(SCHEMAS["ObservationBatch"].expanded)
TOPIC = "observations.v2"


def single_readings(count: int) -> list[dict]:
    """``count`` sensors, one reading each, as normalise gives them."""
    base = {
        "city": "lyon",
        "domain": "air",
        "metric": "air.no2",
        "unit": "ug/m3",
        "entity_type": "AirQualityObserved",
        "zone": "69381",
        "position": {"lat": 45.76, "lon": 4.83},
        "start": 1_763_769_600_000_000,
        "step_seconds": 0,
        "times": [],
        "quality": [],
        "source": "air-sensors",
        "dataset": "air",
        "lineage_id": "batch-1",
        "key_epoch": "2025-11",
    }
    records = [
        {**base, "entity_pseudonym": f"s{i:05d}", "values": [float(i)]} for i in range(count)
    ]
    return OBSERVATIONS.explode(OBSERVATIONS.implode(records)[0])


def v1_path(messages: list[bytes]) -> int:
    out = [wire.encode(1, V1, wire.decode(m, V1)) for m in messages]
    return len(out)


def _drain(outbox: Outbox) -> int:
    produced = outbox.drain(lambda _t: OBSERVATIONS, lambda _t: lambda b: wire.encode(2, V2, b))
    return len(produced)


def per_member_path(message: bytes, partitions: int = 6) -> int:
    outbox = Outbox()
    for record in OBSERVATIONS.explode(wire.decode(message, V2)):
        wire.encode(1, V1, record)  # the check of a member emitted to a batch topic
        outbox.add_member(Emit(TOPIC, member_key("Observation", record), record), partitions)
    return _drain(outbox)


def fast_batched_path(message: bytes) -> int:
    outbox = Outbox()
    batch = wire.decode(message, V2)
    outbox.add_batch(Emit(TOPIC, None, batch, partition=0, batched=True), wire.encode(2, V2, batch))
    return _drain(outbox)


def best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    records = single_readings(args.readings)
    v1_messages = [wire.encode(1, V1, r) for r in records]
    [batch] = OBSERVATIONS.implode(records)
    v2_message = wire.encode(2, V2, batch)
    n = args.readings
    figures = {
        "v1 (one message per reading)": best_of(args.rounds, lambda: v1_path(v1_messages)),
        "v2, per member (no fast path)": best_of(args.rounds, lambda: per_member_path(v2_message)),
        "v2, fast path, batched emit": best_of(args.rounds, lambda: fast_batched_path(v2_message)),
    }
    v1 = figures["v1 (one message per reading)"]
    print(
        f"{n:,} single readings; v1: {n:,} messages of {len(v1_messages[0])} B; "
        f"v2: 1 message of {len(v2_message):,} B"
    )
    for name, seconds in figures.items():
        print(
            f"{name:34} {seconds / n * 1e6:7.2f} µs/reading  {n / seconds:>10,.0f} readings/s"
            f"  x{v1 / seconds:5.1f} vs v1"
        )


if __name__ == "__main__":
    main()
