"""The five cities' energy formats give identical observations for identical readings.

The same meters and the same integer-Wh readings are rendered by ``citeplus
simulate``'s renderer of each city (Paris kWh per interval in naive local time,
Bordeaux Wh per interval in epoch seconds, Lyon cumulative Linky indexes with
season letters, Nice cumulative NGSI-LD kWh registers, Angers average kW in UTC),
parsed by ingest's own parsers, passed on as anonymise would with every field
kept, and normalised. Every city must give, per meter, the same kWh value for
the same UTC interval, with the same zone, sector, unit and metric; the two
register formats only lack the very last interval, which needs the next reading.
Run over both daylight-saving days.
"""

from __future__ import annotations

from datetime import date

import pytest

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.runtime.cities import load_cities, load_registry
from services.runtime.errors import RejectedInput
from services.runtime.paths import CITIES_DIR
from services.simulate.formats import ENERGY_RENDERERS
from services.simulate.generator import ENERGY_SOURCES, Simulation, SimulationConfig
from testkit.energy_blocks import blocks
from testkit.normalise import Run, from_raw, normaliser, points

CUMULATIVE = {"lyon", "nice"}


def normalise_city(code: str, meters, energy_blocks) -> tuple[dict, list[dict]]:
    cities = load_cities(CITIES_DIR)
    source = cities[code].source(ENERGY_SOURCES[code])
    run = Run(normaliser(cities[code]))
    by_entity = {m.entity: m for m in meters}
    observations = []
    for n, block in enumerate(energy_blocks):
        parsed = parse_payload(ENERGY_RENDERERS[code](source, block), source)
        assert not parsed.rejected, parsed.rejected[:1]
        for entity in parsed.entities:
            meter = by_entity[entity.entity_id]
            # Lyon's frames carry no zone: ingest joins the meter registry
            attributes = {"zone": meter.zone, "sector": meter.sector} if code == "lyon" else {}
            raw = raw_record(
                entity, source, lineage_id=f"{code}-{n}", received_at_us=0, attributes=attributes
            )
            observations += run(from_raw(raw))
    assert not run.dropped, run.dropped
    return points(observations), observations


@pytest.mark.parametrize(
    "first_day",
    [date(2025, 10, 25), date(2025, 3, 29), date(2025, 1, 13)],
    ids=["autumn-dst", "spring-dst", "winter"],
)
def test_five_city_formats_give_identical_observations(first_day: date):
    meters, energy_blocks = blocks(first_day, 3)
    expected = {
        (meter.entity, "active_energy_import", int(t.timestamp()) * 1_000_000): (
            round(wh / 1000, 6),
            600,
            0,
        )
        for block in energy_blocks
        for meter, readings in zip(block.meters, block.energy_wh, strict=True)
        for t, wh in zip(block.starts, readings, strict=True)
    }
    last = int(energy_blocks[-1].starts[-1].timestamp()) * 1_000_000
    describe = None
    for code in ("paris", "bordeaux", "lyon", "nice", "angers"):
        got, observations = normalise_city(code, meters, energy_blocks)
        want = expected
        if code in CUMULATIVE:  # the last interval needs the next day's first reading
            want = {k: v for k, v in expected.items() if k[2] != last}
        assert got == want, code
        shape = {
            o["entity_pseudonym"]: (
                o["zone"],
                o["sector"],
                o["entity_type"],
                o["domain"],
                o["carrier"],
                o["metric"],
                o["unit"],
            )
            for o in observations
        }
        assert shape == (describe or shape), code
        describe = shape
    assert describe["041964309552"] == (
        "693810202",
        "residential",
        "ElectricityMeter",
        "energy",
        "electricity",
        "active_energy_import",
        "kWh",
    )


def test_a_simulated_day_of_every_source_maps_without_rejection():
    """Energy, air quality, traffic, bikes and car parks of the five cities, a few
    meters: every reading maps, and every station, road and car park has its position."""
    cities = load_cities(CITIES_DIR)
    simulation = Simulation(SimulationConfig(meters=4, days=2), cities)
    run = Run(normaliser(*cities.values()))
    registries = {
        (s.city, s.id): load_registry(s.registry) for s in simulation.sources() if s.registry
    }
    metrics: dict[str, set[str]] = {}
    for n, payload in enumerate(simulation):
        source = cities[payload.city].source(payload.source)
        parsed = parse_payload(payload.body, source)
        assert not parsed.rejected
        registry = registries.get((source.city, source.id), {})
        for entity in parsed.entities:
            entry = registry.get(entity.entity_id)
            attributes = {"zone": entry.zone, "sector": entry.sector} if entry else {}
            raw = raw_record(
                entity, source, lineage_id=f"p{n}", received_at_us=0, attributes=attributes
            )
            try:
                observations = run(from_raw(raw))
            except RejectedInput as exc:  # pragma: no cover - the assertion explains
                raise AssertionError(f"{payload.city}/{payload.source}: {exc}") from exc
            for o in observations:
                metrics.setdefault(payload.city, set()).add(o["metric"])
                assert o["unit"] and o["domain"]
                if o["metric"] == "traffic_occupancy":
                    assert all(0 <= v <= 1 for v in o["values"])
                if o["domain"] != "energy":
                    assert o["position"] is not None, (payload.city, payload.source)
    for code in ("paris", "bordeaux", "lyon", "nice", "angers"):
        assert {"active_energy_import", "no2", "pm10", "pm25", "o3"} <= metrics[code], code
        assert {"traffic_intensity", "traffic_occupancy"} <= metrics[code], code
    for code in ("lyon", "nice", "bordeaux"):
        assert {"parking_available_spots", "parking_total_spots"} <= metrics[code], code
    for code in ("lyon", "angers"):
        assert {"bike_hire_available_bikes", "bike_hire_free_slots"} <= metrics[code], code
    assert "bicycle_count" in metrics["paris"]
    for code in ("paris", "lyon", "nice", "bordeaux", "angers"):
        assert {"ev_charging_available", "ev_charging_capacity"} <= metrics[code], code
    for code in ("paris", "nice"):
        assert "air_temperature" in metrics[code], code
    assert run.dropped == {}
