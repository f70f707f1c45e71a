"""energy-analytics counts the city's local day: 00:00-24:00 in its time zone, 23 or
25 hours on DST days, and each figure equals a brute-force sum of the readings.

Before, a P1D window was a UTC day (00:00Z-24:00Z, 01:00-01:00 in Paris) and
every day had 24 hours; these tests failed on that code.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.energy.secrecy import SecrecyPolicy
from testkit.energy import EnergyHarness, energy_observation

US = 1_000_000
MIN = 60 * US
HOUR = 60 * MIN
OPEN = SecrecyPolicy(min_meters=1, dominance_share=1.0)  # every figure shown


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * US


def local(zone: str, *args: int) -> int:
    return int(dt.datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()) * US


def harness(zone: str = "Europe/Paris") -> EnergyHarness:
    return EnergyHarness(now_us=utc(2026, 1, 1), policies={"lyon": OPEN}, timezones={"lyon": zone})


def windows(h: EnergyHarness, granularity: str, zone: str = "*") -> list[dict[str, Any]]:
    found = [
        r
        for r in h.latest.values()
        if r["granularity"] == granularity and r["zone"] == zone and r["sector"] == "*"
    ]
    return sorted(found, key=lambda r: r["window_start"])


def curve(start: int, count: int, step_s: int = 600) -> list[float]:
    """Distinct values (so a reading counted twice or lost shows), exact in binary."""
    return [((i * 7) % 13 + 1) / 64 for i in range(count)]


def brute_force(start: int, values: list[float], step_s: int, low: int, high: int) -> float:
    """Energy of the readings inside [low, high), reading by reading (none straddles)."""
    step = step_s * US
    return sum(v for i, v in enumerate(values) if low <= start + i * step < high)


def test_a_paris_day_runs_from_local_midnight_to_local_midnight() -> None:
    start = utc(2025, 11, 21, 22)  # 23:00 in Paris, the evening before
    values = curve(start, 6 * 26)
    h = harness()
    h.batch(energy_observation("m", "Z1", start, values))
    days = windows(h, "P1D")
    day = next(r for r in days if r["window_start"] == utc(2025, 11, 21, 23))
    assert day["window_end"] == utc(2025, 11, 22, 23)  # 24:00 in Paris
    expected = brute_force(start, values, 600, day["window_start"], day["window_end"])
    assert day["energy_kwh"] == pytest.approx(expected, abs=1e-6)
    assert {r["window_start"] for r in days} == {
        utc(2025, 11, 20, 23),
        utc(2025, 11, 21, 23),
        utc(2025, 11, 22, 23),
    }


@pytest.mark.parametrize(
    ("date", "hours"),
    [((2025, 10, 26), 25), ((2025, 3, 30), 23), ((2025, 6, 15), 24)],
    ids=["autumn-25h", "spring-23h", "summer-24h"],
)
def test_dst_days_have_their_hours_and_sum_exactly(date: tuple[int, int, int], hours: int) -> None:
    low = local("Europe/Paris", *date)
    high = local("Europe/Paris", *date) + hours * HOUR
    assert high == int(
        dt.datetime.combine(
            dt.date(*date) + dt.timedelta(days=1), dt.time(), ZoneInfo("Europe/Paris")
        ).timestamp()
        * US
    )
    start = low - 2 * HOUR
    values = curve(start, 6 * (hours + 4))
    h = harness()
    h.batch(energy_observation("m", "Z1", start, values))
    [day] = [r for r in windows(h, "P1D") if r["window_start"] == low]
    assert day["window_end"] == high
    assert day["energy_kwh"] == pytest.approx(brute_force(start, values, 600, low, high), abs=1e-9)
    hourly = [r for r in windows(h, "PT1H") if low <= r["window_start"] < high]
    assert [r["window_start"] for r in hourly] == [low + i * HOUR for i in range(hours)]
    for r in hourly:  # the repeated autumn hour is an hour of its own
        expected = brute_force(start, values, 600, r["window_start"], r["window_end"])
        assert r["energy_kwh"] == pytest.approx(expected, abs=1e-9)
    quarters = [r for r in windows(h, "PT15M") if low <= r["window_start"] < high]
    assert len(quarters) == 4 * hours
    assert not day["partial"]


def test_a_window_the_data_covers_in_part_is_flagged_partial() -> None:
    low = local("Europe/Paris", 2025, 11, 22)
    h = harness()
    h.batch(energy_observation("m", "Z1", low + 10 * HOUR, curve(low, 6)))  # one hour of data
    [day] = windows(h, "P1D")
    assert day["partial"] and day["window_end"] - day["window_start"] == 24 * HOUR
    [hour] = windows(h, "PT1H")
    assert not hour["partial"]
    h.batch(energy_observation("m", "Z1", low, curve(low, 144)))  # the whole day arrives
    assert not windows(h, "P1D")[0]["partial"]

    once = harness()
    once.batch(energy_observation("m", "Z1", low + 10 * HOUR, curve(low, 6)))
    once.batch(energy_observation("m", "Z1", low + 4 * 24 * HOUR, curve(low, 6)))  # closes it
    [released] = [
        r
        for r in once.released.values()
        if r["granularity"] == "P1D"
        and (r["zone"], r["sector"]) == ("*", "*")
        and r["window_start"] == low
    ]
    assert released["partial"] and released["energy_kwh"] == pytest.approx(sum(curve(low, 6)))


@pytest.mark.parametrize(
    ("zone", "first_day_start"),
    [("Pacific/Noumea", utc(2025, 11, 21, 13)), ("America/Cayenne", utc(2025, 11, 22, 3))],
)
def test_a_city_in_another_zone_gets_its_own_days(zone: str, first_day_start: int) -> None:
    h = harness(zone)
    h.batch(energy_observation("m", "Z1", first_day_start, curve(0, 144)))
    [day] = windows(h, "P1D")
    assert (day["window_start"], day["window_end"]) == (
        first_day_start,
        first_day_start + 24 * HOUR,
    )
    assert not day["partial"]


# (start, hours) of the two DST days of 2025 in Paris
DST_DAYS = [(local("Europe/Paris", 2025, 10, 26), 25), (local("Europe/Paris", 2025, 3, 30), 23)]


@settings(max_examples=40, deadline=None)
@given(
    dst=st.sampled_from(DST_DAYS),
    cuts=st.sets(st.integers(1, 6 * 27 - 1), max_size=6),
    order=st.randoms(use_true_random=False),
    batches=st.integers(1, 4),
    step_s=st.sampled_from([600, 900, 1800]),
)
def test_a_dst_day_sums_the_same_in_any_batching(dst, cuts, order, batches, step_s) -> None:
    """A DST day's readings (10, 15 or 30 minutes) cut into records anywhere, sent in
    any order and any number of batches: the day and every hour equal the brute-force
    sums, and the day has its 23 or 25 hours."""
    low, hours = dst
    high = low + hours * HOUR
    start = low - 2 * HOUR
    count = (hours + 4) * 3600 // step_s
    values = curve(start, count)
    bounds = [0, *sorted(c for c in cuts if c < count), count]
    records = [
        energy_observation("m", "Z1", start + a * step_s * US, values[a:b], step_seconds=step_s)
        for a, b in itertools.pairwise(bounds)
    ]
    order.shuffle(records)
    h = harness()
    size = -(-len(records) // batches)
    for i in range(0, len(records), size):
        h.batch(*records[i : i + size])
    [day] = [r for r in windows(h, "P1D") if r["window_start"] == low]
    assert day["window_end"] == high
    assert day["energy_kwh"] == pytest.approx(
        brute_force(start, values, step_s, low, high), abs=1e-6
    )
    hourly = [r for r in windows(h, "PT1H") if low <= r["window_start"] < high]
    assert len(hourly) == hours
    for r in hourly:
        expected = brute_force(start, values, step_s, r["window_start"], r["window_end"])
        assert r["energy_kwh"] == pytest.approx(expected, abs=1e-6)


def test_a_time_outside_the_calendar_is_a_dead_letter_not_a_crash() -> None:
    """A reading before year 1 or after 9999 has no local day: its record goes to the
    dead letters with its reason, its neighbours in the batch are aggregated."""
    low = local("Europe/Paris", 2025, 11, 22)
    h = harness()
    h.batch(
        energy_observation("bad", "Z1", -62_200_000_000_000_000, [0.1]),
        energy_observation("m", "Z1", low, curve(low, 144)),
    )
    assert h.dead == ["time-implausible"]
    assert windows(h, "P1D")[0]["energy_kwh"] == pytest.approx(sum(curve(low, 144)))
