"""``citeplus simulate``: deterministic, realistic, and readable by ingest as it is.

Everything here is pure logic: payloads are parsed with the real ingest
parsers, pushes go through httpx's mock transport, files to a temp folder.
"""

from __future__ import annotations

import json
import re
import socket
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.cli import main
from services.ingest.batch import ParseResult
from services.ingest.formats import parse_payload
from services.runtime.cities import (
    CityConfig,
    SourceConfig,
    load_cities,
    load_city,
    load_registry,
)
from services.runtime.errors import ConfigError
from services.simulate.files import write_payloads
from services.simulate.generator import (
    AIR_SOURCES,
    ENERGY_SOURCES,
    STATION_SOURCES,
    TRAFFIC_SOURCES,
    Payload,
    Simulation,
    SimulationConfig,
    generate,
)
from services.simulate.loadcurve import (
    CLIMATES,
    BusinessHours,
    HouseholdHabits,
    business_share,
    daily_temperature,
    household_kw,
)
from services.simulate.population import (
    CITIES,
    LYON_REGISTRY_FILE,
    ZONE_PREFIX,
    lyon_registry_sites,
    plan_sites,
    render_registry,
)
from services.simulate.push import Pusher, PushError

CITIES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "cities"
SMALL = SimulationConfig(meters=60, days=2)
PARIS_TIME = ZoneInfo("Europe/Paris")


@pytest.fixture(scope="module")
def cities() -> dict[str, CityConfig]:
    return load_cities(CITIES_DIR)


@pytest.fixture(scope="module")
def payloads(cities: dict[str, CityConfig]) -> list[Payload]:
    return list(generate(SMALL, cities))


@lru_cache(maxsize=1024)
def parse(body: bytes, source: SourceConfig) -> ParseResult:
    """Ingest's parser, once per payload: several tests read the same payloads."""
    return parse_payload(body, source)


def of(payloads: list[Payload], city: str, source: str) -> list[Payload]:
    found = [p for p in payloads if p.city == city and p.source == source]
    assert found, (city, source)
    return found


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(cities: dict[str, CityConfig]) -> None:
    config = SimulationConfig(meters=25, days=1, resolution_minutes=30)
    first = [(p.city, p.source, p.body) for p in generate(config, cities)]
    again = [(p.city, p.source, p.body) for p in generate(config, cities)]
    assert first == again


def test_another_seed_gives_other_data(cities: dict[str, CityConfig]) -> None:
    config = SimulationConfig(meters=25, days=1, resolution_minutes=30)
    other = SimulationConfig(meters=25, days=1, resolution_minutes=30, seed=7)
    first = {(p.city, p.source): p.body for p in generate(config, cities)}
    second = {(p.city, p.source): p.body for p in generate(other, cities)}
    assert first.keys() == second.keys()
    for city in CITIES:
        assert first[(city, ENERGY_SOURCES[city])] != second[(city, ENERGY_SOURCES[city])], city


def test_leaving_out_air_and_traffic_keeps_the_energy_bytes(
    cities: dict[str, CityConfig],
) -> None:
    config = SimulationConfig(meters=25, days=1, resolution_minutes=60)
    bare = SimulationConfig(
        meters=25, days=1, resolution_minutes=60, air=False, traffic=False, stations=False
    )
    energy = [p.body for p in generate(config, cities) if p.source in ENERGY_SOURCES.values()]
    assert energy == [p.body for p in generate(bare, cities)]


# --- every payload parses, with the rows it claims -------------------------------------------


def test_every_payload_parses_without_rejection(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    seen = set()
    for payload in payloads:
        source = cities[payload.city].source(payload.source)
        result = parse(payload.body, source)
        assert result.rejected == [], (payload.city, payload.source, result.rejected[:2])
        assert result.skipped == 0
        assert result.accepted_rows == payload.readings > 0
        seen.add((payload.city, payload.source))
    expected = {
        (c, s) for table in (ENERGY_SOURCES, AIR_SOURCES, TRAFFIC_SOURCES) for c, s in table.items()
    } | {(c, s) for _, table, _ in STATION_SOURCES for c, s in table.items()}
    assert seen == expected


def test_energy_payloads_hold_whole_meter_days(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    for city in CITIES:
        source = cities[city].source(ENERGY_SOURCES[city])
        meters: Counter[str] = Counter()
        for payload in of(payloads, city, source.id):
            result = parse(payload.body, source)
            assert all(entity.row_count == 144 for entity in result.entities), city
            meters.update(entity.entity_id for entity in result.entities)
        assert len(meters) == SMALL.meters, city
        assert set(meters.values()) == {SMALL.days}, city  # once per day, every day


def test_air_and_traffic_come_hourly_per_station(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    for city in CITIES:
        for table, stations in ((AIR_SOURCES, 3), (TRAFFIC_SOURCES, 6)):
            source = cities[city].source(table[city])
            for payload in of(payloads, city, source.id):
                result = parse(payload.body, source)
                assert len(result.entities) == stations, (city, source.id)
                assert all(20 <= e.row_count <= 24 for e in result.entities), (city, source.id)
                if source.format != "csv":
                    assert all(e.event_times_us for e in result.entities), (city, source.id)


def test_dst_days_have_138_and_150_intervals(cities: dict[str, CityConfig]) -> None:
    for day, intervals in ((date(2025, 3, 30), 138), (date(2025, 10, 26), 150)):
        config = SimulationConfig(
            cities=("paris", "lyon"),
            meters=12,
            days=1,
            start=day,
            air=False,
            traffic=False,
            stations=False,
        )
        for payload in generate(config, cities):
            result = parse(payload.body, cities[payload.city].source(payload.source))
            assert result.rejected == []
            assert {e.row_count for e in result.entities} == {intervals}, payload.city


# --- formats that matter to normalise ---------------------------------------------------------


def test_paris_csv_uses_decimal_commas_and_naive_local_times(payloads: list[Payload]) -> None:
    text = of(payloads, "paris", "enedis-courbes-charge")[0].body.decode()
    header, first, *_ = text.splitlines()
    assert header == "prm;iris;secteur;horodate;pas;energie_kwh"
    prm, zone, sector, when, step, kwh = first.split(";")
    assert re.fullmatch(r"\d{14}", prm)
    assert zone.startswith("75101") and len(zone) == 9
    assert sector in ("residentiel", "professionnel", "tertiaire")
    assert when == "2025-01-13 00:00:00"  # local midnight, no offset
    assert step == "PT10M"
    assert re.fullmatch(r"\d+,\d{3}", kwh)
    assert "." not in text


def test_paris_autumn_dst_day_repeats_the_naive_hour(cities: dict[str, CityConfig]) -> None:
    config = SimulationConfig(
        cities=("paris",),
        meters=1,
        days=1,
        start=date(2025, 10, 26),
        air=False,
        traffic=False,
        stations=False,
    )
    (payload,) = generate(config, cities)
    times = [line.split(";")[3] for line in payload.body.decode().splitlines()[1:]]
    assert times.count("2025-10-26 02:00:00") == 2
    assert times.count("2025-10-26 01:50:00") == 1


def test_bordeaux_ndjson_in_wh_with_epoch_seconds(payloads: list[Payload]) -> None:
    first = json.loads(of(payloads, "bordeaux", "releves-compteurs")[0].body.splitlines()[0])
    assert set(first) == {"pdl", "iris", "segment", "debut", "duree_s", "energie_wh"}
    assert isinstance(first["energie_wh"], int)
    assert first["duree_s"] == 600
    assert datetime.fromtimestamp(first["debut"], UTC) == datetime(2025, 1, 12, 23, tzinfo=UTC)
    assert first["segment"] in ("RES", "PRO", "ENT")


def test_angers_headerless_csv_in_utc_kw(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    source = cities["angers"].source("courbes-charge-compteurs")
    body = of(payloads, "angers", source.id)[0].body
    entity = parse(body, source).entities[0]
    assert entity.columns["debut_utc"][0] == "2025-01-12T23:00:00+00:00"
    assert entity.columns["pas_minutes"][0] == "10"
    assert isinstance(entity.columns["puissance_moyenne_kw"][0], float)


def registers(payloads: list[Payload], source: SourceConfig, column: str) -> dict[str, list[float]]:
    """Every entity's values of ``column`` in time order, across all payloads."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for payload in payloads:
        for entity in parse(payload.body, source).entities:
            assert entity.event_times_us, entity.entity_id
            values = [float(v) for v in entity.columns[column]]
            series[entity.entity_id].extend(zip(entity.event_times_us, values, strict=True))
    return {entity: [v for _, v in sorted(points)] for entity, points in series.items()}


def test_linky_indexes_never_decrease_and_split_into_tariff_registers(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    source = cities["lyon"].source("linky-habitat")
    lyon = of(payloads, "lyon", source.id)
    east = registers(lyon, source, "EAST")
    assert len(east) == SMALL.meters
    for entity, values in east.items():
        assert len(values) == SMALL.days * 144
        assert all(b >= a for a, b in pairwise(values)), entity
        assert values[-1] > values[0], entity
        assert re.fullmatch(r"\d{12}", entity)
    for payload in lyon:
        for meter in parse(payload.body, source).entities:
            columns = meter.columns
            assert all(re.fullmatch(r"[EH]\d{12}", t) for t in columns["DATE@time"])
            if "EASF02" in columns:
                for total, low, high in zip(
                    columns["EAST"], columns["EASF01"], columns["EASF02"], strict=True
                ):
                    assert int(low) + int(high) == int(total)


def test_linky_frames_carry_winter_and_summer_season_letters(
    cities: dict[str, CityConfig],
) -> None:
    source = cities["lyon"].source("linky-habitat")
    for day, letter in ((date(2025, 1, 13), "H"), (date(2025, 7, 14), "E")):
        config = SimulationConfig(
            cities=("lyon",), meters=2, days=1, start=day, air=False, traffic=False, stations=False
        )
        (payload,) = generate(config, cities)
        meter = parse(payload.body, source).entities[0]
        assert meter.columns["DATE@time"][0] == f"{letter}{day:%y%m%d}000000"
        midnight = datetime(day.year, day.month, day.day, tzinfo=PARIS_TIME)
        assert meter.event_times_us[0] == int(midnight.timestamp()) * 1_000_000


def test_sdm_meter_indexes_never_decrease(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    source = cities["nice"].source("compteurs-communicants")
    nice = of(payloads, "nice", source.id)
    series = registers(nice, source, "totalActiveEnergyImport")
    assert len(series) == SMALL.meters
    for entity, values in series.items():
        assert all(b >= a for a, b in pairwise(values)), entity
    meter = parse(nice[0].body, source).entities[0]
    assert meter.entity_type in ("ACMeasurement", "ThreePhaseAcMeasurement")
    assert meter.columns["totalActiveEnergyImport@unitCode"][0] == "KWH"
    assert str(meter.columns["zone"][0]).startswith(ZONE_PREFIX["nice"])
    assert meter.columns["sector"][0] in ("residential", "professional", "tertiary")


# --- load curves ----------------------------------------------------------------------------

WEEKDAY, SATURDAY = date(2025, 1, 14), date(2025, 1, 18)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


def day_mean(curve: object, day: date) -> float:
    points = [curve(at(day, h, m)) for h in range(24) for m in (5, 35)]
    return sum(points) / len(points)


@pytest.mark.parametrize("heating", [False, True])
def test_household_evening_peak_above_night_base(heating: bool) -> None:
    habits = HouseholdHabits(electric_heating=heating, water_heater=True)
    for day in (WEEKDAY, SATURDAY):
        night = household_kw(at(day, 3, 30), 5.0, habits)
        evening = household_kw(at(day, 19, 30), 5.0, habits)
        morning = household_kw(at(day, 7, 30), 5.0, habits)
        assert evening > 2 * night if not heating else evening > night + 0.8
        assert morning > night


def test_business_weekdays_above_weekends() -> None:
    office = BusinessHours(opens_h=8, closes_h=18, saturday=0.15, sunday=0.0, base=0.35)
    shop = BusinessHours(opens_h=9, closes_h=19.5, saturday=0.9, sunday=0.1, base=0.2)
    for hours in (office, shop):
        weekday = day_mean(lambda t, h=hours: business_share(t, 8.0, h), WEEKDAY)
        sunday = day_mean(lambda t, h=hours: business_share(t, 8.0, h), date(2025, 1, 19))
        assert weekday > 1.5 * sunday
        assert business_share(at(WEEKDAY, 11), 8.0, hours) > 2 * business_share(
            at(WEEKDAY, 3), 8.0, hours
        )


def test_winter_heating_raises_consumption_on_a_colder_day() -> None:
    heated = HouseholdHabits(electric_heating=True, water_heater=False)
    unheated = HouseholdHabits(electric_heating=False, water_heater=False)
    cold = day_mean(lambda t: household_kw(t, -2.0, heated), WEEKDAY)
    mild = day_mean(lambda t: household_kw(t, 10.0, heated), WEEKDAY)
    assert cold > mild * 1.5
    assert day_mean(lambda t: household_kw(t, -2.0, unheated), WEEKDAY) == pytest.approx(
        day_mean(lambda t: household_kw(t, 10.0, unheated), WEEKDAY)
    )


def test_daily_temperatures_are_wintry_in_january_and_depend_on_the_seed() -> None:
    january = [daily_temperature(date(2025, 1, d), CLIMATES["paris"], 42) for d in range(1, 29)]
    july = [daily_temperature(date(2025, 7, d), CLIMATES["paris"], 42) for d in range(1, 29)]
    assert min(january) > -5
    assert max(january) < 13 < min(july)
    assert daily_temperature(date(2025, 1, 13), CLIMATES["paris"], 7) != january[12]


def test_simulated_city_load_peaks_in_the_evening(
    cities: dict[str, CityConfig], payloads: list[Payload]
) -> None:
    """The sum over Paris's residential meters: evening above night, as real feeders show."""
    source = cities["paris"].source("enedis-courbes-charge")
    by_hour: Counter[int] = Counter()
    for payload in of(payloads, "paris", source.id):
        for meter in parse(payload.body, source).entities:
            if meter.columns["secteur"][0] != "residentiel":
                continue
            for when, kwh in zip(
                meter.columns["horodate"], meter.columns["energie_kwh"], strict=True
            ):
                by_hour[int(str(when)[11:13])] += kwh
    assert by_hour[19] > 1.5 * by_hour[4]
    assert by_hour[8] > by_hour[4]


# --- population and statistical secrecy --------------------------------------------------------


@pytest.mark.parametrize("city", CITIES)
def test_every_city_has_small_zones_and_a_dominated_zone(
    cities: dict[str, CityConfig], city: str
) -> None:
    simulation = Simulation(SimulationConfig(cities=(city,), meters=2000), cities)
    meters = simulation.cities[0].meters
    zones = Counter(m.zone for m in meters)
    assert all(z.startswith(ZONE_PREFIX[city]) and len(z) == 9 for z in zones)
    assert 2 <= sum(1 for n in zones.values() if n < 10) <= 4
    assert sum(1 for n in zones.values() if n >= 20) >= 15
    (big,) = [m for m in meters if m.big]
    assert zones[big.zone] >= 10  # the count rule passes: only dominance can suppress it
    neighbours = [m for m in meters if m.zone == big.zone and not m.big]
    assert big.scale_kw > 100 * max(m.scale_kw for m in neighbours)
    assert Counter(m.sector for m in meters).most_common(1)[0][0] == "residential"


def test_the_dominant_site_exceeds_85_percent_of_its_zone_every_hour(
    cities: dict[str, CityConfig],
) -> None:
    config = SimulationConfig(
        cities=("paris",), meters=120, days=7, air=False, traffic=False, stations=False
    )
    simulation = Simulation(config, cities)
    (big,) = [m for m in simulation.cities[0].meters if m.big]
    source = cities["paris"].source("enedis-courbes-charge")
    zone_total: Counter[str] = Counter()
    big_total: Counter[str] = Counter()
    for payload in simulation:
        for meter in parse(payload.body, source).entities:
            if meter.columns["iris"][0] != big.zone:
                continue
            for when, kwh in zip(
                meter.columns["horodate"], meter.columns["energie_kwh"], strict=True
            ):
                hour = str(when)[:13]
                zone_total[hour] += kwh
                if meter.entity_id == big.entity:
                    big_total[hour] += kwh
    assert len(zone_total) == 7 * 24
    assert min(big_total[h] / zone_total[h] for h in zone_total) > 0.85


def test_even_a_small_population_has_the_special_zones() -> None:
    sites = plan_sites("bordeaux", 40, 42)
    assert sites[0].big
    zones = Counter(s.zone for s in sites)
    assert zones[sites[0].zone] == 11
    assert sum(1 for n in zones.values() if n < 10) >= 3
    assert len({s.entity for s in sites}) == len(sites) == 40


# --- the Lyon registry -------------------------------------------------------------------------


def test_registry_file_matches_the_population() -> None:
    committed = LYON_REGISTRY_FILE.read_text(encoding="utf-8")
    assert committed == render_registry(lyon_registry_sites()), (
        "regenerate it: python -m services.simulate.population"
    )
    entries = load_registry(LYON_REGISTRY_FILE)
    zones = Counter(entry.zone for entry in entries.values())
    assert len(entries) == 600
    assert 20 <= len(zones) <= 30
    assert 2 <= sum(1 for n in zones.values() if n < 10) <= 4
    assert all(re.fullmatch(r"\d{12}", entity) for entity in entries)


def test_lyon_simulates_exactly_the_registry_meters(cities: dict[str, CityConfig]) -> None:
    source = cities["lyon"].source("linky-habitat")
    assert source.registry == LYON_REGISTRY_FILE.resolve()
    entries = load_registry(source.registry)
    full = Simulation(SimulationConfig(cities=("lyon",)), cities).cities[0].meters
    assert [(m.entity, m.zone, m.sector) for m in full] == [
        (entity, e.zone, e.sector) for entity, e in entries.items()
    ]
    assert sum(m.big for m in full) == 1
    capped = Simulation(SimulationConfig(cities=("lyon",), meters=50), cities).cities[0].meters
    assert [m.entity for m in capped] == list(entries)[:50]


REGISTRY_CITY = """\
code: testville
name: Testville
sources:
  - id: tic
    format: linky-tic
    dataset: tic
    domain: energy
    token: env:CITEPLUS_TOKEN_TEST
    registry: {path}
"""


def city_with_registry(tmp_path: Path, registry: str, path: str = "meters.csv") -> Path:
    (tmp_path / "meters.csv").write_text(registry, encoding="utf-8")
    city = tmp_path / "testville.yaml"
    city.write_text(REGISTRY_CITY.format(path=path), encoding="utf-8")
    return city


def test_a_valid_registry_is_resolved_beside_the_city_file(tmp_path: Path) -> None:
    city = load_city(city_with_registry(tmp_path, "entity,zone,sector\n1,z1,residential\n"))
    source = city.source("tic")
    assert source.registry == (tmp_path / "meters.csv").resolve()
    assert load_registry(source.registry)["1"].zone == "z1"


@pytest.mark.parametrize(
    ("registry", "path", "message"),
    [
        ("meter,zone,sector\n1,z,r\n", "meters.csv", "header"),
        ("entity,zone,sector\n1,z,r\n2,z,r\n1,y,r\n", "meters.csv", "line 4"),
        ("entity,zone,sector\n1,,r\n", "meters.csv", "line 2"),
        ("entity,zone,sector\n", "meters.csv", "no entity"),
        ("entity,zone,sector\n1,z,r\n", "missing.csv", "does not exist"),
        ("entity,zone,sector\n1,z,r\n", "/etc/meters.csv", "relative"),
    ],
)
def test_a_bad_registry_names_the_city_file_and_key(
    tmp_path: Path, registry: str, path: str, message: str
) -> None:
    city = city_with_registry(tmp_path, registry, path)
    with pytest.raises(ConfigError) as caught:
        load_city(city)
    text = str(caught.value)
    assert str(city) in text
    assert "sources[0].registry" in text
    assert message in text


# --- delivery: push and files --------------------------------------------------------------------


def tiny(cities: dict[str, CityConfig]) -> Simulation:
    config = SimulationConfig(cities=("bordeaux",), meters=40, days=1, resolution_minutes=60)
    return Simulation(config, cities)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch, cities: dict[str, CityConfig]) -> None:
    for source in cities["bordeaux"].sources:
        if source.token.startswith("env:"):
            monkeypatch.setenv(source.token[4:], f"token-{source.id}")


def test_push_sends_each_source_with_its_token_and_retries_503(
    cities: dict[str, CityConfig], tokens: None
) -> None:
    simulation = tiny(cities)
    seen: list[tuple[str, str, str]] = []
    busy = {"left": 2}

    def answer(request: httpx.Request) -> httpx.Response:
        if busy["left"]:
            busy["left"] -= 1
            return httpx.Response(503, json={"error": "broker unavailable", "retry": True})
        seen.append(
            (request.url.path, request.headers["Authorization"], request.headers["Content-Type"])
        )
        rows = len(request.content.splitlines())
        return httpx.Response(200, json={"accepted": rows, "rejected": 0})

    sleeps: list[float] = []
    pusher = Pusher(
        "http://node:8000/",
        simulation.sources(),
        client=httpx.Client(transport=httpx.MockTransport(answer)),
        sleep=sleeps.append,
    )
    report = pusher.push(simulation)
    assert sleeps == [0.5, 1.0]
    assert report.ok
    totals = report.totals[("bordeaux", "releves-compteurs")]
    assert totals.accepted == totals.readings == 40 * 24
    assert (
        "/v1/cities/bordeaux/sources/releves-compteurs/records",
        "Bearer token-releves-compteurs",
        "application/x-ndjson",
    ) in seen
    assert len(seen) == simulation.payload_count()


def test_push_stops_a_source_the_node_refuses(cities: dict[str, CityConfig], tokens: None) -> None:
    simulation = Simulation(
        SimulationConfig(
            cities=("bordeaux",), meters=200, days=1, air=False, traffic=False, stations=False
        ),
        cities,
    )

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unknown token for this source"})

    pusher = Pusher(
        "http://node:8000",
        simulation.sources(),
        client=httpx.Client(transport=httpx.MockTransport(refuse)),
    )
    report = pusher.push(simulation)
    totals = report.totals[("bordeaux", "releves-compteurs")]
    assert totals.failed == 1 and totals.skipped == totals.payloads - 1 > 0
    assert not report.ok
    assert "unknown token" in report.errors[0]


def test_push_gives_up_when_the_node_is_unreachable(
    cities: dict[str, CityConfig], tokens: None
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    pusher = Pusher(
        "http://node:8000",
        tiny(cities).sources(),
        client=httpx.Client(transport=httpx.MockTransport(down)),
        attempts=3,
        sleep=lambda s: None,
    )
    with pytest.raises(PushError, match="after 3 attempts"):
        pusher.push(tiny(cities))


def test_a_source_without_token_is_skipped_and_reported(
    cities: dict[str, CityConfig], tokens: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CITEPLUS_TOKEN_BORDEAUX_COMPTEURS")

    def accept(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"accepted": 1, "rejected": 0})

    simulation = tiny(cities)
    pusher = Pusher(
        "http://node:8000",
        simulation.sources(),
        client=httpx.Client(transport=httpx.MockTransport(accept)),
    )
    assert set(pusher.unusable) == {("bordeaux", "releves-compteurs")}
    report = pusher.push(simulation)
    energy = report.totals[("bordeaux", "releves-compteurs")]
    assert energy.skipped == energy.payloads == 1 and energy.accepted == 0
    assert report.totals[("bordeaux", "rocade-trafic")].accepted == 1
    assert "CITEPLUS_TOKEN_BORDEAUX_COMPTEURS" in report.errors[0]
    assert not report.ok


def test_no_token_at_all_fails_before_anything_is_generated(
    cities: dict[str, CityConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    for source in cities["bordeaux"].sources:
        if source.token.startswith("env:"):
            monkeypatch.delenv(source.token[4:], raising=False)
    with pytest.raises(ConfigError, match="no source token"):
        Pusher("http://node:8000", tiny(cities).sources())


def test_files_are_written_per_city_and_source(
    cities: dict[str, CityConfig], tmp_path: Path
) -> None:
    report = write_payloads(tiny(cities), tmp_path)
    folder = tmp_path / "bordeaux" / "releves-compteurs"
    assert sorted(p.name for p in folder.iterdir()) == ["0001.ndjson"]
    assert (tmp_path / "bordeaux" / "atmo-na-qualite-air" / "0001.json").is_file()
    assert report.totals[("bordeaux", "releves-compteurs")].readings == 40 * 24
    with pytest.raises(Exception, match="already holds files"):
        write_payloads(tiny(cities), tmp_path)


def test_cli_dry_run_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            "--cities",
            "nice,angers",
            "--meters",
            "20",
            "--days",
            "1",
            "--resolution-minutes",
            "60",
            "--no-traffic",
            "--no-stations",
            "--dry-run",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "compteurs-communicants" in out and "courbes-charge-compteurs" in out
    assert "trafic" not in out
    assert re.search(r"total\s+4\s+1,1\d\d", out)


def test_cli_refuses_an_unknown_city() -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--cities", "paris,marseille", "--dry-run"])


def test_attempts_option_sets_how_long_a_push_waits_for_the_node(
    tokens: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--attempts` reaches the pusher: a node restarting its ingest under a test
    (crash-safety) gets more than the default ~15 s, and 0 is refused."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every attempt is refused
    argv = ["simulate", "--cities", "bordeaux", "--meters", "1", "--days", "1", "--quiet"]
    argv += ["--no-air", "--no-traffic", "--no-stations", "--url", f"http://127.0.0.1:{port}"]
    assert main([*argv, "--attempts", "2"]) == 2
    assert "still after 2 attempts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--attempts", "0"])
