"""Time columns to UTC: both DST transitions, epochs, ISO 8601, Linky horodates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.errors import ConfigError
from services.runtime.timeparse import (
    CLOCK_DEGRADED,
    TIME_AMBIGUOUS,
    TIME_INVALID,
    TIME_NONEXISTENT,
    TimeSpec,
    parse_time_column,
)

PARIS = ZoneInfo("Europe/Paris")
LOCAL = TimeSpec("horodate", "%Y-%m-%d %H:%M:%S")


def us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000


def local_strings(start_utc: datetime, count: int, step: timedelta, fmt: str) -> list[str]:
    return [(start_utc + k * step).astimezone(PARIS).strftime(fmt) for k in range(count)]


def test_autumn_repeated_hour_is_resolved_by_order():
    # 2025-10-26: 03:00 CEST -> 02:00 CET, 02:00-02:50 happens twice
    start = datetime(2025, 10, 25, 22, 0, tzinfo=UTC)  # local midnight
    expected = [start + k * timedelta(minutes=10) for k in range(150)]  # a 25-hour day
    text = local_strings(start, 150, timedelta(minutes=10), "%Y-%m-%d %H:%M:%S")
    assert text.count("2025-10-26 02:00:00") == 2
    times, flags = parse_time_column(text, LOCAL)
    assert times == [int(t.timestamp()) * 1_000_000 for t in expected]
    assert flags == [0] * 150


def test_spring_missing_hour_is_flagged_not_guessed():
    text = [
        "2025-03-30 01:50:00",
        "2025-03-30 02:00:00",
        "2025-03-30 02:30:00",
        "2025-03-30 03:00:00",
    ]
    times, flags = parse_time_column(text, LOCAL)
    assert times == [us(2025, 3, 30, 0, 50), None, None, us(2025, 3, 30, 1, 0)]
    assert flags == [0, TIME_NONEXISTENT, TIME_NONEXISTENT, 0]


def test_spring_day_without_the_missing_hour_is_regular_in_utc():
    start = datetime(2025, 3, 29, 23, 0, tzinfo=UTC)
    text = local_strings(start, 138, timedelta(minutes=10), "%Y-%m-%d %H:%M:%S")  # 23 hours
    assert not any(t.startswith("2025-03-30 02:") for t in text)
    times, flags = parse_time_column(text, LOCAL)
    assert all(b - a == 600_000_000 for a, b in itertools.pairwise(times))
    assert flags == [0] * 138


def test_repeated_hour_seen_once_is_flagged_ambiguous():
    times, flags = parse_time_column(["2025-10-26 02:10:00", "2025-10-26 03:10:00"], LOCAL)
    assert times == [us(2025, 10, 26, 0, 10), us(2025, 10, 26, 2, 10)]  # first pass assumed
    assert flags == [TIME_AMBIGUOUS, 0]


def test_second_pass_alone_is_placed_by_going_back_in_time():
    text = ["2025-10-26 02:50:00", "2025-10-26 02:00:00", "2025-10-26 02:10:00"]
    times, flags = parse_time_column(text, LOCAL)
    assert times == [us(2025, 10, 26, 0, 50), us(2025, 10, 26, 1, 0), us(2025, 10, 26, 1, 10)]
    assert flags == [0, 0, 0]


@settings(max_examples=60, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31)),
    count=st.integers(1, 400),
    minutes=st.sampled_from([5, 10, 15, 30, 60]),
)
def test_naive_local_series_round_trip(start, count, minutes):
    """Any regular UTC series rendered in naive Paris time parses back exactly, unless
    it only half-covers a repeated hour (then it is flagged, never silently wrong)."""
    start = start.replace(second=0, microsecond=0, tzinfo=UTC)
    step = timedelta(minutes=minutes)
    text = local_strings(start, count, step, "%Y-%m-%d %H:%M:%S")
    times, flags = parse_time_column(text, LOCAL)
    expected = [int((start + k * step).timestamp()) * 1_000_000 for k in range(count)]
    for got, want, flag in zip(times, expected, flags, strict=True):
        assert got == want or flag & TIME_AMBIGUOUS


def test_epoch_seconds_and_milliseconds():
    times, flags = parse_time_column(
        [1736722800, "1736722800", 1736722800.5, None, "x"], TimeSpec("t", "epoch_s")
    )
    assert times == [1736722800_000000, 1736722800_000000, 1736722800_500000, None, None]
    assert flags == [0, 0, 0, TIME_INVALID, TIME_INVALID]
    times, _ = parse_time_column([1736722800123, "1736722800123"], TimeSpec("t", "epoch_ms"))
    assert times == [1736722800_123000, 1736722800_123000]


def test_iso8601_with_and_without_offsets():
    values = [
        "2025-01-13T07:10:00+00:00",
        "2025-01-13T07:10:00Z",
        "2025-01-13T08:10:00+01:00",
        "2025-07-13T09:10:00+02:00",
        "2025-01-13T08:10:00",  # naive: local (winter, UTC+1)
        "2025-07-13T09:10:00",  # naive: local (summer, UTC+2)
        "2020-02-24T22:00:00.173Z",
        "2025-01-13",
        "2025-01-13T25:10:00Z",
        "not a time",
    ]
    times, flags = parse_time_column(values, TimeSpec("t", "iso8601"))
    jan, jul = us(2025, 1, 13, 7, 10), us(2025, 7, 13, 7, 10)
    assert times[:6] == [jan, jan, jan, jul, jan, jul]
    assert times[6] == us(2020, 2, 24, 22, 0) + 173_000
    assert times[7] == us(2025, 1, 12, 23, 0)
    assert times[8:] == [None, None] and flags[8:] == [TIME_INVALID, TIME_INVALID]


def test_linky_horodates_carry_their_offset():
    values = ["E250713091000", "H250113081000", "h250113081000", "e250713091000", "X250113081000"]
    times, flags = parse_time_column(values, TimeSpec("DATE@time", "linky"))
    jan, jul = us(2025, 1, 13, 7, 10), us(2025, 7, 13, 7, 10)
    assert times == [jul, jan, jan, jul, jan]  # no season letter: local time
    assert flags == [0, 0, CLOCK_DEGRADED, CLOCK_DEGRADED, 0]


def test_linky_season_letter_resolves_the_repeated_hour():
    values = ["E251026023000", "H251026023000"]
    times, flags = parse_time_column(values, TimeSpec("DATE@time", "linky"))
    assert times == [us(2025, 10, 26, 0, 30), us(2025, 10, 26, 1, 30)]
    assert flags == [0, 0]


def test_strptime_patterns():
    times, _ = parse_time_column(["13/01/2025 08:10"], TimeSpec("t", "%d/%m/%Y %H:%M"))
    assert times == [us(2025, 1, 13, 7, 10)]
    times, _ = parse_time_column(["2025-01-13 08:10"], TimeSpec("t", "%Y-%m-%d %H:%M"))
    assert times == [us(2025, 1, 13, 7, 10)]


def test_other_time_zones():
    times, _ = parse_time_column(
        ["2025-01-13 08:10:00"], TimeSpec("t", "iso8601", "America/Cayenne")
    )
    assert times == [us(2025, 1, 13, 11, 10)]


def test_from_config():
    spec = TimeSpec.from_config(
        {"field": "debut", "format": "epoch_s", "bucket": "PT1H"}, source="f.yaml", key="k"
    )
    assert spec == TimeSpec("debut", "epoch_s", "Europe/Paris")
    assert TimeSpec.from_config("dateObserved", source="f", key="k") == TimeSpec("dateObserved")
    for bad, key in (
        ({"format": "iso8601"}, "k.field"),
        ({"field": "t", "format": "dd/mm/yyyy"}, "k.format"),
        ({"field": "t", "timezone": "Mars/Olympus"}, "k.timezone"),
    ):
        with pytest.raises(ConfigError) as error:
            TimeSpec.from_config(bad, source="city.yaml", key="k")
        assert error.value.source == "city.yaml" and error.value.key == key


def test_results_are_fresh_lists():
    values = ["2025-01-13 08:10:00", "2025-01-13 08:20:00"]
    first, _ = parse_time_column(values, LOCAL)
    first[0] = None
    again, _ = parse_time_column(values, LOCAL)
    assert again[0] == us(2025, 1, 13, 7, 10)


def test_a_boolean_column_read_first_does_not_change_how_zeros_read():
    # False == 0 == 0.0 in a tuple: the remembered columns are told apart by type.
    spec = TimeSpec("t", "epoch_s")
    assert parse_time_column([False, None], spec)[0] == [None, None]
    assert parse_time_column([0.0, None], spec)[0] == [0, None]
    assert parse_time_column([0, None], spec)[0] == [0, None]
    assert parse_time_column([False, None], spec)[0] == [None, None]
