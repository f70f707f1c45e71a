"""energy-analytics' state changelog written before its format was versioned still
restores: a node upgraded in place resumes its open days where it stopped.

tests/fixtures/energy/state_format1.json holds the changelog records the stage wrote
before (single-letter fields); a stage restored from them must then publish and
release exactly what a stage that processed the same input itself does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.energy.secrecy import SecrecyPolicy
from services.energy.stage import EnergyStage, EnergyTopics
from services.energy.state_records import FORMAT, GroupDay, MeterDay, Watermarks
from services.runtime.config import NodeConfig
from services.runtime.processor import Emit, InputMeta
from testkit.energy import FakeContracts, deliver, energy_observation

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "energy" / "state_format1.json"
T0 = 1_763_766_000_000_000  # 2025-11-22T00:00 Europe/Paris, as in the fixture
DAY_US = 86_400_000_000
TOPICS = EnergyTopics()


def _stage() -> EnergyStage:
    return EnergyStage(
        TOPICS,
        node=NodeConfig(),
        contracts=FakeContracts(),
        partitions=1,
        clock=lambda: 0,
        policies={"lyon": SecrecyPolicy(min_meters=1)},
    )


def _batch(stage: EnergyStage, records: list[dict[str, Any]], now_us: int) -> list[Emit]:
    """One batch through the stage as the runner drives it (one partition)."""
    meta = iter(range(1, 10_000))
    regrouped: list[Emit] = []
    for record in records:
        m = InputMeta(TOPICS.observations, 0, next(meta), b"lyon|m", now_us // 1000)
        regrouped += list(stage.process(record, m))
    out: list[Emit] = []
    for emit in regrouped:
        m = InputMeta(TOPICS.regrouped, 0, next(meta), emit.key.encode(), now_us // 1000)
        out += deliver(stage, emit, m)
    out += list(stage.end_batch())
    stage.on_commit()
    return out


FIRST = [
    energy_observation(f"m{i}", zone, T0, [0.1 * (i + 1)] * 72)
    for i, zone in enumerate(["z1", "z1", "z2"])
]
SECOND = [
    energy_observation("m0", "z1", T0, [0.5] * 6),  # a correction of m0's first hour
    energy_observation("m3", "z2", T0 + 12 * 3600 * 1_000_000, [0.2] * 12),
]
CLOSE = [energy_observation("m1", "z1", T0 + 3 * DAY_US + 3600 * 1_000_000, [0.1] * 6)]


def _restored() -> EnergyStage:
    stage = _stage()
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for entry in fixture["records"]:
        stage.store.apply(entry["value"], entry["partition"])
    stage.on_assign([0])  # what the runner calls once the changelog is replayed
    return stage


def test_the_fixture_is_in_the_old_format() -> None:
    values = [json.loads(e["value"]["value"]) for e in json.loads(FIXTURE.read_text())["records"]]
    assert all("format" not in v for v in values)
    assert any(set(v) == {"o", "l", "v"} for v in values)
    assert any(set(v) == {"p", "f"} for v in values)


def test_old_records_read_as_the_new_ones() -> None:
    assert MeterDay.read({"o": [0, 600], "l": [600, 600], "v": [0.1, 0.2]}).pieces() == [
        (0, 600, 0.1),
        (600, 600, 0.2),
    ]
    assert GroupDay.read({"v": 3, "cells": ["z|r"]}) == GroupDay(3, ["z|r"])
    assert Watermarks.read({"p": {"0": 5}, "f": 1, "c": 2}, 0) == Watermarks({"0": 5}, 1, 2)
    for record in (MeterDay([0], [600], [0.1]), GroupDay(2, ["a|b"]), Watermarks({"0": 1}, 0, 3)):
        stored = record.stored()
        assert stored["format"] == FORMAT
        assert type(record).read(stored, *([0] if isinstance(record, Watermarks) else [])) == record


def test_a_changelog_of_the_old_format_restores_and_resumes_exactly() -> None:
    reference = _stage()
    _batch(reference, FIRST, T0 + 3 * DAY_US)
    restored = _restored()
    assert sorted(restored.store.live_keys()) == sorted(reference.store.live_keys())
    assert restored.index.days == reference.index.days

    def latest(emits: list[Emit]) -> dict[str, dict[str, Any]]:
        return {str(e.key): e.value for e in emits if e.topic == TOPICS.aggregates}

    ours = latest(_batch(restored, SECOND, T0 + 3 * DAY_US))
    theirs = latest(_batch(reference, SECOND, T0 + 3 * DAY_US))
    assert theirs and all(ours[key] == value for key, value in theirs.items())
    released = TOPICS.released
    released = [
        [
            (e.key, e.value)
            for e in _batch(stage, CLOSE, T0 + 4 * DAY_US)
            if e.topic == TOPICS.released
        ]
        for stage in (restored, reference)
    ]
    assert released[0] and released[0] == released[1]
    assert restored.days_released == 1
    # what the restored stage wrote back is in the new format
    rewritten = restored.state.store.get("wm|lyon|electricity")
    assert rewritten["format"] == FORMAT and rewritten["closed"] > T0
