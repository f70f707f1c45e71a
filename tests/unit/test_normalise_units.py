"""The unit table: every admitted unit converts within its dimension, and only there."""

from __future__ import annotations

import itertools
import math

import pytest

from services.normalise.units import (
    BY_SYMBOL,
    INTEGRATES_TO,
    UNITS,
    IncompatibleUnit,
    conversion,
    find_unit,
)
from services.normalise.vocabulary import load_vocabulary


def convert(value: float, source: str, target: str, *, integrate_s: float | None = None) -> float:
    conv = conversion(find_unit(source), find_unit(target), integrate=integrate_s is not None)
    out = value * conv.scale + conv.offset
    return out * integrate_s / 3600 if integrate_s is not None else out


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (183, "Wh", "kWh", 0.183),
        (0.183, "KWH", "WHR", 183),
        (1.5, "MWh", "kWh", 1500),
        (3.6e6, "J", "kWh", 1),
        (1, "MJ", "kWh", 1 / 3.6),
        (1840, "W", "kW", 1.84),
        (2.5, "MW", "KWT", 2500),
        (13201.4, "VA", "kVA", 13.2014),
        (-2612.6, "D44", "kvar", -2.6126),
        (20490.3392, "K3", "kvarh", 20490.3392),
        (191051, "LTR", "m3", 191.051),
        (620, "E32", "m3/h", 0.62),
        (1, "L/min", "m3/h", 0.06),
        (69, "GQ", "µg/m3", 69),
        (0.5, "GP", "µg/m3", 500),
        (400, "59", "ppm", 400),
        (20, "CEL", "°C", 20),
        (293.15, "KEL", "°C", 20),
        (68, "FAH", "°C", 20),
        (1013.25, "A97", "Pa", 101325),
        (1013.25, "MBR", "hPa", 1013.25),
        (76, "P1", "1", 0.76),
        (0.54, "C62", "%", 54),
        (36, "KMH", "m/s", 10),
        (10, "MTS", "km/h", 36),
        (1, "L/m2", "mm", 1),
        (20, "CMT", "m", 0.2),
    ],
)
def test_conversions(value, source, target, expected):
    assert convert(value, source, target) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_average_power_over_a_step_integrates_into_energy():
    assert convert(1.098, "kW", "kWh", integrate_s=600) == pytest.approx(0.183)
    assert convert(1098, "W", "Wh", integrate_s=600) == pytest.approx(183)
    assert convert(6, "m3/h", "m3", integrate_s=600) == pytest.approx(1)
    with pytest.raises(IncompatibleUnit):
        conversion(find_unit("kWh"), find_unit("kWh"), integrate=True)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("kW", "kWh"),
        ("kWh", "kW"),
        ("ppm", "µg/m3"),
        ("%", "count"),
        ("°C", "K" + "W"),
        ("m3", "kWh"),
    ],
)
def test_incompatible_units_are_refused(source, target):
    with pytest.raises(IncompatibleUnit) as error:
        conversion(find_unit(source), find_unit(target))
    assert error.value.reason == "incompatible-unit"


def test_every_unit_round_trips_within_its_dimension():
    by_dimension = {}
    for unit in UNITS:
        by_dimension.setdefault(unit.dimension, []).append(unit)
    for units in by_dimension.values():
        for a, b in itertools.product(units, repeat=2):
            there = conversion(a, b)
            back = conversion(b, a)
            value = 123.456
            assert math.isclose(
                (value * there.scale + there.offset) * back.scale + back.offset,
                value,
                rel_tol=1e-12,
            ), (a.symbol, b.symbol)


def test_names_are_unique_and_codes_found():
    assert find_unit("KWH") is BY_SYMBOL["kWh"]
    assert find_unit("µg/m³") is find_unit("ug/m3") is BY_SYMBOL["µg/m3"]
    assert find_unit(" kWh ") is BY_SYMBOL["kWh"]
    assert find_unit("furlong/fortnight") is None
    assert set(INTEGRATES_TO.values()) <= {u.dimension for u in UNITS}


def test_every_canonical_unit_of_the_vocabulary_is_in_the_table():
    vocabulary = load_vocabulary()
    for metric in vocabulary.metrics.values():
        assert BY_SYMBOL[metric.unit.symbol] is metric.unit
        for entry in metric.sdm:
            assert entry.unit.dimension in (metric.unit.dimension, *INTEGRATES_TO)
