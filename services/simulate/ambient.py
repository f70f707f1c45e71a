"""Road traffic and air quality, as pure functions of the hour, the day and the weather.

Traffic follows commuting: two weekday rush hours, a broad afternoon hump at
weekends, quiet nights. Air quality follows traffic where traffic dominates:
NO2 rises with it (most at roadside stations), ozone is consumed by NO and
builds up in the afternoon, particles add a winter heating term in the evening.
Levels are typical of French cities in winter, in µg/m³.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

# How much local traffic weighs on a station, by station kind.
_NO2_BACKGROUND = {"traffic": 38.0, "urban": 24.0, "periurban": 14.0}
_NO2_TRAFFIC = {"traffic": 55.0, "urban": 24.0, "periurban": 8.0}


@dataclass(frozen=True)
class AirQuality:
    no2: float
    pm10: float
    pm25: float
    o3: float


@dataclass(frozen=True)
class TrafficFlow:
    intensity: float  # vehicles per hour
    occupancy: float  # share of time a vehicle is over the loop, 0..1
    speed_kmh: float


def traffic_share(moment: datetime) -> float:
    """Traffic as a share of a road's capacity at a local time (0..1)."""
    hour = moment.hour + moment.minute / 60
    weekday = moment.weekday()
    if weekday < 5:
        share = (
            0.06
            + 0.72 * _bump(hour, 8.25, 1.1)
            + 0.35 * _bump(hour, 13.0, 2.5)
            + 0.66 * _bump(hour, 17.75, 1.5)
        )
        if weekday == 4:
            share += 0.08 * _bump(hour, 17.0, 2.0)  # Friday evening departures
    else:
        height = 0.55 if weekday == 5 else 0.40
        share = 0.05 + height * _bump(hour, 15.0, 3.5)
    return min(share, 0.97)


def traffic_flow(share: float, capacity_vph: int, free_speed_kmh: float) -> TrafficFlow:
    """Intensity, occupancy and speed of a road loaded at ``share`` of its capacity.

    Occupancy grows faster than flow near saturation and speed collapses, as
    loop detectors show in congestion.
    """
    occupancy = min(0.95, 0.05 + 0.45 * share**1.6)
    speed = free_speed_kmh * (1 - 0.7 * share**2.5)
    return TrafficFlow(share * capacity_vph, occupancy, speed)


def air_quality(moment: datetime, kind: str, temperature_c: float) -> AirQuality:
    """Hourly concentrations at a station of ``kind`` (traffic, urban, periurban)."""
    share = traffic_share(moment)
    hour = moment.hour + moment.minute / 60
    no2 = _NO2_BACKGROUND[kind] + _NO2_TRAFFIC[kind] * share
    heating = 0.8 * max(0.0, 12.0 - temperature_c) * (0.4 + _bump(hour, 20.5, 3.0))
    pm10 = 12.0 + 0.25 * no2 + heating
    pm25 = 0.68 * pm10
    o3 = max(2.0, 58.0 - 0.75 * no2 + 14.0 * _bump(hour, 15.0, 2.5))
    return AirQuality(no2, pm10, pm25, o3)


def traffic_state(occupancy_percent: float | None) -> str:
    """Paris's ``Etat trafic`` label for an occupancy rate in percent."""
    if occupancy_percent is None:
        return "Inconnu"
    if occupancy_percent < 15:
        return "Fluide"
    if occupancy_percent < 30:
        return "Pré-saturé"
    if occupancy_percent < 50:
        return "Saturé"
    return "Bloqué"


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)
