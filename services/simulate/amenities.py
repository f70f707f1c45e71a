"""Bike stations, bike counters and car parks: where they are and how full they are.

A few places per city at their real coordinates (WGS 84, rounded to about 10 m):
well-known squares, stations and car parks of each city, so that positions in the
API land on the map where a developer expects them. Hourly levels are pure
functions of the local time plus seeded noise, like ambient.py:

- bike stations: downtown stations fill in the morning rush as commuters arrive
  and empty in the evening; residential ones do the opposite;
- bike counters: bicycles per hour follow the commuting peaks;
- car parks: occupancy follows the working day and the shopping afternoon.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from services.simulate.ambient import traffic_share


@dataclass(frozen=True)
class Place:
    """A station, counter or car park: its code, name, position, capacity and kind
    (``centre`` or ``residential`` for bike stations; unused otherwise)."""

    code: str
    name: str
    lat: float
    lon: float
    capacity: int
    kind: str = "centre"


BIKE_STATIONS: dict[str, tuple[Place, ...]] = {
    "lyon": (
        Place("2010", "Bellecour / Place Antonin Poncet", 45.7566, 4.8327, 32),
        Place("1001", "Terreaux / Hôtel de Ville", 45.7676, 4.8345, 24),
        Place("3082", "Part-Dieu / Vivier Merle", 45.7606, 4.8590, 40),
        Place("2007", "Perrache / Place Carnot", 45.7512, 4.8266, 28),
        Place(
            "4002", "Croix-Rousse / Place de la Croix-Rousse", 45.7745, 4.8320, 20, "residential"
        ),
        Place("8038", "Monplaisir / Place Ambroise Courtois", 45.7456, 4.8708, 20, "residential"),
    ),
    "angers": (
        Place("ANG01", "Gare Saint-Laud", 47.4646, -0.5566, 20),
        Place("ANG02", "Place du Ralliement", 47.4717, -0.5518, 16),
        Place("ANG03", "Château d'Angers", 47.4701, -0.5597, 12),
        Place("ANG04", "Campus Belle-Beille", 47.4806, -0.5942, 16, "residential"),
    ),
}
BIKE_COUNTERS: dict[str, tuple[Place, ...]] = {
    "paris": (  # capacity: bicycles per hour at the peak
        Place("100003096-353242251", "97 avenue Denfert Rochereau SO-NE", 48.83504, 2.33314, 180),
        Place(
            "100057445-103057445", "Totem 73 boulevard de Sébastopol S-N", 48.86462, 2.35013, 900
        ),
        Place("100036719-104036719", "Quai d'Orsay E-O", 48.86149, 2.31350, 500),
        Place("100047542-103047542", "27 quai de la Tournelle NO-SE", 48.85013, 2.35423, 400),
    ),
}
CAR_PARKS: dict[str, tuple[Place, ...]] = {
    "lyon": (
        Place("LPA-BELLECOUR", "Parking Bellecour", 45.7570, 4.8333, 560),
        Place("LPA-CELESTINS", "Parking Célestins", 45.7600, 4.8322, 435),
        Place("LPA-TERREAUX", "Parking Terreaux", 45.7671, 4.8333, 300),
        Place("LPA-PART-DIEU", "Parking Part-Dieu Servient", 45.7610, 4.8545, 850),
    ),
    "nice": (
        Place("PA-ARTS", "Parking Promenade des Arts", 43.7016, 7.2784, 700),
        Place("PA-MASSENA", "Parking Masséna", 43.6977, 7.2704, 620),
        Place("PA-ETOILE", "Parking Nice Étoile", 43.7046, 7.2670, 500),
        Place("PA-THIERS", "Parking Gare Thiers", 43.7038, 7.2617, 380),
    ),
    "bordeaux": (
        Place("CUBPK88", "Victor Hugo", 44.8346, -0.5746, 520),
        Place("CUBPK12", "Allées de Tourny", 44.8449, -0.5772, 650),
        Place("CUBPK02", "Place des Quinconces", 44.8443, -0.5722, 340),
        Place("CUBPK30", "Mériadeck", 44.8379, -0.5875, 1200),
    ),
}


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def bike_share(moment: datetime, kind: str) -> float:
    """Share of a station's docks holding a bike at a local time (0..1): downtown
    stations fill with the morning commute and empty in the evening."""
    hour = moment.hour + moment.minute / 60
    workday = moment.weekday() < 5
    swing = 0.35 if workday else 0.12
    day = _bump(hour, 13.0, 4.0) - 0.6 * _bump(hour, 20.0, 2.5)
    share = 0.45 + (swing * day if kind == "centre" else -swing * day)
    return min(max(share, 0.02), 0.98)


def parking_share(moment: datetime) -> float:
    """Occupancy of a city-centre car park at a local time (0..1)."""
    hour = moment.hour + moment.minute / 60
    if moment.weekday() < 5:
        share = 0.12 + 0.55 * _bump(hour, 11.0, 3.5) + 0.45 * _bump(hour, 16.0, 3.0)
    else:
        share = 0.10 + 0.75 * _bump(hour, 15.5, 3.5)
    return min(share, 0.97)


def docked_bikes(place: Place, moment: datetime, rng: random.Random) -> int:
    share = bike_share(moment, place.kind) * math.exp(rng.gauss(0, 0.15))
    return max(0, min(place.capacity, round(share * place.capacity)))


def counted_bikes(place: Place, moment: datetime, rng: random.Random) -> int:
    """Bicycles past a counter in the hour starting at ``moment``."""
    return round(place.capacity * traffic_share(moment) * math.exp(rng.gauss(-0.01, 0.12)))


def free_spaces(place: Place, moment: datetime, rng: random.Random) -> int:
    share = parking_share(moment) * math.exp(rng.gauss(0, 0.06))
    return max(0, place.capacity - min(place.capacity, round(share * place.capacity)))
