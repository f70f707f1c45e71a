"""Coarse readings and unknown intervals in energy-analytics: an hourly reading spread
over quarters gives *derived* quarters with no fabricated peak, and a value normalise
once published for an unknown interval (a register reset, as 0 kWh) is no measured
zero. The stage runs without a broker, fed as the StageRunner would."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from services.energy.aggregate import day_table, plan_table, release
from services.energy.readings import UNKNOWN_INTERVAL
from services.energy.report import render
from services.energy.secrecy import SecrecyPolicy
from services.energy.stage import EnergyStage, EnergyTopics
from services.energy.windows import (
    QUARTER_US,
    apply_meter_change,
    empty_cell_day,
    merge_pieces,
    pieces_by_day,
)
from services.runtime.config import NodeConfig
from services.runtime.paths import REPO_ROOT
from services.runtime.processor import InputMeta
from testkit.energy import deliver, energy_observation

T0 = 1_763_766_000_000_000  # 2025-11-22T00:00 Europe/Paris (23:00Z the day before): a local day
TOPICS = EnergyTopics()
OPEN = SecrecyPolicy(min_meters=1, dominance_share=1.0)  # every cell shown


class Stage:
    """One batch per call; the latest record of every window, by key."""

    def __init__(self) -> None:
        self.stage = EnergyStage(
            TOPICS, node=NodeConfig(), contracts=None, policies={"lyon": OPEN}, partitions=1
        )
        self.offset = 0
        self.latest: dict[str, dict[str, Any]] = {}

    def batch(self, *records: dict[str, Any]) -> None:
        regrouped = []
        for record in records:
            regrouped += list(self.stage.process(record, self._meta(TOPICS.observations)))
        emitted = []
        for emit in regrouped:
            emitted += deliver(self.stage, emit, self._meta(TOPICS.regrouped))
        emitted += list(self.stage.end_batch())
        self.stage.on_commit()
        for emit in emitted:
            if emit.topic == TOPICS.aggregates:
                self.latest[emit.key] = emit.value

    def _meta(self, topic: str) -> InputMeta:
        self.offset += 1
        return InputMeta(topic, 0, self.offset, b"lyon|electricity|0", T0 // 1000 + 86_400_000)

    def windows(self, granularity: str, zone: str = "Z1") -> dict[int, dict[str, Any]]:
        return {
            r["window_start"]: r
            for r in self.latest.values()
            if r["granularity"] == granularity and r["zone"] == zone
        }


def test_an_hourly_reading_spread_over_quarters_is_derived_with_no_peak():
    h = Stage()
    h.batch(energy_observation("hourly", "Z1", T0, [4.0, 2.0], step_seconds=3600))
    quarters = h.windows("PT15M")
    assert [quarters[T0 + q * QUARTER_US]["energy_kwh"] for q in range(8)] == [1.0] * 4 + [0.5] * 4
    for q in range(8):
        window = quarters[T0 + q * QUARTER_US]
        # the average power of the hour is no measured peak of a quarter
        assert window["derived"] is True and window["peak_kw"] is None
    hours = h.windows("PT1H")
    assert hours[T0]["derived"] is False and hours[T0]["peak_kw"] == pytest.approx(4.0)
    # the city total of a derived quarter is derived too
    assert h.windows("PT15M", zone="*")[T0]["peak_kw"] is None


def test_measured_windows_keep_their_peak_and_a_spread_meter_makes_them_derived():
    h = Stage()
    h.batch(energy_observation("fine", "Z2", T0, [0.1] * 6))  # ten-minute readings
    fine = h.windows("PT15M", zone="Z2")[T0]
    assert fine["derived"] is False and fine["peak_kw"] == pytest.approx(0.6)
    h.batch(energy_observation("daily", "Z2", T0, [24.0], step_seconds=86_400))
    mixed = h.windows("PT15M", zone="Z2")[T0]
    assert mixed["derived"] is True and mixed["peak_kw"] is None
    assert mixed["energy_kwh"] == pytest.approx(0.15 + 0.25)
    assert h.windows("PT1H", zone="Z2")[T0]["derived"] is True  # a day over an hour
    assert h.windows("P1D", zone="Z2")[T0]["derived"] is False


def test_a_released_day_flags_its_derived_windows():
    cell = empty_cell_day()
    pieces = pieces_by_day(
        energy_observation("m", "Z1", T0, [2.0], step_seconds=3600), "Europe/Paris"
    )[T0]
    merged, removed, added = merge_pieces([], pieces)
    state = apply_meter_change(cell, [], merged, removed, added)
    table = day_table(T0, {("Z1", "residential"): state})
    records = dict(
        release(
            table,
            city="lyon",
            carrier="electricity",
            plan=plan_table(table, OPEN),
            released_at=0,
            closed_by="watermark",
        )
    )
    by_window = {(r["zone"], r["granularity"], r["window_start"]): r for r in records.values()}
    quarter = by_window[("Z1", "PT15M", T0)]
    assert quarter["derived"] is True and quarter["peak_kw"] is None
    assert quarter["energy_kwh"] == pytest.approx(0.5)
    assert by_window[("Z1", "PT1H", T0)]["peak_kw"] == pytest.approx(2.0)


def test_an_unknown_interval_is_not_counted_as_a_measured_zero():
    h = Stage()
    reset = energy_observation("m", "Z1", T0, [0.1, 0.0, 0.1], step_seconds=900)
    reset["quality"] = [0, UNKNOWN_INTERVAL, 0]  # normalise's old 0 kWh for a reset
    h.batch(reset)
    quarters = h.windows("PT15M")
    assert T0 + QUARTER_US not in quarters  # no meter reported there: no window
    assert quarters[T0]["energy_kwh"] == pytest.approx(0.1)
    assert quarters[T0 + 2 * QUARTER_US]["energy_kwh"] == pytest.approx(0.1)
    assert h.windows("PT1H")[T0]["meter_count"] == 1
    assert h.stage.unknown_intervals == 1


def test_the_unknown_interval_bit_is_the_vocabularys_counter_reset():
    vocabulary = yaml.safe_load((REPO_ROOT / "deploy" / "vocabulary.yaml").read_text())
    bits = {flag["name"]: flag["bit"] for flag in vocabulary["quality_flags"]}
    assert 1 << bits["counter-reset"] == UNKNOWN_INTERVAL


def test_the_report_shows_a_derived_hour_without_a_peak():
    h = Stage()
    h.batch(energy_observation("daily", "Z1", T0, [24.0], step_seconds=86_400))
    text = render(list(h.latest.values()), city="lyon", zone="*", sector="*", carrier="e", tz="UTC")
    assert "kWh  peak - (derived)" in text


def _cell_state(*observations: dict[str, Any]) -> dict[str, Any]:
    state = empty_cell_day()
    for observation in observations:
        pieces = pieces_by_day(observation, "Europe/Paris")[T0]
        merged, removed, added = merge_pieces([], pieces)
        state = apply_meter_change(state, [], merged, removed, added)
    return state


def test_a_withheld_cell_does_not_mark_the_total_it_hides_in_as_derived():
    """Attack: a released total says `derived` while every visible part says measured,
    so the withheld cell must hold a meter with coarse readings — a withheld cell must
    look the same whatever it held. A total's flag comes from its visible parts only."""
    measured = [
        energy_observation(f"m{k}", "Z1", T0, [0.1 + k / 100] * 4, step_seconds=900)
        for k in range(10)
    ]
    hidden = energy_observation("alone", "Z2", T0, [2.0], step_seconds=3600)  # spread
    states = {
        ("Z1", "residential"): _cell_state(*measured),
        ("Z2", "residential"): _cell_state(hidden),
    }
    table = day_table(T0, states)
    policy = SecrecyPolicy(min_meters=10, dominance_share=1.0)
    records = release(
        table,
        city="lyon",
        carrier="electricity",
        plan=plan_table(table, policy),
        released_at=0,
        closed_by="watermark",
    )
    quarter = {
        (r["zone"], r["sector"]): r
        for _, r in records
        if r["granularity"] == "PT15M" and r["window_start"] == T0
    }
    assert quarter[("Z2", "residential")]["suppressed"] is True
    visible = [r for r in quarter.values() if not r["suppressed"]]
    assert visible and not any(r["derived"] for r in visible if r["zone"] != "*")
    assert not any(r["derived"] for r in visible)  # no total betrays the hidden meter
    total = quarter[("*", "*")]
    assert total["peak_kw"] is not None  # the summed power, as for any total
