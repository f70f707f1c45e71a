"""Energy windows, peaks, lateness and upserts, with hand-computed expectations.

The stage runs here without a broker: records go through ``process`` and
``end_batch`` as the StageRunner would feed them, and what it emits is read back.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy.secrecy import SecrecyPolicy
from services.energy.stage import EnergyTopics
from services.energy.windows import (
    DAY_US,
    HOUR_US,
    US,
    apply_meter_change,
    empty_cell_day,
    merge_pieces,
    pieces_by_day,
    quarter_energy,
    quarter_peaks,
)
from services.runtime.processor import InputMeta
from testkit.energy import EnergyHarness, deliver
from testkit.energy import iso as _iso

T0 = 1_763_766_000_000_000  # 2025-11-22T00:00 in Paris (2025-11-21T23:00:00Z): a local day
MIN = 60 * US
PARIS = "Europe/Paris"
TOPICS = EnergyTopics()


def observation(
    meter: str,
    values: list[float],
    *,
    start: int = T0,
    step: int = 600,
    zone: str | None = "Z1",
    sector: str | None = "residential",
    metric: str = "active_energy_import",
    times: list[int] | None = None,
) -> dict[str, Any]:
    return {
        "city": "lyon",
        "domain": "energy",
        "metric": metric,
        "unit": "kWh",
        "entity_pseudonym": meter,
        "entity_type": "ElectricityMeter",
        "zone": zone,
        "position": None,
        "start": start,
        "step_seconds": 0 if times else step,
        "times": times or [],
        "values": values,
        "quality": [],
        "source": "enedis",
        "dataset": "load-curves",
        "lineage_id": "batch-1",
        "key_epoch": None,
        "sector": sector,
        "carrier": None,
    }


# --- pure time arithmetic -------------------------------------------------------------------


def test_a_ten_minute_reading_across_a_quarter_is_shared_in_proportion() -> None:
    [(day, pieces)] = pieces_by_day(observation("m", [1.2], start=T0 + 10 * MIN), PARIS).items()
    assert day == T0 and pieces == [(10 * MIN, 10 * MIN, 1.2)]
    energy, present = quarter_energy(pieces)
    assert energy[:3] == [pytest.approx(0.6), pytest.approx(0.6), 0.0]
    assert present[:3] == [True, True, False]
    # 1.2 kWh in 10 minutes is 7.2 kW, in both quarters it touches.
    cell = apply_meter_change(empty_cell_day(), [], pieces, [], pieces)
    assert quarter_peaks([cell["p"]])[:3] == [pytest.approx(7.2), pytest.approx(7.2), 0.0]


def test_a_reading_across_midnight_is_split_between_days() -> None:
    record = observation("m", [2.0], start=T0 - 30 * MIN, step=3600)
    assert pieces_by_day(record, PARIS) == {
        T0 - DAY_US: [(DAY_US - 30 * MIN, 30 * MIN, 1.0)],
        T0: [(0, 30 * MIN, 1.0)],
    }


def test_peak_is_the_highest_summed_power_of_the_zone() -> None:
    """Meter A: 0.5 kWh 00:00-00:10 (3 kW), 1 kWh 00:10-00:20 (6 kW); meter B: 1 kWh
    00:00-00:30 (2 kW). Summed: 5 kW, then 8 kW, then 2 kW (00:20-00:30)."""
    a = pieces_by_day(observation("a", [0.5, 1.0]), PARIS)[T0]
    b = pieces_by_day(observation("b", [1.0], step=1800), PARIS)[T0]
    cell = apply_meter_change(empty_cell_day(), [], a, [], a)
    cell = apply_meter_change(cell, [], b, [], b)
    peaks = quarter_peaks([cell["p"]])
    assert peaks[:3] == [pytest.approx(8.0), pytest.approx(8.0), 0.0]
    assert cell["e"][:2] == [pytest.approx(1.5), pytest.approx(1.0)]  # A 1.0 + B 0.5; A .5 + B .5
    assert cell["n"][:3] == [2, 2, 0] and cell["hn"][0] == 2 and cell["dn"] == 2
    assert cell["hx"][0] == pytest.approx(1.5) and cell["dx"] == pytest.approx(1.5)


def test_a_reading_sent_again_replaces_instead_of_adding() -> None:
    first = pieces_by_day(observation("m", [1.0, 2.0]), PARIS)[T0]
    merged, removed, added = merge_pieces(first, first)
    assert (merged, removed, added) == (first, [], [])
    corrected = pieces_by_day(observation("m", [5.0], start=T0 + 10 * MIN), PARIS)[T0]
    merged, removed, added = merge_pieces(first, corrected)
    assert merged == [(0, 10 * MIN, 1.0), (10 * MIN, 10 * MIN, 5.0)]
    assert removed == [(10 * MIN, 10 * MIN, 2.0)] and added == corrected
    # An hourly reading over the same time replaces the 10-minute ones it overlaps.
    hourly = pieces_by_day(observation("m", [9.0], step=3600), PARIS)[T0]
    merged, removed, _ = merge_pieces(merged, hourly)
    assert merged == hourly and len(removed) == 2


# --- the stage, fed record by record (testkit/energy.EnergyHarness) -------------------------


def Harness(**kwargs: Any) -> EnergyHarness:
    return EnergyHarness(now_us=T0 + 10 * DAY_US, **kwargs)


def day_of(meter: str, kwh: float, start: int = T0, zone: str = "Z1") -> dict[str, Any]:
    """144 ten-minute readings of ``kwh`` each: one meter's day."""
    return observation(meter, [kwh] * 144, start=start, zone=zone)


def test_windows_of_a_city_with_two_zones() -> None:
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=2, dominance_share=0.85)})
    h.batch(
        day_of("a1", 0.1),
        day_of("a2", 0.2),
        day_of("b1", 0.3, zone="Z2"),
        day_of("b2", 0.3, zone="Z2"),
    )
    quarter = h.get("Z1", "residential", "PT15M", T0)
    # a1: 0.1 kWh per 10 min = 0.15 per quarter; a2 0.3: 0.45 kWh; peak (0.1+0.2)*6 = 1.8 kW
    assert quarter["energy_kwh"] == pytest.approx(0.45)
    assert quarter["meter_count"] == 2 and quarter["peak_kw"] == pytest.approx(1.8)
    # The largest point's share is never a value any more (it gave its energy away).
    assert quarter["largest_share"] is None and quarter["suppressed"] is False
    hour = h.get("Z1", "residential", "PT1H", T0 + 5 * HOUR_US)
    assert hour["energy_kwh"] == pytest.approx(1.8) and hour["window_end"] == T0 + 6 * HOUR_US
    day = h.get("Z2", "residential", "P1D", T0)
    assert day["energy_kwh"] == pytest.approx(0.6 * 144) and day["largest_share"] is None
    total = h.get("*", "*", "P1D", T0)
    assert total["energy_kwh"] == pytest.approx(0.9 * 144) and total["meter_count"] == 4
    assert total["peak_kw"] == pytest.approx(0.9 * 6)  # everyone at once: 5.4 kW
    sector = h.get("*", "residential", "PT1H", T0)
    assert sector["energy_kwh"] == pytest.approx(0.9 * 6)
    assert len(h.latest) == 4 * (96 + 24 + 1)  # Z1, Z2, the sector total, the city total
    zones = {k.split("|")[1] for k in h.latest}
    assert zones == {"Z1", "Z2", "*"}


def test_carrier_sector_and_zone_defaults() -> None:
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=1)})
    h.batch(observation("p", [1.0], zone=None, sector=None, metric="active_energy_export"))
    keys = {k.rsplit("|", 2)[0] for k in h.latest}
    assert "lyon|unknown|production|unknown" in keys
    h.batch({**observation("x", [1.0]), "domain": "mobility", "metric": "bike_count"})
    h.batch({**observation("y", [1.0]), "metric": "active_power", "unit": "kW"})
    assert h.dead == []  # not energy to sum: ignored, not an error
    h.batch({**observation("z", [1.0]), "unit": "Wh"})
    h.batch(observation("n", [-1.0]))
    assert h.dead == ["energy-unit", "energy-value"]


def test_late_data_updates_the_window_with_a_higher_version() -> None:
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=1)})
    h.batch(day_of("a", 0.1))
    before = h.get("Z1", "residential", "P1D", T0)
    h.batch(day_of("b", 0.1, start=T0 + DAY_US))  # the next day: watermark moves on
    h.batch(day_of("c", 0.2))  # a meter of the first day, a day late
    after = h.get("Z1", "residential", "P1D", T0)
    assert after["version"] > before["version"]
    assert after["energy_kwh"] == pytest.approx(0.3 * 144) and after["meter_count"] == 2
    # The same readings again change nothing and publish nothing.
    assert h.batch(day_of("c", 0.2)) == []
    assert h.get("Z1", "residential", "P1D", T0) == after


def test_a_day_closes_after_the_lateness() -> None:
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=1)}, lateness_us=24 * HOUR_US)
    h.batch(day_of("a", 0.1))
    h.batch(day_of("a", 0.1, start=T0 + DAY_US))  # watermark: end of day 2
    h.batch(day_of("b", 0.1))  # day 1 ended 24 h before the watermark: exactly closed
    assert h.dead == ["too-late"]
    # A series over both closed and open days: the open part counts, the rest is a letter.
    both = observation("c", [0.5] * 288, start=T0)
    h.batch(both)
    assert h.dead == ["too-late", "too-late"]
    assert h.get("Z1", "residential", "P1D", T0 + DAY_US)["energy_kwh"] == pytest.approx(
        0.1 * 144 + 0.5 * 144
    )
    assert not any(k.startswith(f"md|lyon|electricity|{T0}|") for k in h.stage.store.live_keys())


def test_suppressed_cells_are_published_with_values_withheld() -> None:
    h = Harness()  # default policy: 10 meters, 85%
    h.batch(
        *(day_of(f"big{i}", 0.2) for i in range(12)),
        *(day_of(f"mid{i}", 0.3, zone="Z2") for i in range(11)),
        *(day_of(f"small{i}", 0.1, zone="Z3") for i in range(3)),
    )
    small = h.get("Z3", "residential", "PT1H", T0)
    assert small["suppressed"] and small["suppression_reason"] == "min-meters"
    assert small["energy_kwh"] is None and small["meter_count"] is None
    assert small["peak_kw"] is None and small["largest_share"] is None
    # Z2 (11 meters x 0.3 = 3.3 kWh per 10 min) is larger than Z1 (12 x 0.2 = 2.4): Z1 goes.
    assert h.get("Z1", "residential", "PT1H", T0)["suppression_reason"] == "secondary"
    assert h.get("Z2", "residential", "PT1H", T0)["suppressed"] is False
    assert h.get("*", "residential", "PT1H", T0)["energy_kwh"] == pytest.approx(
        6 * (12 * 0.2 + 11 * 0.3 + 3 * 0.1)
    )


def test_the_watermark_waits_for_the_slowest_observations_partition() -> None:
    """Partition 0 is four days ahead of partition 1 (a backfill, a slow producer):
    partition 1's first day is not late, since the watermark follows the slowest."""
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=1)}, partitions=2)
    stage = h.stage
    fast = [day_of("a", 0.1, start=T0 + d * DAY_US) for d in range(5)]
    for record in fast:  # as if read from observations partition 0
        [emit] = stage.process(record, InputMeta(TOPICS.observations, 0, 1, b"k", 0))
        deliver(stage, emit, h._meta(TOPICS.regrouped, emit.key.encode()))
    [emit] = stage.process(day_of("b", 0.1), InputMeta(TOPICS.observations, 1, 1, b"k", 0))
    assert emit.key == "lyon|electricity|1" and emit.partition in (0, 1)
    deliver(stage, emit, h._meta(TOPICS.regrouped, emit.key.encode()))
    list(stage.end_batch())
    stage.on_commit()
    assert h.dead == []
    assert stage.readings_aggregated == 6 * 144


def test_a_day_closed_by_the_batch_that_filled_it_is_still_published() -> None:
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=1, dominance_share=1.0)}, lateness_us=0)
    h.batch(day_of("a", 0.1), day_of("a", 0.1, start=T0 + DAY_US))
    assert h.get("Z1", "residential", "P1D", T0)["energy_kwh"] == pytest.approx(14.4)
    assert not any(f"|{T0}|" in k for k in h.stage.store.live_keys())  # and then dropped
    h.batch(day_of("b", 0.1))
    assert h.dead == ["too-late"]


def _published(h: Harness) -> dict[str, tuple]:
    """What a consumer keeping the highest version holds, minus version and clock."""
    return {
        key: tuple(v for k, v in sorted(value.items()) if k not in ("version", "computed_at"))
        for key, value in h.latest.items()
    }


def test_a_cell_appearing_later_in_the_day_gets_the_same_records_as_in_one_batch() -> None:
    """Z2 reports only in the afternoon and arrives in a later batch: its morning
    windows still get their zero records, as when everything came at once, so the
    warehouse holds the same rows whatever the order and batching of arrival."""
    policy = {"lyon": SecrecyPolicy(min_meters=1, dominance_share=1.0)}  # nothing withheld
    morning = observation("a", [0.25] * 72)
    afternoon = observation("b", [0.5] * 72, start=T0 + 12 * HOUR_US, zone="Z2")
    at_once, in_turn = Harness(policies=policy), Harness(policies=policy)
    at_once.batch(morning, afternoon)
    in_turn.batch(morning)
    in_turn.batch(afternoon)
    assert at_once.get("Z2", "residential", "PT1H", T0)["energy_kwh"] == 0.0
    assert _published(in_turn) == _published(at_once)


@settings(max_examples=40, deadline=None)
@given(
    order=st.permutations(range(5)),
    cuts=st.sets(st.integers(1, 4), max_size=3),
    policy=st.sampled_from([SecrecyPolicy(1, 1.0), SecrecyPolicy(2, 0.9)]),
)
def test_what_is_published_does_not_depend_on_arrival_order(order, cuts, policy) -> None:
    readings = [
        observation("a1", [0.25] * 36, start=T0 + 6 * HOUR_US),
        observation("a2", [0.125] * 144),
        observation("b1", [0.5] * 24, start=T0 + 20 * HOUR_US, zone="Z2"),
        observation("b1", [1.0] * 6, start=T0 + 2 * HOUR_US, zone="Z2"),
        observation("c1", [0.75] * 12, start=T0 + 9 * HOUR_US, zone="Z3", sector="tertiary"),
    ]
    reference = Harness(policies={"lyon": policy})
    reference.batch(*readings)
    shuffled = Harness(policies={"lyon": policy})
    bounds = [0, *sorted(cuts), 5]
    for low, high in itertools.pairwise(bounds):
        shuffled.batch(*(readings[i] for i in order[low:high]))
    assert _published(shuffled) == _published(reference)


# --- the release: once, when the day closes ---------------------------------------------------


def test_a_day_is_released_once_when_the_watermark_closes_it() -> None:
    h = Harness(policies={"lyon": SecrecyPolicy(min_meters=1)})  # 48 h of lateness
    h.batch(*(day_of(f"m{i}", 0.1) for i in range(3)))
    h.batch(day_of("m0", 0.1, start=T0 + DAY_US))
    assert h.released == {}  # provisional upserts only, internal
    h.batch(day_of("late", 0.2))  # late, within the lateness: in the release
    h.batch(day_of("m0", 0.1, start=T0 + 2 * DAY_US))  # closes day 1
    day1 = {k: v for k, v in h.released.items() if v["window_start"] < T0 + DAY_US}
    assert len(day1) == 3 * (96 + 24 + 1)  # Z1, the sector total, the city total
    total = h.released[f"lyon|*|electricity|*|P1D|{_iso(T0)}"]
    assert total["energy_kwh"] == pytest.approx(0.5 * 144) and total["meter_count"] == 4
    assert total["closed_by"] == "watermark" and "largest_share" not in total
    assert "version" not in total
    h.batch(day_of("m1", 0.3))  # a correction after the close: refused, nothing moves
    assert h.dead == ["too-late"]
    assert h.released[f"lyon|*|electricity|*|P1D|{_iso(T0)}"] == total


def test_a_quiet_group_is_released_by_the_wall_clock() -> None:
    # The stage's clock (ns): day 1 is past its lateness (48 h), day 2 is not.
    now = [(T0 + 3 * DAY_US + HOUR_US) * 1000]
    h = Harness(
        policies={"lyon": SecrecyPolicy(min_meters=1)},
        idle_close_us=600 * US,
        clock=lambda: now[0],
    )
    h.batch(day_of("a", 0.1), day_of("a", 0.1, start=T0 + DAY_US))
    assert h.tick() == []  # heard of the group just now: not idle yet
    now[0] += 599 * US * 1000
    assert h.tick() == []
    now[0] += 2 * US * 1000
    released = h.tick()
    assert all(T0 <= r["window_start"] < T0 + DAY_US for r in released) and released
    assert all(r["closed_by"] == "idle" for r in released)
    assert h.tick() == []  # released once
    # The watermark never passed day 1, yet it is closed: a reading of it is too late.
    h.batch(day_of("b", 0.2))
    assert h.dead == ["too-late"]
    assert h.stage.readings_aggregated == 2 * 144
