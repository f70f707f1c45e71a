"""The simulator's stations (services/simulate/amenities.py): real places of each
city, levels that a station can hold, the same bytes for the same seed."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.runtime.cities import load_cities
from services.runtime.paths import CITIES_DIR
from services.simulate.amenities import (
    BIKE_COUNTERS,
    BIKE_STATIONS,
    CAR_PARKS,
    CHARGING_STATIONS,
    WEATHER_STATIONS,
    Place,
    air_temperature,
    docked_bikes,
    free_chargers,
    free_spaces,
)
from services.simulate.generator import STATION_SOURCES, Simulation, SimulationConfig
from services.simulate.population import CITY_CENTRES

TABLES = (BIKE_STATIONS, BIKE_COUNTERS, CAR_PARKS, CHARGING_STATIONS, WEATHER_STATIONS)
PARIS = ZoneInfo("Europe/Paris")


def _km(place: Place, city: str) -> float:
    lon, lat = CITY_CENTRES[city]
    dy = (place.lat - lat) * 111.2
    dx = (place.lon - lon) * 111.2 * math.cos(math.radians(lat))
    return math.hypot(dx, dy)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: next(iter(t.values()))[0].name)
def test_every_place_is_in_its_city(table: dict[str, tuple[Place, ...]]) -> None:
    for city, places in table.items():
        assert len({p.code for p in places}) == len(places)
        for place in places:
            assert _km(place, city) < 15, (city, place.name)  # Nice's airport: ~5 km


def test_levels_stay_within_what_a_place_holds() -> None:
    rng = random.Random(1)
    start = datetime(2025, 1, 13, tzinfo=PARIS)
    for hour in range(24 * 7):
        moment = start + timedelta(hours=hour)
        for place in BIKE_STATIONS["lyon"]:
            assert 0 <= docked_bikes(place, moment, rng) <= place.capacity
        for place in CAR_PARKS["nice"]:
            assert 0 <= free_spaces(place, moment, rng) <= place.capacity
        for place in CHARGING_STATIONS["angers"]:
            assert 0 <= free_chargers(place, moment, rng) <= place.capacity
        assert -10 < air_temperature(WEATHER_STATIONS["paris"][0], moment, rng) < 20


def test_car_parks_fill_by_day_and_empty_at_night() -> None:
    park = CAR_PARKS["lyon"][0]
    night = [
        free_spaces(park, datetime(2025, 1, 14, 3, tzinfo=PARIS), random.Random(k))
        for k in range(20)
    ]
    noon = [
        free_spaces(park, datetime(2025, 1, 14, 12, tzinfo=PARIS), random.Random(k))
        for k in range(20)
    ]
    assert sum(noon) < sum(night)


def test_station_payloads_are_the_same_for_the_same_seed_and_leave_energy_alone() -> None:
    cities = load_cities(CITIES_DIR)
    config = SimulationConfig(meters=3, days=1, start=date(2025, 1, 13))
    kinds = {s for _, table, _ in STATION_SOURCES for s in table.values()}
    first = [p.body for p in Simulation(config, cities) if p.source in kinds]
    again = [p.body for p in Simulation(config, cities) if p.source in kinds]
    assert first and first == again
    bare = SimulationConfig(meters=3, days=1, start=date(2025, 1, 13), stations=False)
    others = [p.body for p in Simulation(config, cities) if p.source not in kinds]
    assert others == [p.body for p in Simulation(bare, cities)]
