"""energy-analytics on columns and on observations.v2 batches gives what the
per-reading stage gives on v1 records, whatever the split into messages.

(1) ``process_batch`` of an ObservationBatch returns exactly the per-member path's
outputs, and says None only when a member would be rejected;
(2) the same readings, cut into messages at random (v1 one record per message, v2
batches of any size, several transactions), through the columnar stage, give exactly
what the per-reading stage gives on the same transactions of v1 records (state,
upserts, releases, dead letters); and the same state, dead letters and released
aggregates as the per-reading stage given everything in one transaction.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy.stage import EnergyStage, EnergyTopics
from services.energy.state_records import Watermarks, watermarks_key
from services.runtime.batches import batching
from services.runtime.config import NodeConfig
from services.runtime.errors import RejectedInput
from services.runtime.processor import InputMeta
from services.runtime.record_outcome import check_sizes
from testkit.codecs import offline_contracts
from testkit.energy import EnergyHarness, FakeContracts, deliver, energy_observation

US = 1_000_000
DAY = 86_400 * US
STARTS = (
    1_763_766_000_000_000,  # 2025-11-22 00:00 in Paris
    1_761_429_600_000_000,  # 2025-10-26 00:00 in Paris: 25 hours
)
TOPICS = EnergyTopics(observation_batches="observations.v2")
took_fast_path: list[int] = []  # batch messages taken whole, per example (see the last test)
took_fast_regrouped: list[int] = []  # regrouped messages aggregated whole, likewise


@st.composite
def observation(draw: Any, base: int) -> dict[str, Any]:
    """One member: a meter's load curve, single reading or irregular readings; now and
    then a correction, another domain, or a record energy must reject."""
    meter = draw(st.integers(0, 5))
    step = draw(st.sampled_from([600, 900, 3600, 0]))
    count = draw(st.sampled_from([1, 1, 2, 12, 40]))
    start = base + draw(st.integers(0, 40)) * 900 * US
    values = draw(st.lists(st.floats(0, 3, allow_nan=False), min_size=count, max_size=count))
    record = energy_observation(
        f"m{meter}",
        f"Z{meter % 2}",
        start,
        values,
        step_seconds=step,
        sector="residential" if meter % 3 else "tertiary",
    )
    if step == 0:
        record["times"] = [start + k * 420 * US for k in range(count)][::-1]
    kinds = ["air", "negative", "unit", "unknown", "empty", "carrier", "zone", "future"]
    kind = draw(st.sampled_from(["plain"] * 10 + kinds))
    if kind == "air":
        record.update(domain="environment", metric="no2", unit="ug/m3")
    elif kind == "negative":
        record["values"] = [-1.0, *values[1:]]
    elif kind == "unit":
        record["unit"] = "Wh"
    elif kind == "unknown" and step:
        record["quality"] = [32 if k % 3 == 1 else 0 for k in range(count)]
    elif kind == "empty":  # skipped, whatever else it says
        record.update(values=[], times=[], carrier="water")
    elif kind == "carrier":
        record["carrier"] = "water"
    elif kind == "zone":
        record["zone"] = "Z|1"
    elif kind == "future":  # far beyond the Kafka timestamp: rejected when aggregated
        record["start"] = base + 10 * DAY
        record["times"] = [record["start"]] * len(record["times"])
    return record


@st.composite
def readings(draw: Any) -> list[dict[str, Any]]:
    base = draw(st.sampled_from(STARTS))
    return draw(st.lists(observation(base), min_size=1, max_size=25))


def _stage() -> EnergyStage:
    return EnergyStage(
        TOPICS, node=NodeConfig(), contracts=FakeContracts(), partitions=1, clock=lambda: 0
    )


def _outputs(emits: list[Any]) -> list[tuple]:
    """What the aggregating step receives: every regrouped member, in order, with its
    message's topic, key and partition (how members share messages may differ)."""
    return [
        (e.topic, e.key, member, e.partition)
        for e in emits
        for member in (batching("Observation").explode(e.value) if e.batched else [e.value])
    ]


@settings(max_examples=60, deadline=None)
@given(readings())
def test_the_fast_path_gives_the_per_member_outputs_and_gives_up_only_on_a_reject(records):
    (batch,) = batching("Observation").implode(records)
    meta = InputMeta("observations.v2", 3, 7, None, 0)
    fast = _stage().process_batch(batch, meta)
    stage, expected, rejected = _stage(), [], False
    for member in batching("Observation").explode(batch):
        try:
            expected += list(stage.process(member, meta))
        except RejectedInput:
            stage.on_record_failed()
            rejected = True
    if fast is None:
        assert rejected
    else:
        assert not rejected
        assert _outputs(fast) == _outputs(expected)


def _messages(records: list[dict], cuts: list[int], kinds: list[bool]) -> list[list]:
    """The records cut into transactions of messages (v1 records or v2 batches)."""
    transactions, message_cuts = [], sorted(set(cuts))
    bounds = [0, *message_cuts, len(records)]
    pieces = [records[a:b] for a, b in itertools.pairwise(bounds)]
    current: list = []
    for i, piece in enumerate(p for p in pieces if p):
        if kinds[i % len(kinds)]:
            current.append(piece)  # one ObservationBatch
        else:
            current.extend(piece)  # v1 records, one per message
        if i % 2:
            transactions.append(current)
            current = []
    return [*transactions, current]


def _run(harness: EnergyHarness, transactions: list[list]) -> tuple:
    for messages in transactions:
        harness.messages(*messages)
    state = dict(harness.stage.store._committed)
    return state, harness.latest, harness.released, Counter(harness.dead)


def _as_v1(transactions: list[list]) -> list[list]:
    """The same transactions with every batch's members as v1 records."""
    return [
        [r for m in messages for r in (m if isinstance(m, list) else [m])]
        for messages in transactions
    ]


def _released(harness: EnergyHarness) -> dict[str, dict]:
    """Every window of every day, as released when the days close (by the wall clock,
    a month later): what leaves the node."""
    harness.stage.idle_close_us = 1
    harness.stage.clock = lambda: (STARTS[0] + 30 * DAY) * 1000
    harness.tick()
    return harness.released


@settings(max_examples=40, deadline=None)
@given(
    readings(),
    st.lists(st.integers(0, 25), max_size=8),
    st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_any_split_into_messages_gives_the_per_reading_state_and_aggregates(
    records, cuts, kinds
) -> None:
    now = STARTS[0] + 3 * DAY
    transactions = _messages(records, cuts, kinds)
    columnar = EnergyHarness(now_us=now, topics=TOPICS)
    got = _run(columnar, transactions)
    took_fast_path.append(columnar.fast_paths)
    took_fast_regrouped.append(columnar.fast_regrouped)
    # the same transactions, per reading and one record per message, each regrouped
    # member aggregated on its own: everything equal
    member_by_member = EnergyHarness(
        now_us=now, columnar=False, topics=TOPICS, regrouped_fast=False
    )
    same = _run(member_by_member, _as_v1(transactions))
    assert got[0] == same[0]  # every changelog value, exactly
    assert got[1:] == same[1:]
    # all at once, per reading: the same state, dead letters and released aggregates
    # (provisional upserts differ in when they were sent, not in what is released)
    reference = EnergyHarness(now_us=now, columnar=False, topics=TOPICS)
    at_once = _run(reference, [list(records)])
    assert got[0] == at_once[0]
    assert got[3] == at_once[3]
    assert _released(columnar) == _released(reference)


def test_the_split_property_ran_through_the_fast_path() -> None:
    """The property above saw whole batches go through ``process_batch`` (not only
    the per-member fallback), so it tested the fast path."""
    assert sum(took_fast_path) > 0
    assert sum(took_fast_regrouped) > 0


def _one_quarter(meter: str, kwh: float) -> dict[str, Any]:
    return energy_observation(meter, "Z1", STARTS[0], [kwh], step_seconds=900)


def test_a_batchs_changes_reach_the_cell_in_arrival_order() -> None:
    """Three meters in one quarter of one cell, one batch: the cell's energy is summed
    in arrival order, as the per-reading stage sums it ((0.1 + 0.2) + 0.3, which is
    not 0.1 + (0.2 + 0.3) in floating point)."""
    now = STARTS[0] + 3 * DAY
    records = [_one_quarter(m, kwh) for m, kwh in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    got = _run(EnergyHarness(now_us=now, topics=TOPICS), [[records]])
    same = _run(EnergyHarness(now_us=now, columnar=False, topics=TOPICS), [records])
    assert got == same
    cell = got[0][f"cd|lyon|electricity|{STARTS[0]}|Z1|residential"]
    assert cell["e"][0] == (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)


def test_a_record_sent_to_the_dead_letters_takes_its_cell_changes_back() -> None:
    """The runner rolls a record back when its outputs cannot be produced: its meter
    change waiting for the batch's end goes with it."""
    now = STARTS[0] + 3 * DAY
    kept, dropped = _one_quarter("a", 0.1), _one_quarter("b", 0.2)
    with_rollback = EnergyHarness(now_us=now, topics=TOPICS)
    stage = with_rollback.stage
    regrouped = [e for r in (kept, dropped) for e in stage.process(r, _meta("observations.v1"))]
    deliver(stage, regrouped[0], _meta(TOPICS.regrouped, regrouped[0].key))
    deliver(stage, regrouped[1], _meta(TOPICS.regrouped, regrouped[1].key))
    stage.on_record_failed()  # the second regrouped record's outputs failed
    list(stage.end_batch())
    stage.on_commit()
    alone = EnergyHarness(now_us=now, topics=TOPICS)
    alone.batch(kept)
    assert stage.store._committed == alone.stage.store._committed


def _meta(topic: str, key: str | None = None) -> InputMeta:
    return InputMeta(topic, 0, 1, key.encode() if key else b"lyon|m", 0)


def _single_readings(meters: int, start: int = STARTS[0]) -> dict[str, Any]:
    """One ObservationBatch of ``meters`` single readings (one per meter)."""
    records = [energy_observation(f"m{i}", f"Z{i % 3}", start, [0.25]) for i in range(meters)]
    (batch,) = batching("Observation").implode(records)
    return batch


def test_a_batch_of_single_readings_is_regrouped_into_one_message_per_group() -> None:
    """energy.regrouped.v2: the meters of one observations batch bound for one city,
    carrier and source partition share one message, keyed by them, in their order
    (v1 wrote one message per meter)."""
    emits = _stage().process_batch(
        _single_readings(300), InputMeta("observations.v2", 4, 7, None, 0)
    )
    assert emits is not None
    [message] = emits
    assert message.topic == TOPICS.regrouped and message.batched
    assert message.key == "lyon|electricity|4" and message.readings == 300
    members = batching("Observation").explode(message.value)
    assert [m["entity_pseudonym"] for m in members] == [f"m{i}" for i in range(300)]


def _fits(emits: list[Any]) -> list[dict[str, Any]]:
    """Every regrouped message encoded by its real contract, checked as the runner
    checks a record's outputs (under the broker's message size); their members."""
    codec = offline_contracts("energy.regrouped.v2").codec("energy.regrouped.v2")
    check_sizes([(e, codec.encode(e.value)) for e in emits])
    return [m for e in emits for m in batching("Observation").explode(e.value)]


def test_a_batch_of_long_curves_is_cut_into_messages_that_fit_in_order() -> None:
    """A batch of long load curves becomes several messages of one key, each under the
    broker's message size, every meter once, in order."""
    curves = [energy_observation(f"m{i}", "Z0", STARTS[0], [0.1] * 144) for i in range(400)]
    (batch,) = batching("Observation").implode(curves)
    emits = _stage().process_batch(batch, InputMeta("observations.v2", 0, 1, None, 0))
    assert emits is not None and len(emits) > 1
    assert all(e.key == "lyon|electricity|0" for e in emits)
    members = _fits(emits)
    assert [m["entity_pseudonym"] for m in members] == [c["entity_pseudonym"] for c in curves]


def test_a_record_split_into_many_parts_is_cut_into_messages_that_fit() -> None:
    """Found in review: every other interval unknown splits a 15,000-reading record into
    7,500 parts, each a member with fields of its own. Cut by readings alone they made
    one 570 KB message, refused as too large (none of its readings aggregated); each
    message now fits, and every known reading is there, in order."""
    start = STARTS[0]
    record = energy_observation("p" * 43, "Z0", start, [0.25] * 15_000, step_seconds=60)
    record["quality"] = [32 if k % 2 else 0 for k in range(15_000)]  # unknown intervals
    emits = list(_stage().process(record, InputMeta("observations.v1", 0, 1, b"lyon|x", 0)))
    members = _fits(emits)
    assert len(emits) > 1 and len(members) == 7_500
    assert [m["start"] for m in members] == [start + k * 120 * US for k in range(7_500)]


def test_the_aggregate_reads_the_source_partition_from_the_message_key() -> None:
    """A regrouped member arrives with its own key (its meter); the watermark must
    follow the observations partition named by its message's key, not the meter."""
    stage = _stage()
    [message] = stage.process_batch(
        _single_readings(5), InputMeta("observations.v2", 2, 7, None, 0)
    )
    deliver(stage, message, InputMeta(TOPICS.regrouped, 0, 1, message.key.encode(), 0))
    list(stage.end_batch())
    stage.on_commit()
    stored = stage.store.get(watermarks_key("lyon", "electricity"))
    assert set(Watermarks.read(stored, 0).partitions) == {"2"}


def test_a_regrouped_v1_record_left_by_an_upgrade_is_still_aggregated() -> None:
    """energy.regrouped.v1 (one meter per message, keyed city|carrier|partition) is
    read beside v2: what an older release left in flight there counts."""
    stage = _stage()
    record = energy_observation("m1", "Z0", STARTS[0], [0.5, 0.25])
    meta = InputMeta(TOPICS.regrouped_v1, 0, 1, b"lyon|electricity|5", 0)
    list(stage.process({**record, "carrier": "electricity"}, meta))
    list(stage.end_batch())
    stage.on_commit()
    assert stage.readings_aggregated == 2
    stored = stage.store.get(watermarks_key("lyon", "electricity"))
    assert set(Watermarks.read(stored, 0).partitions) == {"5"}
    assert TOPICS.regrouped_v1 in TOPICS.inputs and TOPICS.regrouped in TOPICS.inputs


def test_a_regrouped_v2_message_without_its_key_is_refused_not_given_a_made_up_source() -> None:
    """The watermark follows the source partition named by the message's key; a v2
    member alone names only its meter, which must never be taken for a partition."""
    stage = _stage()
    record = {**energy_observation("m1", "Z0", STARTS[0], [0.5]), "carrier": "electricity"}
    meta = InputMeta(TOPICS.regrouped, 0, 1, b"lyon|m1", 0)  # no batch_key
    try:
        list(stage.process(record, meta))
    except RejectedInput as refused:
        assert refused.reason == "regrouped-key"
    else:
        raise AssertionError("a v2 member without its message's key was aggregated")
    stage.on_record_failed()
    assert stage.readings_aggregated == 0
