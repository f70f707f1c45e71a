"""Bike stations and counters, car parks, charging points and weather stations:
where they are and what they measure.

A few places per city at their real coordinates (WGS 84, rounded to about 10 m):
well-known squares, stations and car parks of each city, so that positions in the
API land on the map where a developer expects them. Hourly levels are pure
functions of the local time plus seeded noise, like ambient.py:

- bike stations: downtown stations fill in the morning rush as commuters arrive
  and empty in the evening; residential ones do the opposite;
- bike counters: bicycles per hour follow the commuting peaks;
- car parks: occupancy follows the working day and the shopping afternoon;
- charging points: busy through the working day, free at night;
- weather stations: the temperature's daily cycle around a winter day's mean.
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


CHARGING_STATIONS: dict[str, tuple[Place, ...]] = {  # capacity: vehicles charged at once
    "paris": (
        Place("FRV75EBASTILLE", "Belib' Place de la Bastille", 48.8532, 2.3692, 6),
        Place("FRV75EMONTPARN", "Belib' Gare Montparnasse", 48.8412, 2.3205, 8),
    ),
    "lyon": (
        Place("FRIZIPARTDIEU", "Part-Dieu Villette", 45.7611, 4.8564, 10),
        Place("FRIZICONFLUEN", "Confluence", 45.7405, 4.8183, 6),
    ),
    "nice": (
        Place("FRNCAPORT", "Port Lympia", 43.6959, 7.2857, 4),
        Place("FRNCAARENAS", "Arenas", 43.6655, 7.2129, 8),
    ),
    "bordeaux": (
        Place("FRBXSTJEAN", "Gare Saint-Jean", 44.8258, -0.5560, 8),
        Place("FRBXBASSINS", "Bassins à flot", 44.8640, -0.5530, 4),
    ),
    "angers": (
        Place("FRANGSTLAUD", "Gare Saint-Laud", 47.4644, -0.5570, 6),
        Place("FRANGLECLERC", "Place Leclerc", 47.4722, -0.5508, 4),
    ),
}
WEATHER_STATIONS: dict[str, tuple[Place, ...]] = {  # capacity: unused
    "paris": (Place("75114001", "Paris-Montsouris", 48.8217, 2.3378, 0),),
    "nice": (Place("06088001", "Nice-Côte d'Azur", 43.6483, 7.2092, 0),),
}
WINTER_MEAN_C = {"paris": 5.5, "nice": 9.5}  # January mean temperature


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


def free_chargers(place: Place, moment: datetime, rng: random.Random) -> int:
    """Charging points free at a local time: busy by day, mostly free at night."""
    hour = moment.hour + moment.minute / 60
    busy = 0.1 + 0.6 * _bump(hour, 12.0, 4.5) * (1.0 if moment.weekday() < 5 else 0.7)
    taken = sum(rng.random() < busy for _ in range(place.capacity))
    return place.capacity - taken


def air_temperature(place: Place, moment: datetime, rng: random.Random) -> float:
    """°C at a weather station: coldest before dawn, warmest mid-afternoon."""
    hour = moment.hour + moment.minute / 60
    mean = next((t for city, t in WINTER_MEAN_C.items() if place in WEATHER_STATIONS[city]), 8.0)
    cycle = 3.5 * math.cos((hour - 15.0) / 24 * 2 * math.pi)
    return round(mean + cycle + rng.gauss(0, 0.4), 1)
