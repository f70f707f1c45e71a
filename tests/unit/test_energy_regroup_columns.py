"""The regrouped messages cut from an ObservationBatch's columns are exactly those the
part path makes (each member exploded, given its carrier, zone and sector, and the
parts imploded again): same keys, partitions, members, dictionaries, cuts and order.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy import regroup_columns, regrouped
from services.energy.stage import EnergyStage, EnergyTopics
from services.runtime.batches import batching
from services.runtime.config import NodeConfig
from services.runtime.processor import InputMeta
from testkit.energy import FakeContracts, energy_observation

US = 1_000_000
START = 1_763_766_000_000_000  # 2025-11-22 00:00 in Paris
TOPICS = EnergyTopics(observation_batches="observations.v2")
OBSERVATIONS = batching("Observation")


@st.composite
def member(draw: Any) -> dict[str, Any]:
    """An energy member with every field the regroup carries or fills in varied; now
    and then one of another domain (not chosen)."""
    count = draw(st.integers(1, 30))
    step = draw(st.sampled_from([600, 900, 0]))
    start = START + draw(st.integers(0, 90)) * 600 * US
    values = draw(st.lists(st.floats(0, 5, allow_nan=False), min_size=count, max_size=count))
    record = energy_observation(
        f"meter-{draw(st.integers(0, 40))}", "Z1", start, values, step_seconds=step
    )
    if step == 0:
        record["times"] = [start + k * 420 * US for k in range(count)]
    record["metric"] = draw(st.sampled_from(["active_energy_import", "active_energy_export"]))
    record["zone"] = draw(st.sampled_from([None, "", "Z1", "Z2", "unknown"]))
    record["sector"] = draw(st.sampled_from([None, "", "residential", "tertiary"]))
    record["carrier"] = draw(st.sampled_from([None, "", "electricity", "gas", "heat"]))
    record["entity_type"] = draw(st.sampled_from([None, "ElectricityMeter", "GasMeter"]))
    record["key_epoch"] = draw(st.sampled_from([None, "2025-11", "2025-12"]))
    record["position"] = draw(st.sampled_from([None, {"lat": 48.85, "lon": 2.35}]))
    if draw(st.booleans()):
        record["quality"] = draw(
            st.lists(st.sampled_from([0, 1, 4]), min_size=count, max_size=count)
        )
    if draw(st.booleans()):
        record["versions"] = [2] * count
        record["replaced"] = [0.5] * count
    if draw(st.integers(0, 9)) == 0:
        record.update(domain="environment", metric="no2", unit="ug/m3")
    return record


def _stage(partitions: int) -> EnergyStage:
    return EnergyStage(
        TOPICS,
        node=NodeConfig(),
        contracts=FakeContracts(),
        partitions=partitions,
        clock=lambda: 0,
    )


def _part_path(stage: EnergyStage, batch: dict[str, Any], meta: InputMeta) -> list[Any]:
    """What the stage made before the columns: explode, a part per member, implode."""
    members = OBSERVATIONS.explode(batch)
    chosen = [i for i, m in enumerate(members) if m["domain"] == "energy"]
    parts = (part for i in chosen for part in stage._regrouped(members[i], meta))
    return regrouped.regrouped_messages(parts, TOPICS.regrouped)


def _emits(emits: list[Any]) -> list[tuple]:
    return [(e.topic, e.key, e.value, e.readings, e.partition, e.batched) for e in emits]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(member(), min_size=1, max_size=40),
    st.sampled_from([1, 3, 8]),
    st.sampled_from([None, 2_000, 6_000]),
)
def test_the_columns_cut_the_messages_the_part_path_makes(records, partitions, budget):
    (batch,) = OBSERVATIONS.implode(records)
    meta = InputMeta("observations.v2", 5, 11, None, 0)
    stage = _stage(partitions)
    with pytest.MonkeyPatch.context() as patch:
        if budget is not None:  # small messages: many cuts, members alone past the budget
            patch.setattr(regrouped, "MESSAGE_BUDGET", budget)
            patch.setattr(regroup_columns, "MESSAGE_BUDGET", budget)
        fast = stage.process_batch(batch, meta)
        expected = _part_path(_stage(partitions), batch, meta)
    if not any(r["domain"] == "energy" for r in records):
        assert fast == []
        return
    assert fast is not None
    assert _emits(fast) == _emits(expected)


def test_a_member_with_an_unknown_interval_is_left_to_the_part_path() -> None:
    """Its known runs become parts of their own: the columns do not cut those."""
    records = [energy_observation(f"m{k}", "Z1", START, [1.0, 2.0, 3.0]) for k in range(3)]
    records[1]["quality"] = [0, 32, 0]
    (batch,) = OBSERVATIONS.implode(records)
    meta = InputMeta("observations.v2", 0, 0, None, 0)
    chosen = [0, 1, 2]
    names = regroup_columns.CellNames({"active_energy_import": None}, "electricity", "unknown")
    cut = regroup_columns.regrouped_from_columns(
        batch, chosen, names=names, lane_of=lambda c: (c, 0), topic="t"
    )
    assert cut is None
    stage = _stage(1)
    emits = stage.process_batch(batch, meta)
    members = [m for e in emits for m in OBSERVATIONS.explode(e.value)]
    assert [(m["entity_pseudonym"], m["values"]) for m in members] == [
        ("m0", [1.0, 2.0, 3.0]),
        ("m1", [1.0]),
        ("m1", [3.0]),
        ("m2", [1.0, 2.0, 3.0]),
    ]


def test_a_thousand_single_readings_of_two_carriers_make_two_messages() -> None:
    records = []
    for k in range(1000):
        record = energy_observation(f"m{k}", f"Z{k % 7}", START + (k % 6) * 600 * US, [0.25])
        record["carrier"] = "gas" if k % 3 == 0 else "electricity"
        records.append(record)
    (batch,) = OBSERVATIONS.implode(records)
    emits = _stage(4).process_batch(batch, InputMeta("observations.v2", 2, 0, None, 0))
    assert [(e.key, e.readings) for e in emits] == [
        ("lyon|gas|2", 334),
        ("lyon|electricity|2", 666),
    ]
    gas = OBSERVATIONS.explode(emits[0].value)
    assert [m["entity_pseudonym"] for m in gas] == [f"m{k}" for k in range(0, 1000, 3)]
    assert {m["zone"] for m in gas} == {f"Z{k}" for k in range(7)}


def test_members_that_fill_the_budget_exactly_share_a_message(monkeypatch) -> None:
    """The budget is a bound members may reach: two that sum to it go together."""
    records = [energy_observation(f"m{k}", "Z1", START, [1.0]) for k in range(3)]
    one = regrouped.part_bytes({**records[0], "carrier": "electricity"})
    monkeypatch.setattr(regrouped, "MESSAGE_BUDGET", 2 * one)
    monkeypatch.setattr(regroup_columns, "MESSAGE_BUDGET", 2 * one)
    (batch,) = OBSERVATIONS.implode(records)
    emits = _stage(1).process_batch(batch, InputMeta("observations.v2", 0, 0, None, 0))
    assert [e.readings for e in emits] == [2, 1]
