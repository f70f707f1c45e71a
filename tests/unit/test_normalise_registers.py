"""Register plausibility: a register that goes down is a rollover only if the energy
the wrap implies is possible for the meter (its cut-off power, or the vocabulary's
largest rate); otherwise the meter was replaced or reset: no energy invented, no
measured zero, the interval unknown and the restart flagged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from services.normalise import quality
from services.normalise.registers import describe
from services.normalise.vocabulary import load_vocabulary
from services.runtime.errors import ConfigError
from testkit.normalise import (
    LINKY,
    MIN10,
    T0,
    Run,
    city_file,
    column,
    linky,
    normaliser,
    points,
)

KEY = "testville|m1|active_energy_import"


def source(source_id: str, rollover: int, **measure) -> dict:
    """The Linky source of the helpers with another register range (and options)."""
    out = copy.deepcopy(LINKY)
    out["id"] = source_id
    out["mapping"]["measures"]["EAST"].update(rollover=rollover, **measure)
    return out


@pytest.fixture()
def run(tmp_path: Path) -> Run:
    # 9 digits (wraps at 10^9 Wh), and 8 digits
    return Run(normaliser(city_file(tmp_path, "testville", [LINKY, source("linky8", 10**8)])))


@pytest.fixture()
def run_pcoup(tmp_path: Path) -> Run:
    """8 digits, and the meter's cut-off power (Linky PCOUP, kVA) in every frame."""
    pcoup = source("linky-pcoup", 10**8, max_rate={"field": "PCOUP", "unit": "kVA"})
    return Run(normaliser(city_file(tmp_path, "testville", [source("linky8", 10**8), pcoup])))


def frames(registers: list[int], source_id: str = "linky", first: int = 0, **columns) -> dict:
    rec = linky(registers, first)
    rec["source"] = source_id
    for name, values in columns.items():
        rec["columns"].append(column(name, values))
    return rec


def energy(observations: list[dict]) -> dict[int, tuple[float, list[str]]]:
    return {t: (v, quality.names(q)) for (_, _, t), (v, _, q) in points(observations).items()}


def test_a_meter_replacement_invents_no_energy_and_is_flagged(run: Run):
    # an 8-digit register at 99,000,000 Wh, then a new meter starting at 1,000 Wh:
    # taken modulo 10^8 it would be 1,001 kWh in ten minutes (6 MW for a home)
    out = energy(run(frames([98_999_900, 99_000_000, 1_000, 1_100], "linky8")))
    assert out == {
        T0: (0.1, []),
        # T0 + 10 min: unknown (the old meter's last and the new one's first kWh), not 0
        T0 + 2 * MIN10: (0.1, ["register-restarted"]),
    }
    assert run.dropped["register-restarted"] == 1
    assert run.state[KEY]["reg"] == [T0 + 3 * MIN10, pytest.approx(1.1)]


def test_above_half_a_nine_digit_range_a_replacement_is_not_a_wrap(run: Run):
    out = energy(run(frames([990_000_000, 1_000, 1_100])))  # a wrap: 10,001 kWh in 10 min
    assert out == {T0 + MIN10: (0.1, ["register-restarted"])}
    assert sum(v for v, _ in out.values()) == pytest.approx(0.1)


def test_a_genuine_rollover_at_a_plausible_power_still_counts(run_pcoup: Run):
    run = run_pcoup
    # 800 Wh in 10 minutes across the wrap: 4.8 kW, under the meter's 12 kVA cut-off
    out = energy(run(frames([99_999_500, 300], "linky-pcoup", PCOUP=["12", "12"])))
    assert out == {T0: (0.8, ["counter-rollover"])}
    assert run.state[KEY]["rate"] == 12.0  # kept per meter (kWh per hour)


def test_the_meters_cut_off_power_decides_where_the_vocabulary_would_not(run_pcoup: Run):
    run = run_pcoup
    # 11 kWh in 10 minutes across the wrap (66 kW): possible for the vocabulary's
    # largest delivery point, not for this 12 kVA meter
    assert energy(run(frames([99_990_000, 1_000], "linky8"))) == {T0: (11.0, ["counter-rollover"])}
    run.state.clear()
    first = run(frames([99_980_000, 99_990_000], "linky-pcoup", PCOUP=["12", "12"]))
    assert energy(first) == {T0: (10.0, [])}  # (a 60 kW interval: rises are not judged)
    # the next record has no PCOUP: the remembered one applies
    assert run(frames([1_000], "linky-pcoup", first=2)) == []
    assert run.dropped["register-restarted"] == 1
    # the restart ended the record: the next record's first interval is flagged
    out = energy(run(frames([1_100, 1_200], "linky-pcoup", first=3)))
    assert out == {T0 + 2 * MIN10: (0.1, ["register-restarted"]), T0 + 3 * MIN10: (0.1, [])}
    assert "restarted" not in run.state[KEY]


def test_a_counter_reset_yields_no_measured_zero(run: Run):
    out = run(frames([5000, 5100, 20, 120]))
    found = energy(out)
    assert T0 + MIN10 not in found  # the reset's interval: unknown, not a measured 0 kWh
    assert found == {T0: (0.1, []), T0 + 2 * MIN10: (0.1, ["register-restarted"])}
    assert all(o["values"] and min(o["values"]) > 0 for o in out)


def test_max_rate_is_checked_at_start(tmp_path: Path):
    bad = [
        ({"max_rate": {"field": "PCOUP", "unit": "°C"}}, "max_rate.unit"),
        ({"max_rate": {"field": "PCOUP", "value": 9, "unit": "kVA"}}, "max_rate"),
        ({"max_rate": {"value": -1, "unit": "kW"}}, "max_rate.value"),
    ]
    for options, key in bad:
        city = city_file(tmp_path, "testville", [source("x", 10**8, **options)])
        with pytest.raises(ConfigError) as caught:
            normaliser(city)
        assert caught.value.key.endswith(key), caught.value


def test_the_vocabulary_bounds_every_register_metric():
    rates = load_vocabulary().max_rates
    assert rates["active_energy_import"] == 250  # kW
    assert rates["water_volume"] == 100  # m3/h


def test_the_configuration_check_says_what_decides_a_drop(tmp_path: Path):
    pcoup = source("p", 10**8, max_rate={"field": "PCOUP", "unit": "kVA"})
    norm = normaliser(city_file(tmp_path, "testville", [pcoup, source("v", 10**9)]))
    said = {
        key[1]: describe(mapping.measures[0], norm.vocabulary.max_rates)
        for key, mapping in norm.mappings.items()
    }
    assert said == {
        "p": "; wraps at 100,000,000, max rate PCOUP (kVA) per meter, else 250 kWh/h",
        "v": "; wraps at 1,000,000,000, max rate 250 kWh/h (vocabulary)",
    }
