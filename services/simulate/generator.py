"""Turn a simulation plan into payloads, the batches a city system would push.

Payloads come day after day, and within a day city after city: first the
energy source in chunks of whole meter-days (a few thousand readings each, like
an energy hub's daily delivery split into requests), then one payload of air
quality, one of traffic, and one per station source the city has (bike stations and
counters, car parks, charging points, weather stations: amenities.py, at real places
of the city). Registers
(cumulative indexes) carry over from day to day. Every random draw comes from a
generator seeded by (seed, city, day, chunk), so turning air, traffic or stations
off, or adding days, leaves the other bytes unchanged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.runtime.cities import CityConfig, SourceConfig, load_registry
from services.runtime.errors import ConfigError
from services.simulate.ambient import AirQuality, air_quality, traffic_flow, traffic_share
from services.simulate.amenities import (
    BIKE_COUNTERS,
    BIKE_STATIONS,
    CAR_PARKS,
    CHARGING_STATIONS,
    WEATHER_STATIONS,
    Place,
)
from services.simulate.amenity_payloads import levels_of, renderer
from services.simulate.formats import CONTENT_TYPES, ENERGY_RENDERERS, EnergyBlock
from services.simulate.loadcurve import (
    CLIMATES,
    BusinessHours,
    HouseholdHabits,
    business_share,
    daily_temperature,
    household_kw,
    is_offpeak,
)
from services.simulate.observations import AirBlock, TrafficBlock, air_entities, traffic_renderer
from services.simulate.population import (
    CITIES,
    Meter,
    Site,
    air_stations,
    plan_sites,
    road_sensors,
    simulate_meters,
    sites_from_registry,
)
from services.simulate.timegrid import day_starts, local_days

ENERGY_SOURCES = {
    "paris": "enedis-courbes-charge",
    "bordeaux": "releves-compteurs",
    "lyon": "linky-habitat",
    "nice": "compteurs-communicants",
    "angers": "courbes-charge-compteurs",
}
AIR_SOURCES = {
    "paris": "airparif-qualite-air",
    "bordeaux": "atmo-na-qualite-air",
    "lyon": "atmo-aura-qualite-air",
    "nice": "atmosud-qualite-air",
    "angers": "airpl-qualite-air",
}
TRAFFIC_SOURCES = {
    "paris": "comptages-routiers",
    "bordeaux": "rocade-trafic",
    "lyon": "onlymoov-trafic",
    "nice": "trafic-boucles",
    "angers": "trafic-capteurs",
}
# Station sources: (kind, city -> source, city -> places).
STATION_SOURCES: tuple[tuple[str, dict[str, str], dict[str, tuple[Place, ...]]], ...] = (
    ("bikes", {"lyon": "velov-disponibilite", "angers": "velo-stations"}, BIKE_STATIONS),
    ("counters", {"paris": "velo-compteurs"}, BIKE_COUNTERS),
    (
        "parking",
        {"lyon": "lpa-parkings", "nice": "parcs-azur", "bordeaux": "parkings-occupation"},
        CAR_PARKS,
    ),
    ("charging", {code: "irve-recharge" for code in CHARGING_STATIONS}, CHARGING_STATIONS),
    ("weather", {"paris": "meteo-observations", "nice": "meteo-stations"}, WEATHER_STATIONS),
)
RESOLUTIONS = (10, 15, 30, 60)
HOUR = timedelta(hours=1)
HOUSEHOLD_NOISE = 0.35  # appliances switch on and off: 10-minute household readings are spiky
BUSINESS_NOISE = 0.08
AIR_NOISE = 0.15
TRAFFIC_NOISE = 0.08
AIR_GAPS = 0.005  # share of station-hours without a reading
TRAFFIC_GAPS = 0.01


@dataclass(frozen=True)
class Payload:
    """One batch as a city system would send it; ``readings`` is its row count
    (CSV lines, JSON records, entities or frames), what ingest should accept."""

    city: str
    source: str
    content_type: str
    body: bytes
    readings: int


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. ``meters`` caps the meters per city (Lyon has the
    registry's 600 at most); ``start`` is a local date, the default a winter Monday."""

    cities: tuple[str, ...] = CITIES
    meters: int = 2000
    days: int = 3
    start: date = date(2025, 1, 13)
    resolution_minutes: int = 10
    seed: int = 42
    air: bool = True
    traffic: bool = True
    stations: bool = True  # bike stations and counters, car parks, charging, weather
    rows_per_payload: int = 4000

    def __post_init__(self) -> None:
        unknown = [c for c in self.cities if c not in CITIES]
        if unknown:
            raise ConfigError(
                f"no simulation for {', '.join(unknown)}; known cities: {', '.join(CITIES)}"
            )
        if self.resolution_minutes not in RESOLUTIONS:
            raise ConfigError(
                f"resolution must be one of {', '.join(map(str, RESOLUTIONS))} minutes, "
                f"got {self.resolution_minutes}"
            )
        if self.meters < 1 or self.days < 1 or self.rows_per_payload < 1:
            raise ConfigError("meters, days and rows per payload must be at least 1")

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.resolution_minutes)


class Simulation:
    """A whole run: its cities, how many payloads it makes, and the payloads.

    Building it resolves every source a run needs, so a city file that lacks
    one fails before anything is generated or sent.
    """

    def __init__(self, config: SimulationConfig, cities: dict[str, CityConfig]):
        missing = [code for code in config.cities if code not in cities]
        if missing:
            raise ConfigError(f"no city file for {', '.join(missing)} in the city configuration")
        self.config = config
        self.cities = [CitySimulation(cities[code], config) for code in config.cities]

    def sources(self) -> list[SourceConfig]:
        """Every source this run sends to (the ones whose tokens a push needs)."""
        return [source for city in self.cities for source in city.sources()]

    def payload_count(self) -> int:
        return sum(
            city.payload_count(day)
            for day in local_days(self.config.start, self.config.days)
            for city in self.cities
        )

    def __iter__(self) -> Iterator[Payload]:
        """Every payload, in the order a replay should send them: day by day, city by city."""
        for city in self.cities:
            city.reset()
        for day in local_days(self.config.start, self.config.days):
            for city in self.cities:
                yield from city.day(day)


def generate(config: SimulationConfig, cities: dict[str, CityConfig]) -> Iterator[Payload]:
    """Every payload of the simulation, in the order a replay should send them."""
    return iter(Simulation(config, cities))


class CitySimulation:
    """One city's meters, stations and sensors, and its registers across days."""

    def __init__(self, city: CityConfig, config: SimulationConfig):
        code = city.code
        self.city = city
        self.config = config
        self.energy = city.source(ENERGY_SOURCES[code])
        self.air = city.source(AIR_SOURCES[code]) if config.air else None
        self.traffic = city.source(TRAFFIC_SOURCES[code]) if config.traffic else None
        self.station_sources = [
            (kind, city.source(sources[code]), places[code])
            for kind, sources, places in STATION_SOURCES
            if config.stations and code in sources
        ]
        self.zone = ZoneInfo(city.timezone)
        self.meters: list[Meter] = simulate_meters(self.sites(), code, config.seed)
        self.stations = air_stations(code)
        self.sensors = road_sensors(code)
        self.reset()

    def reset(self) -> None:
        """Put every register back to its starting index (before day one)."""
        self._total_wh = [float(m.start_index_wh) for m in self.meters]
        self._offpeak_wh = [float(m.start_index_wh * 2 // 5) for m in self.meters]

    def sources(self) -> list[SourceConfig]:
        fixed = [s for s in (self.energy, self.air, self.traffic) if s is not None]
        return fixed + [source for _, source, _ in self.station_sources]

    def payload_count(self, day: date) -> int:
        intervals = len(day_starts(day, self.zone, self.config.step))
        per_payload = self._meters_per_payload(intervals)
        energy = -(-len(self.meters) // per_payload)
        return (
            energy + (self.air is not None) + (self.traffic is not None) + len(self.station_sources)
        )

    def _meters_per_payload(self, intervals: int) -> int:
        return max(1, self.config.rows_per_payload // intervals)

    def sites(self) -> list[Site]:
        """The registry's meters when the energy source has one, else a seeded layout."""
        if self.energy.registry is not None:
            return sites_from_registry(load_registry(self.energy.registry), self.config.meters)
        return plan_sites(self.city.code, self.config.meters, self.config.seed)

    def day(self, day: date) -> Iterator[Payload]:
        temperature = daily_temperature(day, CLIMATES[self.city.code], self.config.seed)
        yield from self.energy_payloads(day, temperature)
        if self.air is not None:
            block = self.air_block(day, temperature)
            body = air_entities(self.air, block)
            yield self._payload(self.air.id, self.air.format, body, _present(block.values))
        if self.traffic is not None:
            block = self.traffic_block(day)
            body = traffic_renderer(self.traffic)(self.traffic, block)
            rows = _present(block.flows) if self.traffic.format != "csv" else _cells(block.flows)
            yield self._payload(self.traffic.id, self.traffic.format, body, rows)
        yield from self.station_payloads(day)

    def station_payloads(self, day: date) -> Iterator[Payload]:
        """One payload per station source: every place's hourly level of the day."""
        starts = day_starts(day, self.zone, HOUR)
        local = [t.astimezone(self.zone) for t in starts]
        for kind, source, places in self.station_sources:
            render, level = renderer(kind, source)
            rng = random.Random(f"{kind}:{self.config.seed}:{self.city.code}:{day}")
            data = levels_of(self.city.code, places, starts, local, level, rng)
            yield self._payload(source.id, source.format, render(source, data), data.rows)

    def energy_payloads(self, day: date, temperature: float) -> Iterator[Payload]:
        step = self.config.step
        starts = day_starts(day, self.zone, step)
        local = [t.astimezone(self.zone) for t in starts]
        middles = [(t + step / 2).astimezone(self.zone) for t in starts]
        offpeak = [is_offpeak(t) for t in local]
        curves = _Curves(middles, temperature)
        render = ENERGY_RENDERERS[self.city.code]
        per_payload = self._meters_per_payload(len(starts))
        kwh_per_interval = step / HOUR
        for chunk, first in enumerate(range(0, len(self.meters), per_payload)):
            rng = random.Random(f"energy:{self.config.seed}:{self.city.code}:{day}:{chunk}")
            indexes = range(first, min(first + per_payload, len(self.meters)))
            energy, totals, offpeaks = [], [], []
            for i in indexes:
                meter = self.meters[i]
                sigma = HOUSEHOLD_NOISE if meter.sector == "residential" else BUSINESS_NOISE
                factor = meter.scale_kw * 1000 * kwh_per_interval
                mu = -sigma * sigma / 2  # mean-one multiplicative noise
                wh = [
                    factor * power * math.exp(rng.gauss(mu, sigma))
                    for power in curves.of(meter.profile)
                ]
                energy.append(wh)
                totals.append(self._advance(self._total_wh, i, wh, None))
                offpeaks.append(self._advance(self._offpeak_wh, i, wh, offpeak))
            block = EnergyBlock(
                meters=[self.meters[i] for i in indexes],
                starts=starts,
                local=local,
                step=step,
                energy_wh=energy,
                total_wh=totals,
                offpeak_wh=offpeaks,
                offpeak=offpeak,
            )
            yield self._payload(
                self.energy.id, self.energy.format, render(self.energy, block), block.readings
            )

    @staticmethod
    def _advance(
        registers: list[float], i: int, energy: list[float], counted: list[bool] | None
    ) -> list[float]:
        """The register at each interval start, moving it past the intervals it counts."""
        running = registers[i]
        values = []
        for k, wh in enumerate(energy):
            values.append(running)
            if counted is None or counted[k]:
                running += wh
        registers[i] = running
        return values

    def air_block(self, day: date, temperature: float) -> AirBlock:
        starts = day_starts(day, self.zone, HOUR)
        local = [t.astimezone(self.zone) for t in starts]
        rng = random.Random(f"air:{self.config.seed}:{self.city.code}:{day}")
        values: list[list[AirQuality | None]] = []
        for station in self.stations:
            readings: list[AirQuality | None] = []
            for moment in local:
                level = air_quality(moment + HOUR / 2, station.kind, temperature)
                noisy = AirQuality(
                    *(
                        value * math.exp(rng.gauss(-(AIR_NOISE**2) / 2, AIR_NOISE))
                        for value in (level.no2, level.pm10, level.pm25, level.o3)
                    )
                )
                readings.append(None if rng.random() < AIR_GAPS else noisy)
            values.append(readings)
        return AirBlock(self.city.code, self.stations, starts, local, values)

    def traffic_block(self, day: date) -> TrafficBlock:
        starts = day_starts(day, self.zone, HOUR)
        local = [t.astimezone(self.zone) for t in starts]
        rng = random.Random(f"traffic:{self.config.seed}:{self.city.code}:{day}")
        flows = []
        for sensor in self.sensors:
            row = []
            for moment in local:
                share = traffic_share(moment + HOUR / 2) * math.exp(rng.gauss(0, TRAFFIC_NOISE))
                flow = traffic_flow(min(share, 0.98), sensor.capacity_vph, sensor.free_speed_kmh)
                row.append(None if rng.random() < TRAFFIC_GAPS else flow)
            flows.append(row)
        return TrafficBlock(self.city.code, self.sensors, starts, local, flows)

    def _payload(self, source: str, fmt: str, body: bytes, readings: int) -> Payload:
        return Payload(self.city.code, source, CONTENT_TYPES[fmt], body, readings)


class _Curves:
    """Load curves of one day, computed once per distinct profile and shared by
    every meter with that profile (thousands of meters, a few dozen profiles)."""

    def __init__(self, moments: list[datetime], temperature: float):
        self._moments = moments
        self._temperature = temperature
        self._cache: dict[HouseholdHabits | BusinessHours, list[float]] = {}

    def of(self, profile: HouseholdHabits | BusinessHours) -> list[float]:
        curve = self._cache.get(profile)
        if curve is None:
            if isinstance(profile, HouseholdHabits):
                curve = [household_kw(m, self._temperature, profile) for m in self._moments]
            else:
                curve = [business_share(m, self._temperature, profile) for m in self._moments]
            self._cache[profile] = curve
        return curve


def _present(values: list[list[object | None]]) -> int:
    return sum(value is not None for row in values for value in row)


def _cells(values: list[list[object | None]]) -> int:
    return sum(len(row) for row in values)
