"""Who is simulated: meters spread over IRIS-like zones, air stations, road sensors.

The population is built to exercise the statistical-secrecy rules, not only to
look plausible: besides ordinary zones with dozens of meters, every city has
three zones with fewer than 10 meters (the count rule must suppress them) and
one zone where a single large site (a hospital-like tertiary meter) draws far
more than its ten residential neighbours together (the dominance rule must).

Everything is deterministic. Layout (which meters, in which zone, of which
sector) comes from the seed, except in Lyon where it comes from the committed
meter registry (Linky frames carry no zone). Behaviour (size, habits, opening
hours, starting index) always comes from the seed. Stations and road sensors are
fixed infrastructure and do not depend on the seed.

Run ``python -m services.simulate.population`` to rewrite the Lyon registry
after changing the layout rules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from services.runtime.cities import RegistryEntry
from services.runtime.paths import CITIES_DIR
from services.simulate.loadcurve import BusinessHours, HouseholdHabits

CITIES = ("paris", "lyon", "nice", "bordeaux", "angers")
CITY_NAMES = {
    "paris": "Paris",
    "lyon": "Lyon",
    "nice": "Nice",
    "bordeaux": "Bordeaux",
    "angers": "Angers",
}
# INSEE code of the commune (1st arrondissement for Paris and Lyon): IRIS codes
# are that code followed by four digits.
ZONE_PREFIX = {
    "paris": "75101",
    "lyon": "69381",
    "nice": "06088",
    "bordeaux": "33063",
    "angers": "49007",
}
CITY_CENTRES = {  # (longitude, latitude)
    "paris": (2.3522, 48.8566),
    "lyon": (4.8357, 45.7640),
    "nice": (7.2620, 43.7102),
    "bordeaux": (-0.5792, 44.8378),
    "angers": (-0.5632, 47.4784),
}

METERS_PER_ZONE = 80
SMALL_ZONE_SIZES = range(3, 10)  # below the 10-meter publication threshold
SMALL_ZONES = 3
DOMINATED_NEIGHBOURS = 10  # residential meters beside the large site: the count rule passes
BIG_SITE_KW = 900.0  # plateau of the dominant site: >85% of its zone in every hour
SECTOR_MIX = {"residential": 0.85, "professional": 0.11, "tertiary": 0.04}
MAX_ZONES = 99 * 9

LYON_REGISTRY_FILE = CITIES_DIR / "registries" / "lyon-linky.csv"
LYON_REGISTRY_SEED = 2025
LYON_REGISTRY_METERS = 600
LYON_REGISTRY_PER_ZONE = 27  # ~25 zones: a pilot covers a few neighbourhoods densely

_SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # few distinct values: curves are shared between meters
_HOSPITAL = BusinessHours(opens_h=7.0, closes_h=20.0, saturday=0.6, sunday=0.5, base=0.75)


@dataclass(frozen=True)
class Site:
    """A metering point as the city's systems know it: where and what, not how much."""

    entity: str  # the identifier the city's transport carries (PRM, ADSC, URN...)
    zone: str
    sector: str
    big: bool = False


@dataclass(frozen=True)
class Meter:
    """A site with its simulated behaviour.

    ``scale_kw`` multiplies the household curve (residential) or is the weekday
    plateau (businesses); ``start_index_wh`` is the cumulative register when the
    simulation starts, for the formats that send indexes.
    """

    entity: str
    zone: str
    sector: str
    big: bool
    scale_kw: float
    profile: HouseholdHabits | BusinessHours
    start_index_wh: int
    subscribed_kva: int


@dataclass(frozen=True)
class Station:
    """An air-quality station: ``kind`` is traffic, urban or periurban."""

    code: str
    name: str
    kind: str
    lon: float
    lat: float


@dataclass(frozen=True)
class RoadSensor:
    """A counting loop on one road segment (from ``start`` to ``end``, lon/lat)."""

    code: str
    road: str
    start: tuple[float, float]
    end: tuple[float, float]
    capacity_vph: int
    free_speed_kmh: float
    upstream: tuple[str, str]  # (node id, label), as Paris's export names them
    downstream: tuple[str, str]


_ROADS = {
    "paris": (
        "AV_Champs_Elysees",
        "Rue_de_Rivoli",
        "Bd_Saint_Germain",
        "Quai_de_la_Rapee",
        "Bd_Magenta",
        "Bd_Peripherique_Porte_Maillot",
    ),
    "lyon": (
        "Boulevard Laurent Bonnevay",
        "Quai Perrache",
        "Cours Lafayette",
        "Avenue Berthelot",
        "Tunnel de la Croix-Rousse",
        "Rue Garibaldi",
    ),
    "nice": (
        "Promenade des Anglais",
        "Boulevard Gambetta",
        "Avenue Jean Médecin",
        "Voie Pierre Mathis",
        "Boulevard René Cassin",
        "Avenue de la Californie",
    ),
    "bordeaux": (
        "Rocade A630 sortie 4",
        "Rocade A630 sortie 10",
        "Rocade A630 sortie 15",
        "Rocade A630 sortie 20",
        "Pont d'Aquitaine",
        "Quai des Chartrons",
    ),
    "angers": (
        "Boulevard du Roi René",
        "Avenue Montaigne",
        "Voie des Berges",
        "Boulevard Foch",
        "Avenue Pasteur",
        "Rue de la Roë",
    ),
}
_STATION_KINDS = (("Centre", "urban"), ("Trafic", "traffic"), ("Périurbain", "periurban"))


# --- layout ---------------------------------------------------------------------------


def zone_codes(city: str, count: int) -> list[str]:
    """IRIS-like codes: the commune code, then a two-digit quarter and a one-to-nine IRIS."""
    prefix = ZONE_PREFIX[city]
    count = min(count, MAX_ZONES)
    return [f"{prefix}{n // 9 + 1:02d}{n % 9 + 1:02d}" for n in range(count)]


def plan_sites(
    city: str, meters: int, seed: int | str, per_zone: int = METERS_PER_ZONE
) -> list[Site]:
    """``meters`` sites of a city: the dominated zone first, then the small zones,
    then ordinary zones of about ``per_zone`` meters, so that any prefix of the
    list keeps the special zones whole."""
    rng = random.Random(f"layout:{seed}:{city}")
    specials = 1 + DOMINATED_NEIGHBOURS + SMALL_ZONES * max(SMALL_ZONE_SIZES)
    regular_count = max(1, round(max(0, meters - specials) / per_zone))
    codes = zone_codes(city, regular_count + 1 + SMALL_ZONES)
    roles = codes[:]
    rng.shuffle(roles)
    dominated, small, regular = (
        roles[0],
        roles[1 : 1 + SMALL_ZONES],
        sorted(roles[1 + SMALL_ZONES :]),
    )

    slots: list[tuple[str, str, bool]] = [(dominated, "tertiary", True)]
    slots += [(dominated, "residential", False)] * DOMINATED_NEIGHBOURS
    for zone, size in zip(small, rng.sample(SMALL_ZONE_SIZES, SMALL_ZONES), strict=True):
        slots += [
            (zone, "professional" if n == 0 and rng.random() < 0.3 else "residential", False)
            for n in range(size)
        ]
    rest = meters - len(slots)
    if rest > 0 and regular:
        weights = [rng.lognormvariate(0, 0.35) for _ in regular]
        sectors = list(SECTOR_MIX)
        mix = list(SECTOR_MIX.values())
        for zone, size in zip(regular, _apportion(rest, weights), strict=True):
            slots += [(zone, rng.choices(sectors, mix)[0], False) for _ in range(size)]

    taken: set[str] = set()
    sites = []
    for zone, sector, big in slots[:meters]:
        entity = _new_identifier(city, sector, rng, taken)
        sites.append(Site(entity, zone, sector, big))
    return sites


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainders), summing exactly."""
    whole = sum(weights)
    shares = [total * w / whole for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _new_identifier(city: str, sector: str, rng: random.Random, taken: set[str]) -> str:
    while True:
        if city == "lyon":
            # ADSC: manufacturer, year of manufacture, meter type, serial (12 digits).
            kind = "64" if sector == "residential" else "70"
            year = rng.randint(16, 22)
            entity = (
                f"{rng.choice(('02', '03', '04', '81'))}{year:02d}{kind}{rng.randrange(10**6):06d}"
            )
        elif city == "nice":
            model = "ACMeasurement" if sector == "residential" else "ThreePhaseAcMeasurement"
            entity = f"urn:ngsi-ld:{model}:nca-{rng.randrange(10**11, 10**12)}"
        else:
            entity = f"{rng.randrange(10**13):014d}"  # PRM / PDL: 14 digits
        if entity not in taken:
            taken.add(entity)
            return entity


# --- the Lyon registry ------------------------------------------------------------------


def lyon_registry_sites() -> list[Site]:
    """The fixed Lyon meter population that the committed registry file lists."""
    return plan_sites("lyon", LYON_REGISTRY_METERS, LYON_REGISTRY_SEED, LYON_REGISTRY_PER_ZONE)


def render_registry(sites: list[Site]) -> str:
    lines = ["entity,zone,sector"] + [f"{s.entity},{s.zone},{s.sector}" for s in sites]
    return "\n".join(lines) + "\n"


def write_lyon_registry(path: Path = LYON_REGISTRY_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_registry(lyon_registry_sites()), encoding="utf-8")
    return path


def sites_from_registry(entries: dict[str, RegistryEntry], limit: int) -> list[Site]:
    """The first ``limit`` meters of a registry, in file order.

    The registry says where a meter is and what it is, not how big: the large
    site is recognised by its identifier in the built-in Lyon population.
    """
    big = {site.entity for site in lyon_registry_sites() if site.big}
    return [
        Site(entity, entry.zone, entry.sector, entity in big)
        for entity, entry in list(entries.items())[:limit]
    ]


# --- behaviour ----------------------------------------------------------------------------


def simulate_meters(sites: list[Site], city: str, seed: int) -> list[Meter]:
    """Give every site a size, habits or opening hours and a starting index."""
    rng = random.Random(f"behaviour:{seed}:{city}")
    return [_behaviour(site, rng) for site in sites]


def _behaviour(site: Site, rng: random.Random) -> Meter:
    profile: HouseholdHabits | BusinessHours
    if site.big:
        scale, profile, kva = BIG_SITE_KW * rng.uniform(0.95, 1.1), _HOSPITAL, 1000
        start = rng.randrange(1_000_000, 10_000_000)
    elif site.sector == "residential":
        heating = rng.random() < 0.35
        profile = HouseholdHabits(heating, rng.random() < 0.45, rng.choice(_SHIFTS))
        scale = rng.lognormvariate(0, 0.3)
        kva = rng.choice((9, 12)) if heating else rng.choice((3, 6, 6, 9))
        start = rng.randrange(2_000_000, 90_000_000)
    elif site.sector == "professional":
        shop = rng.random() < 0.6
        profile = BusinessHours(
            opens_h=rng.choice((8.0, 9.0, 9.5)),
            closes_h=rng.choice((19.0, 19.5, 20.0)) if shop else rng.choice((18.0, 19.0)),
            saturday=0.9 if shop else 0.15,
            sunday=0.1 if shop else 0.0,
            base=0.2,
        )
        scale, kva = 8.0 * rng.lognormvariate(0, 0.5), 36
        start = rng.randrange(5_000_000, 200_000_000)
    else:
        profile = BusinessHours(
            opens_h=rng.choice((7.5, 8.0)),
            closes_h=rng.choice((18.0, 19.0)),
            saturday=0.15,
            sunday=0.0,
            base=0.35,
        )
        scale, kva = 60.0 * rng.lognormvariate(0, 0.4), 250
        start = rng.randrange(10_000_000, 400_000_000)
    return Meter(site.entity, site.zone, site.sector, site.big, scale, profile, start, kva)


# --- fixed infrastructure -------------------------------------------------------------------


def air_stations(city: str) -> list[Station]:
    """Three stations per city: urban background, traffic and periurban."""
    rng = random.Random(f"stations:{city}")
    lon, lat = CITY_CENTRES[city]
    stations = []
    for label, kind in _STATION_KINDS:
        spread = 0.06 if kind == "periurban" else 0.02
        stations.append(
            Station(
                code=f"FR{rng.randrange(10_000, 40_000)}",
                name=f"{CITY_NAMES[city]} {label}",
                kind=kind,
                lon=round(lon + rng.uniform(-spread, spread), 5),
                lat=round(lat + rng.uniform(-spread, spread), 5),
            )
        )
    return stations


def road_sensors(city: str) -> list[RoadSensor]:
    """Six counting loops per city, on its main roads."""
    rng = random.Random(f"roads:{city}")
    lon, lat = CITY_CENTRES[city]
    sensors = []
    for road in _ROADS[city]:
        a = (round(lon + rng.uniform(-0.04, 0.04), 6), round(lat + rng.uniform(-0.03, 0.03), 6))
        b = (
            round(a[0] + rng.uniform(-0.003, 0.003), 6),
            round(a[1] + rng.uniform(-0.003, 0.003), 6),
        )
        fast = "Rocade" in road or "Peripherique" in road or "Voie" in road or "Tunnel" in road
        node = rng.randrange(1000, 9000)
        sensors.append(
            RoadSensor(
                code=str(rng.randrange(1000, 7000)),
                road=road,
                start=a,
                end=b,
                capacity_vph=rng.choice((3600, 4200, 5400))
                if fast
                else rng.choice((900, 1200, 1800)),
                free_speed_kmh=80.0 if fast else 45.0,
                upstream=(str(node), f"{road}-amont"),
                downstream=(str(node + 1), f"{road}-aval"),
            )
        )
    return sensors


if __name__ == "__main__":
    print(f"wrote {write_lyon_registry()}")
