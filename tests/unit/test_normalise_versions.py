"""Versioned readings: a correction within the lateness horizon replaces the first
value in normalise's output, in energy-analytics' internal aggregates and in the
warehouse (real chDB), counted once; later than the horizon it is a dead letter.

The property test sends a day's provisional values and their corrections in any
interleaving and batching (a correction always after the value it corrects:
"later" is arrival order) and checks the final aggregates against the corrected
data sent once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.energy.secrecy import SecrecyPolicy
from services.energy.stage import EnergyStage, EnergyTopics
from services.publish import versions as warehouse_versions
from services.publish.rows import Landed, observations_table
from services.runtime.config import NodeConfig
from services.runtime.processor import InputMeta
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate
from testkit.energy import deliver
from testkit.normalise import Run, city_file, normaliser, record

START = datetime(2025, 11, 22, 8, 0)  # local (Paris): 07:00 UTC
QUARTER_US = 900_000_000
T0 = 1_763_794_800_000_000  # START in UTC µs
METERS = 12  # above the secrecy threshold: no cell is withheld
QUARTERS = 8
SOURCE = {
    "id": "curves",
    "format": "csv",
    "domain": "energy",
    "entity": "prm",
    "mapping": {
        "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
        "step": {"seconds": 900},
        "zone": {"field": "iris"},
        "measures": {"kwh": {"metric": "active_energy_import", "unit": "kWh"}},
    },
}
TOPICS = EnergyTopics()


def rows(meter: str, readings: list[tuple[int, float]]) -> dict[str, Any]:
    """One delivery of ``meter``: (quarter index, kWh) rows, in the given order."""
    stamps = [
        (START + timedelta(minutes=15 * q)).strftime("%Y-%m-%d %H:%M:%S") for q, _ in readings
    ]
    return record(
        "testville",
        "curves",
        {
            "iris": ["751010203"] * len(readings),
            "horodate": stamps,
            "kwh": [v for _, v in readings],
        },
        entity=meter,
    )


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory):
    return city_file(tmp_path_factory.mktemp("city"), "testville", [dict(SOURCE)])


class _Codec:
    def encode(self, record: dict[str, Any]) -> bytes:
        return b"\x00\x00\x00\x00\x01"


class _Contracts:
    """Only dead letters are encoded inside the stage."""

    def codec(self, topic: str) -> _Codec:
        return _Codec()


class Energy:
    """The real EnergyStage fed batch by batch as the runner would (no broker).

    No dominance rule (a share no meter can reach): a cell's largest meter only
    ever grows in energy-analytics (a correction downwards leaves it high, erring
    on the side of withholding), so a high provisional value may keep a window
    withheld; that is secrecy's business, not what is counted."""

    def __init__(self) -> None:
        self.stage = EnergyStage(
            TOPICS,
            node=NodeConfig(),
            contracts=_Contracts(),
            clock=lambda: 0,
            partitions=1,
            policies={"testville": SecrecyPolicy(dominance_share=1e9)},
        )
        self.offset = 0
        self.latest: dict[str, dict[str, Any]] = {}  # provisional upserts: key -> newest

    def batch(self, observations: list[dict[str, Any]]) -> None:
        regrouped = []
        for observation in observations:
            self.offset += 1
            meta = InputMeta(TOPICS.observations, 0, self.offset, b"k", 0)
            regrouped += list(self.stage.process(observation, meta))
        for emit in regrouped:
            self.offset += 1
            meta = InputMeta(TOPICS.regrouped, 0, self.offset, emit.key.encode(), 0)
            deliver(self.stage, emit, meta)
        for emit in self.stage.end_batch():
            newest = self.latest.get(emit.key, {}).get("version", -1)
            if emit.topic == TOPICS.aggregates and emit.value["version"] >= newest:
                self.latest[emit.key] = emit.value
        self.stage.on_commit()

    def figures(self) -> dict[str, tuple[float | None, int | None]]:
        return {k: (v["energy_kwh"], v["meter_count"]) for k, v in self.latest.items()}


def _truth() -> dict[str, list[float]]:
    return {
        f"m{i:02d}": [round(0.1 + 0.01 * i + 0.001 * q, 3) for q in range(QUARTERS)]
        for i in range(METERS)
    }


def _once(city, truth: dict[str, list[float]]) -> tuple[list[dict[str, Any]], Energy]:
    run = Run(normaliser(city))
    energy = Energy()
    out = []
    for meter, values in truth.items():
        out += run(rows(meter, list(enumerate(values))))
    energy.batch(out)
    return out, energy


def test_a_correction_within_the_horizon_replaces_the_value_everywhere(city, tmp_path: Path):
    truth = _truth()
    run = Run(normaliser(city))
    energy = Energy()
    provisional = {m: list(v) for m, v in truth.items()}
    provisional["m00"][3] = 9.0  # a provisional value, validated later as truth
    observations = []
    for meter, values in provisional.items():
        observations += run(rows(meter, list(enumerate(values))))
    energy.batch(observations)
    correction = run(rows("m00", [(3, truth["m00"][3])]))
    # normalise: published again, once, with its version and the value it replaces
    assert [
        (o["start"], o["values"], o.get("versions"), o.get("replaced")) for o in correction
    ] == [(T0 + 3 * QUARTER_US, [truth["m00"][3]], [1], [9.0])]
    energy.batch(correction)
    observations += correction
    # energy-analytics: the internal aggregates are those of the corrected data sent once
    _, energy_once = _once(city, truth)
    assert energy.figures() == energy_once.figures()
    # the warehouse: the latest value, counted once, in observations and the rollups
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse)
        landed = [Landed(o, "observations.v1", 0, k) for k, o in enumerate(observations)]
        warehouse.insert_arrow("observations", observations_table(landed[:-1]))
        warehouse_versions.supersede(warehouse, landed[:-1])
        # the correction in a later sink batch, and a crash before its follow-up ran
        warehouse.insert_arrow("observations", observations_table(landed[-1:]))
        count = "SELECT count() AS n FROM observations"
        assert warehouse.query_arrow(count).to_pylist() == [{"n": METERS * QUARTERS + 1}]
        warehouse_versions.supersede(warehouse, None)  # what the sink runs on assignment
        expected = round(sum(sum(v) for v in truth.values()), 6)
        rows_ = warehouse.query_arrow(
            "SELECT round(sum(value), 6) AS total, count() AS n FROM observations"
        ).to_pylist()[0]
        assert rows_ == {"total": expected, "n": METERS * QUARTERS}
        for table in ("observations_hourly", "observations_daily"):
            rollup = warehouse.query_arrow(
                f"SELECT round(sumMerge(total), 6) AS total, countMerge(readings) AS n FROM {table}"
            ).to_pylist()[0]
            assert rollup == {"total": expected, "n": METERS * QUARTERS}, table
        audit = warehouse.query_arrow(
            "SELECT value, version, replaced FROM observations WHERE version > 0"
        ).to_pylist()
        assert audit == [{"value": truth["m00"][3], "version": 1, "replaced": 9.0}]
    finally:
        warehouse.close()


def test_the_same_value_again_is_a_duplicate_not_a_correction(city):
    run = Run(normaliser(city))
    run(rows("m00", [(0, 0.1), (1, 0.2)]))
    assert run(rows("m00", [(1, 0.2)])) == []
    assert run.dropped["duplicate"] == 1


def test_a_correction_after_the_horizon_is_a_too_late_dead_letter(city):
    norm = normaliser(city)
    run = Run(norm)
    run(rows("m00", [(0, 0.1)]))
    run(rows("m00", [(4 * 24 * 3, 0.1)]))  # three days later: the horizon (48 h) moved on
    outcome = norm.normalise(rows("m00", [(0, 0.5), (4 * 24 * 3 + 1, 0.2)]), run.state.get)
    assert [o["values"] for o in outcome.observations] == [[0.2]]  # its neighbour goes on
    assert outcome.dropped["too-late"] == 1
    [(reason, message)] = outcome.letters
    assert reason == "too-late"
    assert "48 h" in message and "lateness" in message


def test_the_horizon_is_configurable_per_source(tmp_path: Path):
    source = {**SOURCE, "mapping": {**SOURCE["mapping"], "lateness": "P7D"}}
    run = Run(normaliser(city_file(tmp_path, "testville", [source])))
    run(rows("m00", [(0, 0.1)]))
    run(rows("m00", [(4 * 24 * 3, 0.1)]))
    [correction] = run(rows("m00", [(0, 0.5)]))
    assert (correction["versions"], correction["replaced"]) == ([1], [0.1])


# -- property: any order and batching of corrections, the same final aggregates -----------

VALUES = st.integers(min_value=0, max_value=500).map(lambda n: round(n / 1000, 3))


@st.composite
def deliveries(draw) -> tuple[dict[str, list[float]], list[list[tuple[str, int, float]]]]:
    """The corrected data and the sends: every (meter, quarter) gets 1-3 values in
    order (the last is the truth), interleaved across readings and cut into batches."""
    truth: dict[str, list[float]] = {}
    queues: list[list[tuple[str, int, float]]] = []
    for i in range(METERS):
        meter = f"m{i:02d}"
        corrected = i < 3  # three meters get corrections
        truth[meter] = []
        for q in range(QUARTERS):
            versions = draw(st.lists(VALUES, min_size=1, max_size=3 if corrected else 1))
            truth[meter].append(versions[-1])
            queues.append([(meter, q, v) for v in versions])
    order: list[tuple[str, int, float]] = []
    while queues:
        k = draw(st.integers(0, len(queues) - 1))
        order.append(queues[k].pop(0))
        if not queues[k]:
            queues.pop(k)
    cuts = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=12)))
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    return truth, batches


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_corrections_in_any_order_and_batching_give_the_corrected_aggregates(city, sent):
    truth, batches = sent
    run = Run(normaliser(city))
    energy = Energy()
    for batch in batches:
        observations = []
        per_meter: dict[str, list[tuple[int, float]]] = {}
        for meter, q, value in batch:  # one record per meter per batch, rows as they came
            per_meter.setdefault(meter, []).append((q, value))
        for meter, readings in per_meter.items():
            observations += run(rows(meter, readings))
        energy.batch(observations)
    _, once = _once(city, truth)
    assert energy.figures() == once.figures()


def test_a_correction_of_a_clamped_value_replaces_what_was_published(city):
    """A negative interval energy is published clamped to 0 (flagged out-of-range); its
    correction must say it replaces 0, or the warehouse's rollup (value - replaced)
    would add the difference to the raw -0.3 and count 1.3 kWh where there is 1.0."""
    run = Run(normaliser(city))
    [first] = run(rows("m1", [(0, -0.3)]))
    assert first["values"] == [0.0]
    [fix] = run(rows("m1", [(0, 1.0)]))
    assert (fix["values"], fix["versions"], fix["replaced"]) == ([1.0], [1], [0.0])
    assert run(rows("m1", [(0, -0.5)]))[0]["replaced"] == [1.0]  # clamped again: a change
    assert run(rows("m1", [(0, -0.2)])) == []  # clamps to the 0 already published: duplicate
