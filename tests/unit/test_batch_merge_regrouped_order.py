"""energy.regrouped.v2 messages joined at a transaction's end must reach the aggregate
in the order of their key (city|carrier|source partition), not only in each meter's:
the aggregate's watermark follows each source partition's latest reading, so a later
message of the key taken before an earlier one closes days the earlier one feeds."""

from __future__ import annotations

from typing import Any

from services.energy.regrouped import observation_batching
from services.energy.stage import EnergyTopics
from services.runtime.errors import RejectedInput
from services.runtime.outbox import Outbox
from services.runtime.source_headers import source_headers
from services.runtime.stage import Emit
from testkit.avro_batches import batch_encoder
from testkit.energy import EnergyHarness, energy_observation, regrouped_members

US = 1_000_000
DAY = 86_400 * US
D = 1_763_766_000_000_000  # 2025-11-22 00:00 in Paris
NOW = D + 4 * DAY  # the records' Kafka timestamp
TOPICS = EnergyTopics(observation_batches="observations.v2")
encode = batch_encoder("ObservationBatch")


def _reading(meter: str, start: int, lineage: str) -> dict[str, Any]:
    return {**energy_observation(meter, "Z1", start, [0.25]), "lineage_id": lineage}


def _regrouped(harness: EnergyHarness, messages: list[list[dict[str, Any]]]) -> list[Emit]:
    """The regrouped emits energy-analytics' fast path writes for three observations.v2
    messages of one source partition, in one transaction."""
    found = observation_batching()
    emits: list[Emit] = []
    for members in messages:
        (batch,) = found.implode(members)
        out = harness.stage.process_batch(batch, harness._meta(TOPICS.observation_batches))
        assert out is not None
        emits += out
    return emits


def _aggregated(emits: list[Emit]) -> list[str]:
    """The reasons of the dead letters when ``emits`` are read back, in order, by the
    aggregating step (member by member, as the runner's fallback does)."""
    harness = EnergyHarness(now_us=NOW, topics=TOPICS)
    dead: list[str] = []
    for emit in emits:
        meta = harness._meta(TOPICS.regrouped, emit.key.encode())
        for member, where in regrouped_members(emit, meta):
            try:
                out = list(harness.stage.process(member, where))
            except RejectedInput as exc:
                harness.stage.on_record_failed()
                dead.append(exc.reason)
                continue
            dead += [e.value["reason"] for e in out if e.topic == TOPICS.dead_letters]
    list(harness.stage.end_batch())
    harness.stage.on_commit()
    return dead


def test_joining_regrouped_messages_keeps_their_keys_order_for_the_watermark() -> None:
    """Source partition 0 carries, in this order: a request's first piece (L1, day D),
    another request (L2, day D), the first request's last piece (L1, three days later).
    As written, the L2 reading comes before the watermark passes day D: aggregated.
    Joined, the last L1 piece joins the first (no meter in common with L2) and passes
    the L2 message: the watermark closes day D first and the L2 reading is too late."""
    harness = EnergyHarness(now_us=NOW, topics=TOPICS)
    emits = _regrouped(
        harness,
        [
            [_reading("m1", D, "L1")],
            [_reading("m2", D + 3600 * US, "L2")],
            [_reading("m3", D + 3 * DAY, "L1")],
        ],
    )
    assert len({e.key for e in emits}) == 1  # one key: one source partition's order
    assert _aggregated(emits) == []  # as written: nothing late
    outbox = Outbox()  # as the runner keeps the transaction's ready batches
    outbox.reading((TOPICS.observation_batches, 0))  # all three from one input partition
    for emit in emits:
        outbox.add_batch(emit, encode(emit.value))
    produced = outbox.drain(lambda _topic: observation_batching(), lambda _topic: encode)
    assert _aggregated([p.emit for p in produced]) == []


def test_joining_observation_batches_keeps_their_partitions_order_for_the_watermark() -> None:
    """The same on observations.v2, written by normalise's fast path (no message key:
    the partition is the source energy-analytics' watermark follows). The three
    messages of one partition, as written, are aggregated without a late reading;
    joined (the last L1 piece passing the L2 message), the L2 reading is too late."""
    found = observation_batching()
    headers = source_headers("lyon", "enedis-courbes-charge")
    pieces = [
        [_reading("m1", D, "L1")],
        [_reading("m2", D + 3600 * US, "L2")],
        [_reading("m3", D + 3 * DAY, "L1")],
    ]
    outbox = Outbox()
    outbox.reading(("anonymised.v2", 0))  # normalise reads them from one input partition
    for members in pieces:
        (batch,) = found.implode(members)
        emit = Emit(TOPICS.observation_batches, None, batch, 1, 0, True, headers)
        outbox.add_batch(emit, encode(batch))
    produced = outbox.drain(lambda _topic: found, lambda _topic: encode)
    as_written = EnergyHarness(now_us=NOW, topics=TOPICS)
    as_written.messages(*pieces)
    assert as_written.dead == []
    as_joined = EnergyHarness(now_us=NOW, topics=TOPICS)
    as_joined.messages(*(found.explode(p.emit.value) for p in produced))
    assert as_joined.dead == []
