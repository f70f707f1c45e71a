"""The normalise transform on AnonymisedRecord dicts: registers, duplicates, units,
series shapes, rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.normalise import memory, quality
from services.runtime.errors import RejectedInput
from testkit.normalise import (
    CURVES,
    LINKY,
    MIN10,
    T0,
    Run,
    city_file,
    curves,
    linky,
    normaliser,
    points,
    record,
)

POWER = {
    "id": "power",
    "format": "csv",
    "domain": "energy",
    "entity": "pdl",
    "mapping": {
        "time": {"field": "debut", "format": "iso8601"},
        "step": {"field": "pas_minutes", "format": "minutes"},
        "measures": {"kw": {"metric": "active_energy_import", "unit": "kW", "kind": "average"}},
    },
}
AIR = {
    "id": "air",
    "format": "csv",
    "domain": "environment",
    "entity": "station",
    "mapping": {
        "time": {"field": "t", "format": "epoch_s"},
        "measures": {
            "no2": {"metric": "no2", "unit": "µg/m3"},
            "temp": {"metric": "air_temperature", "unit": "K"},
        },
    },
}


@pytest.fixture()
def run(tmp_path: Path) -> Run:
    city = city_file(tmp_path, "testville", [LINKY, CURVES, POWER, AIR])
    return Run(normaliser(city))


def test_register_differences_become_interval_consumption(run: Run):
    out = run(linky([1000, 1183, 1400, 1400]))
    assert len(out) == 1
    o = out[0]
    assert (o["start"], o["step_seconds"], o["values"]) == (T0, 600, [0.183, 0.217, 0.0])
    assert (o["metric"], o["unit"], o["zone"], o["sector"]) == (
        "active_energy_import",
        "kWh",
        "693810202",
        "residential",
    )
    assert o["entity_type"] == "ElectricityMeter" and o["carrier"] == "electricity"
    assert run.state["testville|m1|active_energy_import"]["reg"][1] == pytest.approx(1.4)
    # the next record continues from the last reading: no interval lost between records
    out = run(linky([1500, 1600], first=4))
    assert (out[0]["start"], out[0]["values"]) == (T0 + 3 * MIN10, [0.1, 0.1])


def test_first_reading_of_an_entity_only_sets_the_register(run: Run):
    assert run(linky([5000])) == []
    assert run.state["testville|m1|active_energy_import"]["reg"] == [T0, 5.0]


def test_counter_reset_is_flagged_never_negative(run: Run):
    out = run(linky([5000, 5100, 20, 120]))
    found = points(out)
    # the reset's interval is unknown: not published (no longer a measured 0 kWh)
    assert sorted(found) == [("m1", "active_energy_import", T0 + k * MIN10) for k in (0, 2)]
    values = [found[("m1", "active_energy_import", T0 + k * MIN10)] for k in (0, 2)]
    assert [v for v, _, _ in values] == [0.1, 0.1]
    assert quality.names(values[1][2]) == ["register-restarted"]
    assert all(v >= 0 for o in out for v in o["values"])


def test_register_rollover_is_taken_modulo(run: Run):
    out = run(linky([999_999_900, 1_000_000_050]))  # rendered as 999999900, 000000050
    assert out[0]["values"] == [0.15]
    assert quality.names(out[0]["quality"][0]) == ["counter-rollover"]


def test_stale_and_replayed_register_readings_are_dropped(run: Run):
    run(linky([1000, 1100, 1200]))
    assert run(linky([1000, 1100, 1200])) == []  # a replay
    assert run.dropped["stale-register"] == 3
    out = run(linky([1100, 1200, 1300], first=1))  # overlaps: only the new reading counts
    assert points(out) == {("m1", "active_energy_import", T0 + 2 * MIN10): (0.1, 600, 0)}


def test_a_gap_between_readings_is_its_own_interval(run: Run):
    record_ = linky([1000, 1100, 1200])
    # drop the middle frame: the interval then lasts 20 minutes
    for c in record_["columns"]:
        for array in ("strings",):
            c[array] = [c[array][0], c[array][2]]
    record_["row_count"] = 2
    out = run(record_)
    assert [(o["start"], o["step_seconds"], o["values"]) for o in out] == [(T0, 1200, [0.2])]


def test_a_day_of_interval_energy_is_one_regular_series(run: Run):
    out = run(curves([0.1] * 144))
    assert len(out) == 1
    assert (out[0]["start"], out[0]["step_seconds"], len(out[0]["values"])) == (T0, 600, 144)
    assert out[0]["times"] == [] and out[0]["quality"] == []


def test_duplicates_are_dropped_on_replay_and_overlap(run: Run):
    run(curves([0.1] * 144))
    assert run(curves([0.1] * 144)) == []
    assert run.dropped["duplicate"] == 144
    # an overlapping delivery: the 6 new intervals are published; the 6 overlapping ones
    # carry other values, so they are corrections (versioned readings), not duplicates
    out = run(curves([0.2] * 12, start="2025-01-13 23:00:00"))
    assert [(o["start"], len(o["values"]), o.get("versions")) for o in out] == [
        (T0 + 138 * MIN10, 6, [1] * 6),
        (T0 + 144 * MIN10, 6, None),
    ]
    assert out[0]["replaced"] == [0.1] * 6
    assert run(curves([0.2] * 12, start="2025-01-13 23:00:00")) == []  # now a replay


def test_late_data_filling_a_gap_is_accepted_once(run: Run):
    run(curves([0.1] * 6, start="2025-01-13 00:00:00"))
    run(curves([0.1] * 6, start="2025-01-13 02:00:00"))
    out = run(curves([0.3] * 6, start="2025-01-13 01:00:00"))  # the missing hour, late
    assert [(o["start"], len(o["values"])) for o in out] == [(T0 + 6 * MIN10, 6)]
    assert run(curves([0.3] * 6, start="2025-01-13 01:00:00")) == []


def test_duplicate_rows_within_a_record_count_once(run: Run):
    rec = curves([0.1, 0.2, 0.3])
    for c in rec["columns"]:  # the second row again at the end
        array = {"string": "strings", "double": "doubles"}[c["kind"]]
        c[array] = [*c[array], c[array][1]]
    rec["row_count"] = 4
    out = run(rec)
    assert points(out)[("p1", "active_energy_import", T0 + MIN10)][0] == 0.2
    assert sum(len(o["values"]) for o in out) == 3
    assert run.dropped["duplicate"] == 1


def test_per_row_units_are_converted(run: Run):
    out = run(curves([0.1, 200, 0.0003], unit=["kWh", "Wh", "MWh"]))
    assert out[0]["values"] == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    ("unit", "reason"),
    [("kW", "incompatible-unit"), ("µg/m3", "incompatible-unit"), ("furlongs", "unknown-unit")],
)
def test_a_value_in_an_incompatible_unit_is_a_dead_letter(run: Run, unit, reason):
    # the attribute is set aside with its reason (the stage writes its dead letter)
    outcome = run.norm.normalise(curves([0.1, 0.2], unit=["kWh", unit]), {}.get)
    [reject] = outcome.rejected
    assert (reject.attribute, reject.reason) == ("kwh", reason)
    assert unit in reject.message
    assert outcome.observations == [] and outcome.states == {}


def test_average_power_becomes_energy(run: Run):
    rec = record(
        "testville",
        "power",
        {
            "debut": [
                "2025-01-12T23:00:00+00:00",
                "2025-01-12T23:10:00+00:00",
                "2025-01-12T23:30:00+00:00",
            ],
            "pas_minutes": ["10", "10", "30"],
            "kw": [1.098, 0.6, 2.0],
        },
    )
    out = run(rec)
    assert [(o["start"], o["step_seconds"], o["values"]) for o in out] == [
        (T0, 600, [0.183, 0.1]),
        (T0 + 3 * MIN10, 1800, [1.0]),
    ]


def test_instant_metrics_regular_or_irregular(run: Run):
    out = run(
        record(
            "testville",
            "air",
            {
                "t": [1736722800, 1736726400, 1736730000],
                "no2": [40, 41, 42],
                "temp": [273.15, 274.15, None],
            },
        )
    )
    by_metric = {o["metric"]: o for o in out}
    assert (by_metric["no2"]["step_seconds"], by_metric["no2"]["values"]) == (
        3600,
        [40.0, 41.0, 42.0],
    )
    assert by_metric["air_temperature"]["values"] == [0.0, 1.0]
    assert by_metric["air_temperature"]["unit"] == "°C"
    out = run(
        record("testville", "air", {"t": [1736740800, 1736740860], "no2": [1, 2]}, entity="s2")
    )
    assert run(
        record(
            "testville",
            "air",
            {"t": [1736740800, 1736741000, 1736742000], "no2": [1, 2, 3]},
            entity="s3",
        )
    )[0]["times"] == [
        1736740800_000000,
        1736741000_000000,
        1736742000_000000,
    ]


def test_out_of_range_values_are_flagged(run: Run):
    out = run(curves([0.1, -0.5, 0.2]))
    assert out[0]["values"] == [0.1, 0.0, 0.2]
    assert quality.names(out[0]["quality"][1]) == ["out-of-range"]


def test_invalid_times_are_dropped_and_counted(run: Run):
    rec = curves([0.1, 0.2, 0.3])
    stamps = next(c for c in rec["columns"] if c["name"] == "horodate")
    stamps["strings"][1] = "2025-13-45 00:00:00"
    out = run(rec)
    assert sum(len(o["values"]) for o in out) == 2
    assert run.dropped["time-invalid"] == 1


def test_rejections_name_the_problem(run: Run):
    with pytest.raises(RejectedInput) as error:
        run(record("testville", "nowhere", {"x": [1]}))
    assert error.value.reason == "unmapped-source"
    with pytest.raises(RejectedInput) as error:
        run(record("testville", "curves", {"horodate": ["2025-01-13 00:00:00"]}))
    assert error.value.reason == "no-measure" and "kwh" in str(error.value)
    with pytest.raises(RejectedInput) as error:
        rec = curves([0.1])
        next(c for c in rec["columns"] if c["name"] == "secteur")["strings"] = ["agricole"]
        run(rec)
    assert error.value.reason == "unknown-sector"


def coarsened(values: list[float], starts: list[int], lineage: str) -> dict:
    rec = curves(values, lineage=lineage)
    rec["event_times"] = starts
    rec["attributes"] = {"anonymise.coarsened": "PT1H"}
    return rec


def test_coarsened_buckets_split_over_two_batches_are_both_published(run: Run):
    hour = 6 * MIN10
    out = run(coarsened([0.5, 0.6], [T0, T0 + hour], lineage="batch-1"))
    assert (out[0]["start"], out[0]["step_seconds"], out[0]["values"]) == (T0, 3600, [0.5, 0.6])
    # the rest of the second hour came in the next batch: a second partial sum
    out = run(coarsened([0.1, 0.7], [T0 + hour, T0 + 2 * hour], lineage="batch-2"))
    assert (out[0]["start"], out[0]["values"]) == (T0 + hour, [0.1, 0.7])
    # replays of either batch publish nothing
    assert run(coarsened([0.1, 0.7], [T0 + hour, T0 + 2 * hour], lineage="batch-2")) == []
    assert run(coarsened([0.5, 0.6], [T0, T0 + hour], lineage="batch-1")) == []


def test_a_day_re_sent_with_another_lineage_is_a_duplicate(run: Run):
    def day(value: float, start: int, lineage: str) -> dict:
        rec = coarsened([value], [start], lineage)
        rec["attributes"]["anonymise.coarsened"] = "P1D"
        return rec

    assert run(day(12.5, T0, "push-1"))[0]["values"] == [12.5]
    # the same day pushed again without a key: another lineage, the same content
    assert run(day(12.5, T0, "push-2")) == []
    assert run.dropped["duplicate"] == 1
    # the next day may well have the same value: it is another day
    tomorrow = T0 + 24 * 6 * 6 * MIN10
    assert run(day(12.5, tomorrow, "push-3"))[0]["start"] == tomorrow
    assert run(day(12.5, tomorrow, "push-4")) == [] and run(day(12.5, T0, "push-5")) == []


@pytest.mark.parametrize(
    ("midnight", "hours"),
    [
        (1_761_429_600_000_000, 25),  # 2025-10-26 00:00 Paris: the autumn day
        (1_743_289_200_000_000, 23),  # 2025-03-30 00:00 Paris: the spring day
        (T0, 24),
    ],
)
def test_coarsened_days_last_a_local_day(run: Run, midnight, hours):
    rec = coarsened([1.0], [midnight], "c")
    rec["attributes"]["anonymise.coarsened"] = "P1D"
    out = run(rec)
    assert (out[0]["start"], out[0]["step_seconds"]) == (midnight, hours * 3600)


def test_memory_runs_window_and_floor():
    state = memory.remember(None, [0, 10, 20, 30])
    assert state["runs"] == [[0, 10, 4]] and state["hwm"] == 30
    assert memory.seen(state, [10, 35, 40])[0] == [True, False, False]
    state = memory.remember(state, [50, 60])  # a gap: a second run
    assert state["runs"] == [[0, 10, 4], [50, 10, 2]]
    assert memory.seen(state, [40])[0] == [False]  # the gap is still open
    state = memory.remember(state, [40])
    assert memory.seen(state, [40])[0] == [True]
    # forgetting old runs raises the floor: older times are too late to check
    state = memory.remember(state, [10_000], window_us=100)
    assert state["floor"] == 61 and memory.seen(state, [45, 9_950]) == ([True, False], 1)
    many = memory.remember(None, list(range(0, 200, 2)), max_runs=64)
    many = memory.remember(many, [1_000 + 3 * k * k for k in range(100)], max_runs=8)
    assert len(many["runs"]) <= 8 and many["floor"] > 0
