"""energy-analytics on the real broker and registry: hand-computed aggregates, late
data, and a worker killed mid-stream that ends with the same aggregates as a run
without the kill (nothing lost, nothing counted twice)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.energy.stage import group_partition
from services.energy.windows import DAY_US, HOUR_US
from services.runtime.batches import batching
from services.runtime.kafka import RecordProducer, make_producer, produce_bytes
from services.runtime.paths import REPO_ROOT
from testkit.energy_runs import (
    T0,
    figures,
    latest,
    make_topics,
    observation,
    produce,
    run_stage,
    stream,
)
from testkit.kafka import read_all

pytestmark = pytest.mark.integration


def day_of(meter: str, kwh: float, zone: str, start: int = T0) -> dict:
    return observation(meter, [kwh] * 144, start, zone)


def key(zone: str, granularity: str, start: str, sector: str = "residential") -> str:
    return f"lyon|{zone}|electricity|{sector}|{granularity}|{start}"


def test_aggregates_match_hand_computed_figures(node, isolated_topics) -> None:
    topics, prefix, contracts = make_topics(isolated_topics)
    produce(
        node,
        contracts,
        topics.observations,
        [
            *(day_of(f"z1-{i}", 0.2, "69381-0001") for i in range(12)),
            *(day_of(f"z2-{i}", 0.3, "69381-0002") for i in range(11)),
            *(day_of(f"z3-{i}", 0.1, "69381-0003") for i in range(3)),
        ],
    )
    stage = run_stage(node, contracts, topics, f"{prefix}energy-analytics")
    assert stage.readings_aggregated == 26 * 144
    records = latest(node, contracts, topics.aggregates)
    assert len(records) == 5 * (96 + 24 + 1)  # 3 zones, the sector total, the city total

    z2_hour = records[key("69381-0002", "PT1H", "2025-11-22T06:00:00Z")]
    assert z2_hour["energy_kwh"] == pytest.approx(11 * 0.3 * 6)
    assert z2_hour["meter_count"] == 11 and z2_hour["largest_share"] is None
    assert z2_hour["peak_kw"] == pytest.approx(11 * 0.3 * 6)  # 3.3 kWh per 10 min = 19.8 kW
    assert z2_hour["window_end"] - z2_hour["window_start"] == HOUR_US
    # 3 meters: withheld; then Z1 (the smaller of the two others) is withheld with it,
    # or Z3 would be the sector total minus Z1 and Z2.
    z3 = records[key("69381-0003", "P1D", "2025-11-21T23:00:00Z")]
    assert z3["suppressed"] and z3["suppression_reason"] == "min-meters"
    assert z3["energy_kwh"] is None and z3["meter_count"] is None
    assert records[key("69381-0001", "PT15M", "2025-11-22T22:45:00Z")]["suppression_reason"] == (
        "secondary"
    )
    total = records[key("*", "P1D", "2025-11-21T23:00:00Z", sector="*")]
    assert total["energy_kwh"] == pytest.approx(144 * (12 * 0.2 + 11 * 0.3 + 3 * 0.1))
    assert total["meter_count"] == 26 and total["suppressed"] is False
    assert read_all(node, topics.dead_letters, expected=0, settle_s=0.5) == []

    # Confluent wire format with the registered id; the stock deserializer reads it.
    [message, *_] = read_all(node, topics.aggregates, expected=1)
    codec = contracts.codec(topics.aggregates)
    assert message.value()[0] == 0
    assert int.from_bytes(message.value()[1:5], "big") == codec.schema_id
    stock = AvroDeserializer(SchemaRegistryClient({"url": node.registry.url}))
    decoded = stock(message.value(), SerializationContext(topics.aggregates, MessageField.VALUE))
    assert decoded["city"] == "lyon" and decoded["granularity"] in ("PT15M", "PT1H", "P1D")


def test_late_data_updates_a_window_with_a_higher_version(node, isolated_topics) -> None:
    topics, prefix, contracts = make_topics(isolated_topics)
    name = f"{prefix}energy-analytics"
    day2 = T0 + DAY_US
    produce(
        node,
        contracts,
        topics.observations,
        [*(day_of(f"m{i}", 0.1, "Z1") for i in range(10)), day_of("m0", 0.1, "Z1", day2)],
    )
    run_stage(node, contracts, topics, name)
    first = latest(node, contracts, topics.aggregates)
    day1 = key("Z1", "P1D", "2025-11-21T23:00:00Z")
    assert first[day1]["energy_kwh"] == pytest.approx(10 * 0.1 * 144)

    # A day later, five meters of the first day arrive (within the 48 h lateness),
    # and one reading of m0 is corrected: it replaces, it does not add.
    late = [day_of(f"late{i}", 0.2, "Z1") for i in range(5)]
    late.append(observation("m0", [1.1], T0 + 3 * HOUR_US, "Z1"))
    produce(node, contracts, topics.observations, late)
    run_stage(node, contracts, topics, name)  # restarts from the changelog
    second = latest(node, contracts, topics.aggregates)
    assert second[day1]["version"] > first[day1]["version"]
    assert second[day1]["meter_count"] == 15
    assert second[day1]["energy_kwh"] == pytest.approx(10 * 0.1 * 144 + 5 * 0.2 * 144 + 1.0)
    hour3 = key("Z1", "PT1H", "2025-11-22T02:00:00Z")  # 03:00 in Paris
    assert second[hour3]["energy_kwh"] == pytest.approx(10 * 0.6 + 5 * 1.2 + 1.0)
    untouched = key("Z1", "PT1H", "2025-11-22T23:00:00Z")  # the next local day
    assert untouched in second and second[untouched] == first[untouched]  # no late data there

    # Data older than the lateness goes to the dead letters, nothing else changes. (Ten
    # days on: the partitions that carried nothing since are more than 7 days behind
    # and stop holding the watermark back.)
    produce(node, contracts, topics.observations, [day_of("m0", 0.1, "Z1", T0 + 10 * DAY_US)])
    run_stage(node, contracts, topics, name)
    produce(node, contracts, topics.observations, [day_of("old", 9.0, "Z1")])
    run_stage(node, contracts, topics, name)
    letters = [
        contracts.codec(topics.dead_letters).decode(m.value())
        for m in read_all(node, topics.dead_letters, expected=1)
    ]
    assert [letter["reason"] for letter in letters] == ["too-late"]
    # One meter's curve never rides in a dead letter: its position says where it is.
    assert letters[0]["original_value"] is None and letters[0]["source_offset"] is not None
    assert latest(node, contracts, topics.aggregates)[day1] == second[day1]

    # Day 1 was released once, when the watermark closed it, as it finally was.
    codec = contracts.codec(topics.released)
    released = [
        (m.key().decode(), codec.decode(m.value())) for m in read_all(node, topics.released)
    ]
    keys = [k for k, _ in released]
    assert len(keys) == len(set(keys)), "a window was released twice"
    of_day1 = {k: r for k, r in released if r["window_start"] < T0 + DAY_US}
    assert len(of_day1) == 3 * (96 + 24 + 1)
    assert of_day1[day1]["energy_kwh"] == pytest.approx(second[day1]["energy_kwh"])
    assert of_day1[day1]["meter_count"] == 15 and of_day1[day1]["closed_by"] == "watermark"


def test_killed_worker_restarts_without_loss_or_double_counting(node, isolated_topics) -> None:
    data = stream(meters=36, days=2)  # 1,728 records, 10,368 readings

    reference_topics, reference_prefix, reference_contracts = make_topics(isolated_topics)
    produce(node, reference_contracts, reference_topics.observations, data)
    run_stage(node, reference_contracts, reference_topics, f"{reference_prefix}energy-analytics")
    expected = figures(latest(node, reference_contracts, reference_topics.aggregates))
    assert len(expected) > 1000

    topics, prefix, contracts = make_topics(isolated_topics)
    produce(node, contracts, topics.observations, data)
    env = {
        **os.environ,
        "CITEPLUS_KAFKA_BOOTSTRAP": node.kafka.bootstrap,
        "CITEPLUS_REGISTRY_URL": node.registry.url,
        # Small transactions, so that the stream is still being regrouped when the
        # first regrouped message is committed (the kill below comes then).
        "CITEPLUS_PROCESSING_BATCH_SIZE": "5",
        "CITEPLUS_PROCESSING_BATCH_TIMEOUT_S": "0.1",
    }
    command = [
        sys.executable,
        "-m",
        "services.cli",
        "service",
        "energy-analytics",
        "--topic-prefix",
        prefix,
        "--metrics-port",
        "0",
        "--instance",
        f"kill-{uuid.uuid4().hex[:6]}",
    ]
    log = (REPO_ROOT / "var" / "test-logs").resolve()
    log.mkdir(parents=True, exist_ok=True)
    with open(log / f"{prefix}energy.log", "ab") as output:
        first = subprocess.Popen(command, env=env, stdout=output, stderr=output, cwd=REPO_ROOT)
        try:
            # The kill comes in the regroup step, once a transaction has committed
            # regrouped messages (joined from several input messages at its end) and
            # before the last observation is read: the restart must neither lose nor
            # count twice what the killed worker had regrouped, produced or not.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if read_all(node, topics.regrouped, timeout_s=1, settle_s=0.2):
                    break
                assert first.poll() is None, "the worker died on its own"
            else:
                pytest.fail("nothing regrouped within 60 s")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        midway = figures(latest(node, contracts, topics.aggregates))
        assert midway != expected, "the kill came after the end of the stream"

        second = subprocess.Popen(command, env=env, stdout=output, stderr=output, cwd=REPO_ROOT)
        try:
            got: dict[str, tuple] = {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and got != expected:
                time.sleep(2)
                got = figures(latest(node, contracts, topics.aggregates))
            second.send_signal(signal.SIGTERM)  # a clean stop after the open batch
            assert second.wait(30) == 0
        finally:
            if second.poll() is None:
                second.kill()
    assert got == expected


def test_a_quiet_city_is_released_by_the_wall_clock_in_a_transaction_of_its_own(
    node, isolated_topics
) -> None:
    """One day of 2025, nothing after it: the watermark never passes it, yet once the
    group has been quiet for the idle time the runner's tick closes and releases it,
    committed on the broker (read_committed readers see it) without any input."""
    topics, prefix, contracts = make_topics(isolated_topics)
    produce(node, contracts, topics.observations, [day_of(f"m{i}", 0.1, "Z1") for i in range(12)])
    stage = run_stage(node, contracts, topics, f"{prefix}energy-analytics", idle_close_us=1_000_000)
    assert stage.days_released == 1
    codec = contracts.codec(topics.released)
    released = [codec.decode(m.value()) for m in read_all(node, topics.released, expected=363)]
    assert len(released) == 3 * (96 + 24 + 1)
    assert {r["closed_by"] for r in released} == {"idle"}
    city_day = next(r for r in released if r["granularity"] == "P1D" and r["sector"] == "*")
    assert city_day["energy_kwh"] == pytest.approx(12 * 0.1 * 144)
    # Closed: a reading of that day now goes to the dead letters, nothing is released again.
    produce(node, contracts, topics.observations, [day_of("late", 0.1, "Z1")])
    run_stage(node, contracts, topics, f"{prefix}energy-analytics", idle_close_us=1_000_000)
    letters = read_all(node, topics.dead_letters, expected=1)
    assert [contracts.codec(topics.dead_letters).decode(m.value())["reason"] for m in letters] == [
        "too-late"
    ]
    assert len(read_all(node, topics.released, settle_s=1.0)) == len(released)


def test_a_batch_regroups_into_one_message_and_v1_left_in_flight_still_counts(
    node, isolated_topics
) -> None:
    """energy.regrouped.v2 on the real broker: the twenty meters of one observations.v2
    message come back as one regrouped message (keyed by city, carrier and source
    partition); and readings an older release left on energy.regrouped.v1 (one meter
    per message) are aggregated with them after the upgrade."""
    topics, prefix, contracts = make_topics(isolated_topics)
    group = group_partition("lyon", "electricity", topics.partitions)
    legacy = RecordProducer(make_producer(node), contracts)
    for i in range(2):
        record = {**day_of(f"old-{i}", 0.5, "69381-0001"), "carrier": "electricity"}
        legacy.produce(topics.regrouped_v1, "lyon|electricity|0", record, partition=group)
    assert legacy.flush() == 0
    [batch] = batching("Observation").implode(
        [day_of(f"new-{i}", 0.2, "69381-000" + str(1 + i % 3)) for i in range(20)]
    )
    producer = make_producer(node)
    value = contracts.codec(topics.observation_batches).encode(batch)
    produce_bytes(producer, topics.observation_batches, None, value, partition=0)
    assert producer.flush(30) == 0

    stage = run_stage(node, contracts, topics, f"{prefix}energy-analytics")
    assert stage.readings_aggregated == 22 * 144
    [message] = read_all(node, topics.regrouped, expected=1)
    assert message.key() == b"lyon|electricity|0" and message.partition() == group
    members = batching("Observation").explode(
        contracts.codec(topics.regrouped).decode(message.value())
    )
    assert sorted(m["entity_pseudonym"] for m in members) == sorted(f"new-{i}" for i in range(20))
    records = latest(node, contracts, topics.aggregates)
    total = records[key("*", "P1D", "2025-11-21T23:00:00Z", sector="*")]
    assert total["energy_kwh"] == pytest.approx(144 * (2 * 0.5 + 20 * 0.2))
    assert total["meter_count"] == 22
    assert read_all(node, topics.dead_letters, expected=0, settle_s=0.5) == []
