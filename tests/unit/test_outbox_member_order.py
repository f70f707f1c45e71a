"""Members a stage's per-record path emits to observations.v2 (normalise on records of
many readings: its columnar path covers only single readings) are imploded by the
outbox at the transaction's end. Read from one input partition, they must reach
energy-analytics in that partition's order: its watermark follows the observations
partition, so a later request's member taken before an earlier request's closes the
days the earlier one feeds."""

from __future__ import annotations

from services.energy.regrouped import observation_batching
from services.energy.stage import EnergyTopics
from services.runtime.batches import entity_partition
from services.runtime.outbox import Outbox
from services.runtime.stage import Emit
from testkit.avro_batches import batch_encoder
from testkit.energy import EnergyHarness, energy_observation

US = 1_000_000
DAY = 86_400 * US
D = 1_763_766_000_000_000  # 2025-11-22 00:00 in Paris
NOW = D + 4 * DAY
PARTITIONS = 6  # observations.v2 (deploy/topics.yaml)
TOPICS = EnergyTopics(observation_batches="observations.v2")
encode = batch_encoder("ObservationBatch")


def _meters_on_one_partition(count: int) -> list[str]:
    """Meters whose keys (``city|pseudonym``) share an observations.v2 partition."""
    by_partition: dict[int, list[str]] = {}
    for i in range(200):
        meter = f"m{i}"
        found = by_partition.setdefault(entity_partition(f"lyon|{meter}", PARTITIONS), [])
        found.append(meter)
        if len(found) == count:
            return found
    raise AssertionError("no partition holds enough meters")


def _member(meter: str, start: int, lineage: str) -> Emit:
    """An Observation as normalise's per-record path emits it (keyed by entity)."""
    record = {**energy_observation(meter, "Z1", start, [0.25]), "lineage_id": lineage}
    return Emit("observations.v2", f"lyon|{meter}", record, readings=1)


def test_members_of_one_input_partition_keep_its_order_for_the_watermark() -> None:
    """anonymised.v2 partition 0 carries, in this order: a request's first record (L1,
    day D), another request's (L2, day D), the first request's last record (L1, three
    days later), each normalised member by member. As emitted, the L2 reading comes
    before the watermark passes day D. Imploded, the last L1 member joins the first
    L1 batch (its meter has no earlier member) and passes L2: day D closes first and
    the L2 reading is too late."""
    m1, m2, m3 = _meters_on_one_partition(3)
    members = [
        _member(m1, D, "L1"),
        _member(m2, D + 3600 * US, "L2"),
        _member(m3, D + 3 * DAY, "L1"),
    ]
    as_written = EnergyHarness(now_us=NOW, topics=TOPICS)
    as_written.messages(*([e.value] for e in members))
    assert as_written.dead == []  # the order of the input partition: nothing late

    outbox = Outbox()
    outbox.reading(("anonymised.v2", 0))  # one input partition
    for emit in members:
        outbox.add_member(emit, PARTITIONS)
    produced = outbox.drain(lambda _topic: observation_batching(), lambda _topic: encode)
    found = observation_batching()
    as_produced = EnergyHarness(now_us=NOW, topics=TOPICS)
    as_produced.messages(*(found.explode(p.emit.value) for p in produced))
    assert as_produced.dead == []
