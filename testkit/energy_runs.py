"""energy-analytics runs on the real broker for tests: prefixed copies of its topics,
observations produced, the stage run until idle, and what its aggregates topic holds
(the highest version of each window), reduced to what two runs must agree on."""

from __future__ import annotations

from typing import Any

from services.energy.stage import EnergyStage, EnergyTopics
from services.energy.windows import DAY_US, HOUR_US
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.processor import StageRunner
from testkit.energy import energy_observation
from testkit.kafka import read_all

T0 = 1_763_766_000_000_000  # 2025-11-22T00:00 in Paris (2025-11-21T23:00:00Z): a local day
ENERGY_TOPICS = (
    "observations.v1",
    "observations.v2",
    "energy.regrouped.v1",
    "energy.regrouped.v2",
    "energy.aggregates.v1",
    "energy.aggregates.released.v2",
    "energy.state.v1",
    "dlq.v1",
)


def observation(meter: str, values: list[float], start: int, zone: str, step: int = 600) -> dict:
    return energy_observation(meter, zone, start, values, step_seconds=step)


def make_topics(isolated_topics) -> tuple[EnergyTopics, str, Any]:
    specs, contracts = isolated_topics(*ENERGY_TOPICS)
    prefix = specs["dlq.v1"].name[: -len("dlq.v1")]
    return EnergyTopics().prefixed(prefix), prefix, contracts


def produce(node, contracts, topic: str, records: list[dict]) -> None:
    writer = RecordProducer(make_producer(node), contracts)
    for record in records:
        writer.produce(topic, f"{record['city']}|{record['entity_pseudonym']}", record)
    assert writer.flush() == 0


def run_stage(node, contracts, topics: EnergyTopics, name: str, **kwargs) -> EnergyStage:
    stage = EnergyStage(topics, node=node, contracts=contracts, name=name, **kwargs)
    StageRunner(stage, node, contracts, instance=name, dead_letter_topic=topics.dead_letters).run(
        idle_exit_s=4
    )
    return stage


def latest(node, contracts, topic: str) -> dict[str, dict]:
    """The highest version of every window, as a compacted-topic reader keeps it."""
    out: dict[str, dict] = {}
    codec = contracts.codec(topic)
    for message in read_all(node, topic, settle_s=1.0):
        record = codec.decode(message.value())
        key = message.key().decode()
        if key not in out or record["version"] > out[key]["version"]:
            out[key] = record
    return out


def figures(records: dict[str, dict]) -> dict[str, tuple]:
    """What must be equal between two runs (versions and computing times may differ)."""
    return {
        key: (
            r["energy_kwh"] and round(r["energy_kwh"], 6),
            r["meter_count"],
            r["peak_kw"] and round(r["peak_kw"], 6),
            r["suppressed"],
            r["suppression_reason"],
        )
        for key, r in records.items()
    }


def stream(meters: int, days: int) -> list[dict]:
    """Hourly series of six 10-minute readings: many small records, so a kill
    lands in the middle of the stream."""
    out = []
    for d in range(days):
        for h in range(24):
            for m in range(meters):
                start = T0 + d * DAY_US + h * HOUR_US
                values = [round(0.05 + 0.01 * ((m * 7 + h + k) % 13), 3) for k in range(6)]
                out.append(observation(f"meter-{m:03d}", values, start, f"Z{m % 3}"))
    return out
