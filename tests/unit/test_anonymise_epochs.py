"""Exact meter counts across pseudonym epochs: the epoch of a row is the city's
local month (Europe/Paris here) of the reading's own time, so a day re-sent in the
next month keeps its pseudonyms, and the first local day of a month (which starts
in the previous UTC month) has one pseudonym per meter.

The attacker's view: energy-analytics counts delivery points per cell and day by
pseudonym. When the epoch came from ``received_at``, a day of 5 meters sent in
January and corrected in February was counted as 10 meters with twice the
energy — over the threshold of 10 that should have withheld it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.anonymise import columns
from services.anonymise.epochs import reading_times, row_epochs, split_by_epoch
from services.anonymise.policy import Policy, PolicySet
from services.anonymise.stage import AnonymiseStage
from services.energy.windows import (
    apply_meter_change,
    empty_cell_day,
    merge_pieces,
    pieces_by_day,
)
from services.ingest.records import to_column
from services.privacy.keys import KeyStore
from services.runtime import localday
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import InputMeta
from testkit.anonymise import policy_of, raw, values_of
from testkit.fixture_secrets import fixture_secret

US = 1_000_000
STEP = 600  # 10-minute readings
META = InputMeta("raw.v1", 0, 0, b"testville|meters|x", 0)
METERS = [f"0451234567{k:04d}" for k in range(5)]


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * US


PARIS = "Europe/Paris"
DAY = at(2025, 1, 29, 23)  # the day every test re-sends: 30 January in Paris
JANUARY_SEND, FEBRUARY_SEND = at(2025, 1, 31, 6), at(2025, 2, 2, 6)

PRIVACY = {
    "version": "1",
    "consent": True,  # 10-minute curves kept: the rows are the readings
    "fields": {"meter": "identifier", "debut": "measure", "kwh": "measure", "iris": "measure"},
}
MAPPING = {"time": {"field": "debut", "format": "epoch_s"}, "step": {"seconds": STEP}}


@pytest.fixture()
def policy(tmp_path: Path) -> Policy:
    return policy_of(tmp_path, PRIVACY, mapping=MAPPING)


@pytest.fixture()
def stage(policy: Policy, tmp_path: Path) -> AnonymiseStage:
    keys = KeyStore(
        tmp_path, environ={"CITEPLUS_PSEUDONYM_SECRET_TESTVILLE": fixture_secret("epochs")}
    )
    return AnonymiseStage(PolicySet([policy]), keys, metrics=ServiceMetrics("anonymise"))


def readings(meter: str, start: int, count: int, kwh: float, received_at: int) -> dict[str, Any]:
    """One message of one meter: ``count`` readings from ``start``, time in a field
    (epoch seconds, as the Bordeaux meters send it), no event times."""
    return raw(
        {
            "meter": [meter] * count,
            "debut": [(start + k * STEP * US) // US for k in range(count)],
            "kwh": [kwh] * count,
            "iris": ["330630104"] * count,
        },
        entity=meter,
        received_at=received_at,
    )


def emitted(stage: AnonymiseStage, record: dict[str, Any]) -> list[dict[str, Any]]:
    return [emit.value for emit in stage.process(record, META)]


def observation(anonymised: dict[str, Any]) -> dict[str, Any]:
    """What energy-analytics reads of an anonymised meter message (normalise's output
    for this mapping: one series per message, 10-minute step, the message's pseudonym)."""
    return {
        "entity_pseudonym": anonymised["entity_pseudonym"],
        "start": values_of(anonymised, "debut")[0] * US,
        "step_seconds": STEP,
        "times": [],
        "values": values_of(anonymised, "kwh"),
    }


def energy_cells(observations: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Cell-days as energy-analytics builds them: per meter (pseudonym) and day, a
    re-sent reading replaces the one it overlaps; the cell counts meters by pseudonym."""
    meter_days: dict[tuple[str, int], list] = {}
    cells: dict[int, dict[str, Any]] = {}
    for record in observations:
        for day, pieces in pieces_by_day(record, PARIS).items():
            old = meter_days.get((record["entity_pseudonym"], day), [])
            merged, removed, added = merge_pieces(old, pieces)
            cell = cells.get(day) or empty_cell_day(
                len(range(day, localday.day_end(day, PARIS), 900 * US))
            )
            cells[day] = apply_meter_change(cell, old, merged, removed, added)
            meter_days[(record["entity_pseudonym"], day)] = merged
    return cells


# -- the attack ------------------------------------------------------------------------------
def test_a_day_resent_in_the_next_month_counts_each_meter_once(stage: AnonymiseStage) -> None:
    provisional = [emitted(stage, readings(m, DAY, 144, 0.10, JANUARY_SEND)) for m in METERS]
    corrected = [emitted(stage, readings(m, DAY, 144, 0.12, FEBRUARY_SEND)) for m in METERS]
    everything = [observation(r) for sent in (*provisional, *corrected) for r in sent]
    cell = energy_cells(everything)[DAY]
    assert cell["dn"] == 5  # was 10: each meter under two pseudonyms, over the threshold
    assert sum(cell["e"]) == pytest.approx(5 * 144 * 0.12)  # corrected, not added
    assert max(cell["n"]) == 5
    for first, again in zip(provisional, corrected, strict=True):
        [first_record], [again_record] = first, again
        assert first_record["entity_pseudonym"] == again_record["entity_pseudonym"]
        assert first_record["key_epoch"] == again_record["key_epoch"] == "2025-01"


def test_a_message_across_the_month_boundary_is_split_by_epoch(stage: AnonymiseStage) -> None:
    start = at(2025, 1, 31, 21)  # 4 hours: 12 readings in January, 12 in February (Paris)
    record = readings(METERS[0], start, 24, 0.1, FEBRUARY_SEND)
    record["columns"][2] = to_column("kwh", [None if k in (3, 15) else 0.1 * k for k in range(24)])
    january, february = emitted(stage, record)
    assert (january["key_epoch"], february["key_epoch"]) == ("2025-01", "2025-02")
    assert (january["row_count"], february["row_count"]) == (12, 12)
    # Each part carries its own rows, in order, the missing ones renumbered.
    assert values_of(january, "kwh")[:5] == [0.0, 0.1, 0.2, None, pytest.approx(0.4)]
    assert values_of(february, "kwh")[3] is None and values_of(february, "kwh")[4] == 1.6
    assert values_of(february, "debut")[0] * US == at(2025, 1, 31, 23)  # 1 February in Paris
    # Each part has the pseudonym any other message of its epoch gets.
    [in_january] = emitted(stage, readings(METERS[0], DAY, 3, 0.1, FEBRUARY_SEND))
    [in_february] = emitted(stage, readings(METERS[0], at(2025, 2, 10), 3, 0.1, JANUARY_SEND))
    assert january["entity_pseudonym"] == in_january["entity_pseudonym"]
    assert february["entity_pseudonym"] == in_february["entity_pseudonym"]
    assert january["entity_pseudonym"] != february["entity_pseudonym"]
    # One audit record per epoch, each counting its own rows.
    audits = {a.value["key_epoch"]: a.value for a in stage.end_batch()}
    assert audits["2025-01"]["rows"] == 12 + 3 and audits["2025-02"]["rows"] == 12 + 3
    assert audits["2025-01"]["records"] == audits["2025-02"]["records"] == 2


def test_the_reading_time_comes_from_event_times_without_a_mapping(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, PRIVACY)  # no mapping: the transport's event times
    times = [at(2025, 1, 31, 22, 50), at(2025, 1, 31, 23)]  # 23:50 Jan 31, 00:00 Feb 1 in Paris
    record = raw({"meter": ["m", "m"], "kwh": [1.0, 2.0]}, event_times=times)
    [(first, january), (second, february)] = split_by_epoch(record, policy)
    assert (first, second) == ("2025-01", "2025-02")
    assert january["event_times"] == times[:1] and february["event_times"] == times[1:]


def test_rows_without_a_time_take_the_epoch_of_their_reception(policy: Policy) -> None:
    record = readings("m", at(2025, 2, 1), 3, 0.1, JANUARY_SEND)
    record["columns"][1] = to_column("debut", ["not a time", None, at(2025, 2, 1) // US])
    assert reading_times(record, policy) == [None, None, at(2025, 2, 1)]
    parts = split_by_epoch(record, policy)
    assert [(epoch, part["row_count"]) for epoch, part in parts] == [
        ("2025-01", 2),
        ("2025-02", 1),
    ]
    assert row_epochs([None, None], JANUARY_SEND, timezone=PARIS) == "2025-01"


def test_a_record_in_one_epoch_is_not_copied(policy: Policy) -> None:
    record = readings("m", DAY, 144, 0.1, FEBRUARY_SEND)
    [(epoch, same)] = split_by_epoch(record, policy)
    assert epoch == "2025-01" and same is record


def test_a_coarsened_day_keeps_one_epoch_for_all_its_rows(tmp_path: Path) -> None:
    """Without consent the rows are summed per local day (Europe/Paris): the first
    hour of 1 February local time is 31 January in UTC, but the day is summed under
    one pseudonym — that of its month."""
    privacy = {
        **PRIVACY,
        "consent": False,
        "coarsen": {"to": "P1D", "sum": ["kwh"], "time": {"field": "debut", "format": "epoch_s"}},
    }
    policy = policy_of(tmp_path, privacy, mapping=MAPPING)
    start = at(2025, 1, 30, 23)  # local midnight of 31 January; two local days
    record = readings("m", start, 288, 0.1, JANUARY_SEND)
    parts = split_by_epoch(record, policy)
    assert [(epoch, part["row_count"]) for epoch, part in parts] == [
        ("2025-01", 144),
        ("2025-02", 144),
    ]
    february = parts[1][1]
    assert columns.cells(february["columns"][1])[0] * US == at(2025, 1, 31, 23)
    # The first local hour of 1 February alone: January in UTC, February's day.
    first_hour = readings("m", at(2025, 1, 31, 23), 6, 0.1, JANUARY_SEND)
    [(epoch, whole)] = split_by_epoch(first_hour, policy)
    assert epoch == "2025-02" and whole is first_hour


def test_a_bucketed_time_field_decides_by_its_bucket(tmp_path: Path) -> None:
    """normalise reads a time generalised to a day bucket as the bucket's start."""
    privacy = {
        **PRIVACY,
        "fields": {
            **PRIVACY["fields"],
            "debut": {"class": "quasi-identifier", "bucket": "P1D", "format": "epoch_s"},
        },
    }
    policy = policy_of(tmp_path, privacy, mapping=MAPPING)
    record = readings("m", at(2025, 2, 1, 0, 30), 1, 0.1, JANUARY_SEND)  # 01:30 in Paris
    # The bucket is the local day of 1 February, starting 31 January 23:00 UTC.
    assert reading_times(record, policy) == [at(2025, 1, 31, 23)]


@pytest.mark.parametrize("zone", [PARIS, "Pacific/Noumea", "America/Cayenne"])
def test_the_energy_days_never_straddle_an_epoch(zone: str) -> None:
    """Why local months: every local day (energy-analytics' day) lies in one local month."""
    from services.privacy.keys import epoch_of

    day = localday.day_start(at(2024, 1, 1), zone)
    while day < at(2026, 1, 1):
        end = localday.day_end(day, zone)
        assert epoch_of(day, zone) == epoch_of(end - 1, zone)
        day = end


def test_the_first_local_day_of_a_month_counts_each_meter_once(stage: AnonymiseStage) -> None:
    """1 February in Paris starts at 23:00 UTC on 31 January. With UTC-month epochs its
    first hour went under January's key and the rest under February's: each meter
    had two pseudonyms that day and was counted twice (5 meters published as 10)."""
    first = at(2025, 1, 31, 23)
    sent = []
    for m in METERS:  # one message per hour, as hourly pushes send it
        for hour in range(24):
            sent += emitted(stage, readings(m, first + hour * 6 * STEP * US, 6, 0.1, FEBRUARY_SEND))
    assert {r["key_epoch"] for r in sent} == {"2025-02"}
    for m_index in range(len(METERS)):
        mine = sent[m_index * 24 : (m_index + 1) * 24]
        assert len({r["entity_pseudonym"] for r in mine}) == 1
    cell = energy_cells([observation(r) for r in sent])[first]
    assert cell["dn"] == 5 and max(cell["n"]) == 5
    assert sum(cell["e"]) == pytest.approx(5 * 144 * 0.1)


def test_a_split_record_is_counted_only_once_every_part_was_encoded(
    stage: AnonymiseStage,
) -> None:
    """The runner encodes each output as it is yielded; if the second part cannot be
    encoded, the record goes to the dead letters and neither part may be audited."""
    record = readings(METERS[0], at(2025, 1, 31, 22), 24, 0.1, FEBRUARY_SEND)
    outputs = iter(stage.process(record, META))
    first, second = next(outputs), next(outputs)  # the second fails to encode: stop here
    assert (first.value["key_epoch"], second.value["key_epoch"]) == ("2025-01", "2025-02")
    assert list(stage.end_batch()) == []
    assert len(list(stage.process(record, META))) == 2  # all encoded: both parts counted
    assert sorted(a.value["key_epoch"] for a in stage.end_batch()) == ["2025-01", "2025-02"]
