"""Electricity load curves of households and businesses, as pure functions.

The shapes are what statistics and secrecy rules downstream must cope with:
a household has a night base load (fridge, standby, ventilation), a short
morning peak and a large evening peak, later and flatter at weekends, plus
electric heating that grows as the day gets colder (a third of French homes
heat with electricity, which is why French winter demand is so temperature
sensitive) and, for many, an off-peak storage water heater around midnight.
Shops and offices follow opening hours instead, with a working-day plateau and
a weekend low. Every function is deterministic: noise and per-meter choices are
drawn by the caller, so the same inputs always give the same curve.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime

SECTORS = ("residential", "professional", "tertiary")

HEATING_KW_PER_DEGREE = 0.15  # electric-heated home, per degree below the threshold
HEATING_THRESHOLD_C = 16.0
WATER_HEATER_KW = 2.2
OFFPEAK_START_H, OFFPEAK_END_H = 22.5, 6.5


@dataclass(frozen=True)
class Climate:
    """Normal daily mean temperatures of a city, coldest and warmest month."""

    january_c: float
    july_c: float


CLIMATES: dict[str, Climate] = {
    "paris": Climate(5.0, 20.5),
    "lyon": Climate(3.5, 22.0),
    "nice": Climate(9.0, 24.0),
    "bordeaux": Climate(6.5, 21.5),
    "angers": Climate(5.5, 19.5),
}


@dataclass(frozen=True)
class HouseholdHabits:
    """What makes one home's curve differ from its neighbours'."""

    electric_heating: bool
    water_heater: bool  # off-peak storage water heater, switched on at night
    shift_h: float = 0.0  # earlier (<0) or later (>0) daily routine, in hours


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours and idle level of a shop, office, school or hospital."""

    opens_h: float
    closes_h: float
    saturday: float  # activity on Saturdays, as a share of a weekday (shops ~0.9)
    sunday: float  # activity on Sundays
    base: float  # share of the plateau drawn when closed (servers, fridges, ventilation)


def daily_temperature(day: date, climate: Climate, seed: int) -> float:
    """Mean outdoor temperature of a day: the seasonal normal plus a weather anomaly.

    The anomaly is a sum of slow waves whose phases come from the seed, so runs
    with different seeds get different cold snaps, and all cities share the
    same weather pattern (a cold wave hits the whole country) around their own
    normals.
    """
    mean = (climate.january_c + climate.july_c) / 2
    amplitude = (climate.july_c - climate.january_c) / 2
    day_of_year = day.timetuple().tm_yday
    seasonal = mean - amplitude * math.cos(2 * math.pi * (day_of_year - 15) / 365.25)
    phases = random.Random(f"weather:{seed}")
    ordinal = day.toordinal()
    anomaly = sum(
        height * math.sin(2 * math.pi * ordinal / period + phases.uniform(0, 2 * math.pi))
        for height, period in ((3.0, 11.0), (1.5, 4.7), (1.0, 29.0))
    )
    return seasonal + anomaly


def household_kw(moment: datetime, temperature_c: float, habits: HouseholdHabits) -> float:
    """Mean power of an average home (kW) at a local time; scale it per meter.

    ``moment`` is naive or aware local wall-clock time, ideally the middle of
    the interval being simulated.
    """
    hour = (_hour(moment) - habits.shift_h) % 24
    weekend = moment.weekday() >= 5
    if weekend:
        activity = (
            0.45 * _bump(hour, 9.5, 1.3)
            + 0.40 * _bump(hour, 12.75, 1.0)
            + 1.05 * _bump(hour, 19.5, 1.7)
        )
    else:
        activity = (
            0.50 * _bump(hour, 7.4, 0.8)
            + 0.12 * _bump(hour, 12.75, 0.8)
            + 1.10 * _bump(hour, 19.75, 1.5)
        )
    power = 0.22 + activity
    if habits.electric_heating:
        power += heating_kw(temperature_c, hour)
    if habits.water_heater and (hour >= OFFPEAK_START_H or hour < 0.75):
        power += WATER_HEATER_KW
    return power


def heating_kw(temperature_c: float, hour: float) -> float:
    """Electric heating of one home: degrees below 16 °C times a thermal slope,
    higher when people are in (mornings and evenings), set back at night."""
    degrees = max(0.0, HEATING_THRESHOLD_C - temperature_c)
    if 6 <= hour < 9 or 17 <= hour < 23:
        presence = 1.15
    elif 9 <= hour < 17:
        presence = 0.85
    else:
        presence = 0.95
    return HEATING_KW_PER_DEGREE * degrees * presence


def business_share(moment: datetime, temperature_c: float, hours: BusinessHours) -> float:
    """Power of a business as a share of its weekday plateau (multiply by the plateau kW).

    Heating and lighting make a cold day cost a few percent more per degree.
    """
    weekday = moment.weekday()
    day_activity = 1.0 if weekday < 5 else hours.saturday if weekday == 5 else hours.sunday
    hour = _hour(moment)
    open_ramp = _ramp(hour, hours.opens_h) * (1.0 - _ramp(hour, hours.closes_h))
    share = hours.base + (1.0 - hours.base) * day_activity * open_ramp
    return share * (1.0 + 0.025 * max(0.0, 15.0 - temperature_c))


def is_offpeak(moment: datetime) -> bool:
    """Whether a local time is in the off-peak hours (heures creuses) 22:30-06:30,
    when storage water heaters run and HC/HP meters count on their off-peak register."""
    hour = _hour(moment)
    return hour >= OFFPEAK_START_H or hour < OFFPEAK_END_H


def _hour(moment: datetime) -> float:
    return moment.hour + moment.minute / 60 + moment.second / 3600


def _bump(hour: float, centre: float, width: float) -> float:
    """A Gaussian bump on the 24-hour circle (an evening peak may spill past midnight)."""
    distance = abs(hour - centre) % 24
    distance = min(distance, 24 - distance)
    return math.exp(-0.5 * (distance / width) ** 2)


def _ramp(hour: float, at: float, width: float = 1.0) -> float:
    """0 before ``at - width/2``, 1 after ``at + width/2``, smooth in between."""
    x = min(1.0, max(0.0, (hour - at) / width + 0.5))
    return x * x * (3 - 2 * x)
