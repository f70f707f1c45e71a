"""Event times that today's sources really send: the repeated autumn hour one row
per request, historique TIC frames without a time, and times no meter can have
(epoch seconds in a milliseconds field, year 0001 or 9999, before year 1)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.energy.stage import EnergyStage, EnergyTopics
from services.ingest.formats import linky
from services.ingest.records import raw_record
from services.normalise import quality
from services.normalise.main import check
from services.runtime.config import NodeConfig
from services.runtime.errors import RejectedInput
from services.runtime.processor import InputMeta
from testkit.energy import deliver, energy_observation
from testkit.normalise import Run, city_file, from_raw, normaliser, record

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "samples" / "linky-tic"
PARIS = ZoneInfo("Europe/Paris")
US = 1_000_000
HOUR_US = 3600 * US

HOURLY = {
    "id": "hourly",
    "format": "csv",
    "domain": "energy",
    "entity": "prm",
    "mapping": {
        "time": {"field": "horodate", "format": "%Y-%m-%d %H:%M:%S"},
        "step": {"seconds": 3600},
        "measures": {"kwh": {"metric": "active_energy_import", "unit": "kWh"}},
    },
}
AIR = {
    "id": "air",
    "format": "csv",
    "domain": "environment",
    "entity": "station",
    "mapping": {
        "time": {"field": "t", "format": "epoch_ms"},
        "measures": {"no2": {"metric": "no2", "unit": "µg/m3"}},
    },
}
TIC = {
    "id": "tic",
    "format": "linky-tic",
    "domain": "energy",
    "entity": "ADCO",
    "mapping": {
        "entity_type": "ElectricityMeter",
        "time": {"field": "DATE@time", "format": "linky"},  # standard frames only
        "measures": {
            "BASE": {"metric": "active_energy_import", "unit": "Wh", "kind": "cumulative"},
            "PAPP": {"metric": "apparent_power", "unit": "VA"},
        },
    },
}


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory):
    return city_file(
        tmp_path_factory.mktemp("city"), "testville", [dict(HOURLY), dict(AIR), dict(TIC)]
    )


def hourly(stamp: str, kwh: float, entity: str = "p1") -> dict:
    return record("testville", "hourly", {"horodate": [stamp], "kwh": [kwh]}, entity=entity)


# -- the repeated autumn hour, one row per request -----------------------------------------


def test_the_repeated_autumn_hour_sent_one_row_at_a_time_keeps_both_passes(city):
    run = Run(normaliser(city))
    walls = [f"2025-10-26 {h:02d}:00:00" for h in range(24)]
    walls.insert(3, "2025-10-26 02:00:00")  # the clock went back: 02:00 again
    out = []
    for k, wall in enumerate(walls):
        out += run(hourly(wall, 1.0 + k))
    times = [o["start"] for o in out]
    assert len(out) == 25 and len(set(times)) == 25  # a 25-hour day, every hour once
    first = datetime(2025, 10, 26, tzinfo=PARIS).timestamp() * US
    assert times == [int(first) + k * HOUR_US for k in range(25)]
    assert sum(v for o in out for v in o["values"]) == sum(1.0 + k for k in range(25))
    assert not any(o["quality"] for o in out)  # placed from the meter's own history
    assert "duplicate" not in run.dropped


def test_a_repeated_hour_with_nothing_before_it_stays_flagged_and_is_kept(city):
    run = Run(normaliser(city))
    [o] = run(hourly("2025-10-26 02:00:00", 1.0, entity="new"))
    assert quality.names(o["quality"][0]) == ["time-ambiguous"]
    assert o["start"] == int(datetime(2025, 10, 26, 0, tzinfo=UTC).timestamp() * US)


def test_a_repeated_time_elsewhere_is_a_correction(city):
    run = Run(normaliser(city))
    run(hourly("2025-11-26 10:00:00", 1.0))
    [o] = run(hourly("2025-11-26 10:00:00", 1.5))
    assert (o["values"], o["versions"], o["replaced"]) == ([1.5], [1], [1.0])


# -- historique TIC: the reception time is the event time ----------------------------------


def _frame(city, received_at: int) -> dict:
    source = city.source("tic")
    data = (FIXTURES / "enedis_tic2websocket_historique_base_1frame.txt").read_bytes()
    parsed = linky.parse(data, source)
    assert not parsed.rejected
    [entity] = parsed.entities
    assert entity.event_times_us == []  # no horodate in historique mode
    return from_raw(
        raw_record(entity, source, lineage_id=f"l{received_at}", received_at_us=received_at)
    )


def test_a_historique_frame_takes_its_reception_time_flagged(city):
    run = Run(normaliser(city))
    t1 = int(datetime(2025, 11, 22, 8, 0, tzinfo=UTC).timestamp() * US)
    t2 = t1 + 60 * US
    first = run(_frame(city, t1))
    second = run(_frame(city, t2))  # the same frame, received a minute later
    [current] = [o for o in first if o["metric"] == "apparent_power"]
    assert (current["start"], current["values"]) == (t1, [0.0])
    assert quality.names(current["quality"][0]) == ["time-from-reception"]
    by_metric = {o["metric"]: o for o in second}
    assert by_metric["apparent_power"]["start"] == t2  # a different reading, not a duplicate
    energy = by_metric["active_energy_import"]  # the register's interval between the two
    assert (energy["start"], energy["step_seconds"], energy["values"]) == (t1, 60, [0.0])
    assert quality.names(energy["quality"][0]) == ["time-from-reception"]
    assert not run.dropped


def test_the_configuration_check_says_historique_frames_use_the_reception_time(
    city, capsys: pytest.CaptureFixture[str]
):
    check(argparse.Namespace(cities=Path(city.path).parent))
    out = capsys.readouterr().out
    assert "testville/tic:" in out
    assert "historique-mode frames carry no horodate: their reception time" in out


# -- plausible times -----------------------------------------------------------------------


def _air(times: list[int], received_at: int) -> dict:
    return record(
        "testville",
        "air",
        {"t": times, "no2": [10.0 + k for k in range(len(times))]},
        entity="station-1",
        received_at=received_at,
    )


RECEIVED = int(datetime(2025, 11, 22, 12, tzinfo=UTC).timestamp() * US)
GOOD_MS = RECEIVED // 1000 - 3_600_000


@pytest.mark.parametrize(
    ("bad_ms", "what"),
    [
        (GOOD_MS // 1000, "epoch seconds in a milliseconds field: January 1970"),
        (253_402_214_400_000, "year 9999"),
        (-62_135_596_800_000, "year 0001"),
        (-62_135_596_800_000 - 86_400_000, "before year 1"),
        (GOOD_MS + 3 * 86_400_000, "three days after reception"),
    ],
)
def test_an_implausible_time_is_a_dead_letter_and_spares_its_neighbours(city, bad_ms, what):
    norm = normaliser(city)
    outcome = norm.normalise(_air([GOOD_MS, bad_ms, GOOD_MS + 60_000], RECEIVED), {}.get)
    assert [o["values"] for o in outcome.observations] == [[10.0, 12.0]], what
    assert outcome.dropped["time-implausible"] == 1
    [(reason, message)] = outcome.letters
    assert reason == "time-implausible"
    assert "row 2" in message and "not before 2000-01-01" in message


def test_a_record_of_implausible_times_only_is_rejected_whole(city):
    norm = normaliser(city)
    with pytest.raises(RejectedInput) as caught:
        norm.normalise(_air([GOOD_MS // 1000], RECEIVED), {}.get)
    assert caught.value.reason == "time-implausible"


def test_plausible_bounds_are_configurable_per_source(tmp_path: Path):
    source = {**AIR, "mapping": {**AIR["mapping"], "plausible_time": {"not_before": "1990-01-01"}}}
    norm = normaliser(city_file(tmp_path, "testville", [source]))
    old = int(datetime(1995, 6, 1, tzinfo=UTC).timestamp() * 1000)
    [o] = norm.normalise(_air([old], RECEIVED), {}.get).observations
    assert o["start"] == old * 1000


# -- energy-analytics: a time no window can hold is a dead letter, not a crash --------------


class _Contracts:
    def codec(self, topic: str):
        class _Codec:
            def encode(self, record: dict) -> bytes:
                return b"\x00\x00\x00\x00\x01"

        return _Codec()


@pytest.mark.parametrize(
    "start",
    [
        -62_135_596_800_000_000 - 86_400_000_000,  # the day before 0001-01-01
        253_402_300_800_000_000 - 600_000_000,  # 9999-12-31 23:50: its windows end in 10000
    ],
)
def test_energy_dead_letters_a_time_outside_the_calendar_and_aggregates_the_rest(start):
    topics = EnergyTopics()
    stage = EnergyStage(
        topics, node=NodeConfig(), contracts=_Contracts(), clock=lambda: 0, partitions=1
    )
    good = energy_observation("m1", "Z1", 1_763_769_600_000_000, [0.1] * 4)
    bad = energy_observation("m2", "Z1", start, [0.1] * 4)
    with pytest.raises(RejectedInput) as caught:
        list(stage.process(bad, InputMeta(topics.observations, 0, 1, b"k", 0)))
    assert caught.value.reason == "time-implausible"
    stage.on_record_failed()
    [regrouped] = stage.process(good, InputMeta(topics.observations, 0, 2, b"k", 0))
    deliver(stage, regrouped, InputMeta(topics.regrouped, 0, 3, b"k|0", 0))
    emitted = list(stage.end_batch())  # the batch goes on with its good record
    assert any(e.topic == topics.aggregates for e in emitted)
