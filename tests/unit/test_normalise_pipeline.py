"""ingest → anonymise → normalise in-process, with the repository's city files: the
five energy formats give the same daily consumption per meter.

The privacy policies decide the resolution (Paris and Lyon keep 10-minute curves
with consent; Bordeaux, Nice and Angers are coarsened to local days by anonymise),
so what must agree is each meter's energy per local day, whatever the format and
the resolution. (tests/unit/test_normalise_cities.py checks the 10-minute values
themselves, with every field kept.)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import pytest

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.runtime.cities import load_cities
from services.runtime.paths import CITIES_DIR
from services.simulate.formats import ENERGY_RENDERERS
from services.simulate.generator import ENERGY_SOURCES
from testkit.energy_blocks import PARIS, SITES, blocks
from testkit.normalise import Run, normaliser

anonymise_transform = pytest.importorskip("services.anonymise.transform")
policy_module = pytest.importorskip("services.anonymise.policy")
pseudonym_module = pytest.importorskip("services.privacy.pseudonym")

DAYS = 4


def daily_energy(code: str, meters, energy_blocks) -> dict[tuple[str, date], float]:
    cities = load_cities(CITIES_DIR)
    source = cities[code].source(ENERGY_SOURCES[code])
    policy = policy_module.load_policies({code: cities[code]}).get(code, source.id)
    assert policy is not None, f"{code}/{source.id} has no privacy policy"
    pseudonymise = pseudonym_module.Pseudonymiser(b"test-key-shared-by-the-cities", "2025-01")
    run = Run(normaliser(cities[code]))
    by_entity = {m.entity: m for m in meters}
    totals: dict[tuple[str, date], float] = defaultdict(float)
    for n, block in enumerate(energy_blocks):
        parsed = parse_payload(ENERGY_RENDERERS[code](source, block), source)
        for entity in parsed.entities:
            meter = by_entity[entity.entity_id]
            attributes = {"zone": meter.zone, "sector": meter.sector} if code == "lyon" else {}
            raw = raw_record(
                entity, source, lineage_id=f"{code}-{n}", received_at_us=0, attributes=attributes
            )
            anonymised, _ = anonymise_transform.anonymise(raw, policy, pseudonymise)
            for o in run(anonymised):
                assert o["metric"] == "active_energy_import" and o["unit"] == "kWh"
                assert (o["zone"], o["sector"]) == (meter.zone, meter.sector)
                for k, value in enumerate(o["values"]):
                    start = o["start"] + k * o["step_seconds"] * 1_000_000
                    day = datetime.fromtimestamp(start / 1e6, PARIS).date()
                    totals[(o["entity_pseudonym"], day)] += value
    return totals


def test_five_formats_through_anonymise_give_the_same_daily_energy():
    first = date(2025, 10, 24)  # the autumn DST day inside
    meters, energy_blocks = blocks(first, DAYS)
    pseudonymise = pseudonym_module.Pseudonymiser(b"test-key-shared-by-the-cities", "2025-01")
    expected = defaultdict(float)
    for block in energy_blocks:
        for meter, readings in zip(block.meters, block.energy_wh, strict=True):
            for t, wh in zip(block.starts, readings, strict=True):
                expected[(pseudonymise(meter.entity), t.astimezone(PARIS).date())] += wh / 1000
    complete = {first.fromordinal(first.toordinal() + d) for d in range(DAYS - 1)}
    for code in ("paris", "bordeaux", "lyon", "nice", "angers"):
        got = daily_energy(code, meters, energy_blocks)
        for meter in SITES:
            for day in complete:  # the last day of a register format needs the next reading
                key = (pseudonymise(meter.entity), day)
                assert got[key] == pytest.approx(expected[key], abs=1e-6), (code, day)
