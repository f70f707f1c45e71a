"""Every unit the vocabulary admits: its dimension, its factor to the dimension's
base unit, and the names sources use for it (symbols, UN/CEFACT common codes as
in NGSI ``unitCode``, spellings seen in exports).

One table for two readers, so it lives below both: normalise converts source
values with it, the common API names each canonical unit by its UN/CEFACT code.
A complete table rather than a unit library: the vocabulary is closed and every
entry is checked by a test.

Rates are per hour (W, m3/h), so a rate averaged over a step of ``s`` seconds
integrates into its quantity (Wh, m3) by ``s / 3600``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """``canonical = value * factor + offset`` in the base unit of ``dimension``."""

    symbol: str
    dimension: str
    factor: float
    offset: float = 0.0
    codes: tuple[str, ...] = ()  # UN/CEFACT common codes (NGSI unitCode)
    aliases: tuple[str, ...] = ()
    name: str = ""


def _u(symbol, dimension, factor, codes=(), aliases=(), name="", offset=0.0) -> Unit:
    return Unit(symbol, dimension, factor, offset, tuple(codes), tuple(aliases), name)


# Base units: energy Wh, power W (per-hour rates integrate to Wh), volume m3,
# volume_flow m3/h, temperature °C, length m, speed m/s, pressure Pa, ratio 1.
UNITS: tuple[Unit, ...] = (
    # active energy and power
    _u("Wh", "energy", 1.0, ["WHR"], ["wh", "W.h"], "watt hour"),
    _u("kWh", "energy", 1e3, ["KWH"], ["kwh", "KWh", "kWH", "kW.h"], "kilowatt hour"),
    _u("MWh", "energy", 1e6, ["MWH"], ["MW.h"], "megawatt hour"),
    _u("GWh", "energy", 1e9, ["GWH"], [], "gigawatt hour"),
    _u("J", "energy", 1 / 3600, ["JOU"], [], "joule"),
    _u("kJ", "energy", 1 / 3.6, ["KJO"], [], "kilojoule"),
    _u("MJ", "energy", 1e3 / 3.6, ["3B"], [], "megajoule"),
    _u("W", "power", 1.0, ["WTT"], ["w"], "watt"),
    _u("kW", "power", 1e3, ["KWT"], ["kw", "KW"], "kilowatt"),
    _u("MW", "power", 1e6, ["MAW"], [], "megawatt"),
    # apparent and reactive energy and power
    _u("VA", "apparent_power", 1.0, ["D46"], ["va"], "volt-ampere"),
    _u("kVA", "apparent_power", 1e3, ["KVA"], ["kva", "KVA"], "kilovolt-ampere"),
    _u("MVA", "apparent_power", 1e6, ["MVA"], [], "megavolt-ampere"),
    _u("VAh", "apparent_energy", 1.0, [], ["vah"], "volt-ampere hour"),
    _u("kVAh", "apparent_energy", 1e3, [], ["kvah", "KVAh"], "kilovolt-ampere hour"),
    _u("var", "reactive_power", 1.0, ["D44"], ["VAr", "VAR"], "var"),
    _u("kvar", "reactive_power", 1e3, ["KVR"], ["kVAr", "kVAR", "KVAR"], "kilovar"),
    _u("varh", "reactive_energy", 1.0, [], ["VArh"], "var hour"),
    _u("kvarh", "reactive_energy", 1e3, ["K3"], ["kVArh", "kVARh", "KVARH"], "kilovar hour"),
    # electrical quantities
    _u("V", "voltage", 1.0, ["VLT"], [], "volt"),
    _u("kV", "voltage", 1e3, ["KVT"], [], "kilovolt"),
    _u("A", "current", 1.0, ["AMP"], [], "ampere"),
    _u("mA", "current", 1e-3, ["4K"], [], "milliampere"),
    _u("Hz", "frequency", 1.0, ["HTZ"], ["hz"], "hertz"),
    # water
    _u("m3", "volume", 1.0, ["MTQ"], ["m³", "m^3"], "cubic metre"),
    _u("L", "volume", 1e-3, ["LTR"], ["l", "litre", "liter"], "litre"),
    _u("hL", "volume", 1e-1, ["HLT"], ["hl"], "hectolitre"),
    _u("mL", "volume", 1e-6, ["MLT"], ["ml"], "millilitre"),
    _u("m3/h", "volume_flow", 1.0, ["MQH"], ["m³/h"], "cubic metre per hour"),
    _u("m3/s", "volume_flow", 3600.0, ["MQS"], ["m³/s"], "cubic metre per second"),
    _u("L/h", "volume_flow", 1e-3, ["E32"], ["l/h"], "litre per hour"),
    _u("L/min", "volume_flow", 0.06, ["L2"], ["l/min"], "litre per minute"),
    # air
    _u(
        "µg/m3",
        "mass_concentration",
        1.0,
        ["GQ"],
        ["μg/m3", "ug/m3", "µg/m³", "μg/m³"],
        "microgram per cubic metre",
    ),
    _u("mg/m3", "mass_concentration", 1e3, ["GP"], ["mg/m³"], "milligram per cubic metre"),
    _u("ppm", "mixing_ratio", 1.0, ["59"], [], "part per million"),
    _u("ppb", "mixing_ratio", 1e-3, ["61"], [], "part per billion"),
    # weather
    _u("°C", "temperature", 1.0, ["CEL"], ["degC", "℃"], "degree Celsius"),
    _u("K", "temperature", 1.0, ["KEL"], [], "kelvin", offset=-273.15),
    _u("°F", "temperature", 5 / 9, ["FAH"], ["degF"], "degree Fahrenheit", offset=-160 / 9),
    _u("hPa", "pressure", 100.0, ["A97"], ["hpa"], "hectopascal"),
    _u("Pa", "pressure", 1.0, ["PAL"], [], "pascal"),
    _u("kPa", "pressure", 1e3, ["KPA"], [], "kilopascal"),
    _u("mbar", "pressure", 100.0, ["MBR"], [], "millibar"),
    _u("bar", "pressure", 1e5, ["BAR"], [], "bar"),
    _u("W/m2", "irradiance", 1.0, ["D54"], ["W/m²"], "watt per square metre"),
    _u("lx", "illuminance", 1.0, ["LUX"], ["lux", "LX"], "lux"),
    _u("°", "angle", 1.0, ["DD"], ["deg", "degree"], "degree (angle)"),
    # lengths (precipitation: 1 L/m2 = 1 mm)
    _u("m", "length", 1.0, ["MTR"], [], "metre"),
    _u("km", "length", 1e3, ["KMT"], [], "kilometre"),
    _u("cm", "length", 1e-2, ["CMT"], [], "centimetre"),
    _u("mm", "length", 1e-3, ["MMT"], ["L/m2", "l/m2", "L/m²"], "millimetre"),
    # mobility
    _u("km/h", "speed", 1 / 3.6, ["KMH"], ["kmh", "km/hr"], "kilometre per hour"),
    _u("m/s", "speed", 1.0, ["MTS"], [], "metre per second"),
    _u("s", "duration", 1.0, ["SEC"], [], "second"),
    _u("min", "duration", 60.0, ["MIN"], [], "minute"),
    _u("h", "duration", 3600.0, ["HUR"], [], "hour"),
    # dimensionless
    _u("1", "ratio", 1.0, ["C62"], ["fraction"], "one (fraction of one)"),
    _u("%", "ratio", 1e-2, ["P1"], ["percent", "pct"], "percent"),
    _u("count", "count", 1.0, ["H87"], ["vehicles", "bikes", "spots", "slots"], "count"),
    _u("index", "index", 1.0, [], [], "index (unitless scale)"),
    _u("dB", "sound_level", 1.0, ["2N"], ["dB(A)", "dBA"], "decibel"),
)


def _index(units: tuple[Unit, ...]) -> dict[str, Unit]:
    found: dict[str, Unit] = {}
    for unit in units:
        for name in (unit.symbol, *unit.codes, *unit.aliases):
            if name in found and found[name] is not unit:
                raise AssertionError(f"unit name {name!r} is ambiguous")
            found[name] = unit
    return found


BY_NAME = _index(UNITS)
BY_SYMBOL = {u.symbol: u for u in UNITS}


def find_unit(name: str) -> Unit | None:
    """The unit a symbol, UN/CEFACT code or known spelling names, else None."""
    unit = BY_NAME.get(name)
    if unit is None and isinstance(name, str):
        unit = BY_NAME.get(name.strip())
    return unit


def unit_code(symbol: str) -> str | None:
    """The UN/CEFACT common code of a canonical unit symbol (NGSI-LD ``unitCode``),
    or None when the unit has none (an index, a count-like scale)."""
    unit = BY_SYMBOL.get(symbol) or find_unit(symbol)
    return unit.codes[0] if unit and unit.codes else None
