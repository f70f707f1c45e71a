"""Load-curve coarsening: sums and means per bucket, column-wise, on local days."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.anonymise.coarsen import coarsen, groups_of
from services.anonymise.generalise import bucket_starts
from services.anonymise.policy import COARSENED_ROWS, Coarsening
from services.anonymise.transform import TransformError, anonymise
from services.ingest.records import to_column
from testkit.anonymise import T0, TEN_MINUTES, policy_of, pseudonymiser, raw, values_of

HOUR = 3_600_000_000


def utc_us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1_000_000)


def by_name(columns: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in columns}


def cells(column: dict) -> list:
    from services.anonymise.columns import cells as c

    return c(column)


readings = st.lists(
    st.tuples(
        st.integers(0, 3 * 24 * 6),  # 10-minute slot over three days
        st.one_of(st.none(), st.integers(0, 5000)),  # Wh, sometimes missing
        st.floats(0, 50, allow_nan=False),  # kW
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(readings, st.sampled_from(["PT15M", "PT30M", "PT1H", "P1D"]))
def test_sums_and_means_per_bucket(rows, step) -> None:
    seconds = {"PT15M": 900, "PT30M": 1800, "PT1H": 3600, "P1D": 86400}[step]
    times = [T0 + slot * TEN_MINUTES for slot, _, _ in rows]
    wh = [w for _, w, _ in rows]
    kw = [k for _, _, k in rows]
    output = [
        to_column("wh", wh),
        to_column("kw", kw),
        to_column("label", [f"r{i}" for i in range(len(rows))]),
    ]
    coarsening = Coarsening(step, seconds, sum=("wh",), mean=("kw",))
    columns, starts, count = coarsen(output, times, coarsening, "Europe/Paris")
    out = by_name(columns)
    assert count == len(starts) == len(set(starts)) and starts == sorted(starts)
    expected_starts = bucket_starts(times, seconds, "Europe/Paris")
    assert set(starts) == set(expected_starts)
    for b, start in enumerate(starts):
        members = [i for i, s in enumerate(expected_starts) if s == start]
        present = [wh[i] for i in members if wh[i] is not None]
        assert cells(out["wh"])[b] == (sum(present) if present else None)
        assert cells(out["kw"])[b] == pytest.approx(sum(kw[i] for i in members) / len(members))
        assert cells(out[COARSENED_ROWS])[b] == len(members)
        assert cells(out["label"])[b] == f"r{members[0]}"  # the bucket's first row
    assert sum(cells(out[COARSENED_ROWS])) == len(rows)
    assert sum(v for v in cells(out["wh"]) if v is not None) == sum(w for w in wh if w is not None)
    assert out["kw"]["kind"] == "double"
    if any(w is not None for w in wh):
        assert out["wh"]["kind"] == "long"  # integer energy stays integer


def test_days_are_local_days_even_across_dst() -> None:
    # 2025-03-30 in Paris lasts 23 hours: 23:00Z on the 29th to 22:00Z on the 30th.
    start = utc_us(2025, 3, 29, 23)
    times = [start + i * TEN_MINUTES for i in range(23 * 6 + 6)]  # the whole day, and an hour more
    assert (
        bucket_starts(times, 86400, "Europe/Paris") == [start] * 138 + [utc_us(2025, 3, 30, 22)] * 6
    )
    _, members = groups_of(bucket_starts(times, 86400, "Europe/Paris"))
    assert [len(m) for m in members] == [138, 6]


def test_unsorted_rows_group_by_bucket() -> None:
    keys, members = groups_of([7, 3, 7, 3, 5])
    assert keys == [3, 5, 7] and members == [[1, 3], [4], [0, 2]]


def test_paris_curve_summed_to_days_from_its_naive_local_time(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": "2",
            "fields": {
                "prm": "identifier",
                "iris": "measure",
                "horodate": "measure",
                "pas": "measure",
                "energie_kwh": "measure",
            },
            "coarsen": {
                "to": "P1D",
                "sum": ["energie_kwh"],
                "set": {"pas": "P1D"},
                "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
            },
        },
    )
    local = [
        f"2025-01-{d} {h:02d}:{m:02d}:00"
        for d in (14, 15)
        for h in range(24)
        for m in range(0, 60, 10)
    ]
    record = raw(
        {
            "prm": ["09876543210123"] * 288,
            "iris": ["751010203"] * 288,
            "horodate": local,
            "pas": ["PT10M"] * 288,
            "energie_kwh": [0.1] * 288,
        },
        entity="09876543210123",
    )
    out, audit = anonymise(record, policy, pseudonymiser())
    assert out["row_count"] == 2
    assert out["event_times"] == [utc_us(2025, 1, 13, 23), utc_us(2025, 1, 14, 23)]
    assert values_of(out, "energie_kwh") == [pytest.approx(14.4), pytest.approx(14.4)]
    assert values_of(out, "horodate") == ["2025-01-14 00:00:00", "2025-01-15 00:00:00"]
    assert values_of(out, "pas") == ["P1D", "P1D"]
    assert values_of(out, COARSENED_ROWS) == [144, 144]
    assert values_of(out, "prm") == [out["entity_pseudonym"]] * 2
    assert out["attributes"]["anonymise.coarsened"] == "P1D"
    assert audit.decisions["coarsened"] == 288


def test_event_times_drive_coarsening_when_present(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {"version": "1", "fields": {"EAST": "measure"}, "coarsen": {"to": "PT1H"}},
    )
    times = [T0 + i * TEN_MINUTES for i in range(12)]
    record = raw({"EAST": [f"{1000 + i:09d}" for i in range(12)]}, event_times=times)
    out, _ = anonymise(record, policy, pseudonymiser())
    # a cumulative register keeps its value at the start of each hour
    assert values_of(out, "EAST") == ["000001000", "000001006"]
    assert out["event_times"] == [T0, T0 + HOUR]


def test_consent_keeps_the_curve(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        {
            "version": "1",
            "consent": True,
            "fields": {"kwh": "measure"},
            "coarsen": {"to": "P1D", "sum": ["kwh"]},
        },
    )
    record = raw({"kwh": [1.0] * 6}, event_times=[T0 + i * TEN_MINUTES for i in range(6)])
    out, audit = anonymise(record, policy, pseudonymiser())
    assert out["row_count"] == 6 and "coarsened" not in audit.decisions


@pytest.mark.parametrize(
    ("times", "reason"),
    [(None, "no-event-time"), ([T0, T0], "cannot-coarsen")],
)
def test_records_that_cannot_be_coarsened_are_refused(tmp_path: Path, times, reason) -> None:
    privacy = {
        "version": "1",
        "fields": {"kwh": "measure", "t": "measure"},
        "coarsen": {"to": "P1D", "sum": ["kwh"]},
    }
    if times is not None:
        privacy["coarsen"]["time"] = {"field": "t"}
    policy = policy_of(tmp_path, privacy)
    record = raw({"kwh": [1.0, 2.0], "t": ["2025-01-13T08:00:00Z", "not a time"]})
    with pytest.raises(TransformError) as caught:
        anonymise(record, policy, pseudonymiser())
    assert caught.value.reason == reason
    assert "not a time" not in str(caught.value)
