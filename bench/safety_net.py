"""The safety net's error rates and cost, measured, not guessed.

1. False positives on public sources: the real samples (tests/fixtures/samples:
   open-data exports, Smart Data Models examples) and one simulated day of every
   city (services/simulate) go through ingest's parsers and the shipped policies of
   the public sources that receive them; the rate is the kept values the net
   flagged (removed or reported) over the kept values. Printed twice: as shipped
   (declared ``places`` left alone) and with nothing declared (every kept value
   searched: what the place detectors would say about station names, addresses and
   positions).
2. Name recall on a held-out set: names Faker generates for fr_CH and fr_CA (the
   detector's lists are fr_FR's) and fr_FR with another seed, written as
   "Prénom Nom", "M./Mme Nom" and "NOM Prénom" inside a sentence.
3. Cost: ``anonymise()`` records/s on meter-days (144 ten-minute rows, a time text
   column, energy, a quality label) and on station records (names, addresses,
   positions), with the whole net and with the previous net only (the six
   identifier detectors on strings, no numbers), in the same run.

Run: ``uv run --frozen python bench/safety_net.py`` (no broker needed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.anonymise import safety_net  # noqa: E402
from services.anonymise.policy import Policy, PolicySet, load_policies  # noqa: E402
from services.anonymise.transform import (  # noqa: E402
    KEPT,
    REMOVED_SAFETY_NET,
    REPORTED_SAFETY_NET,
    anonymise,
)
from services.privacy.pseudonym import Pseudonymiser  # noqa: E402
from services.runtime.cities import CityConfig, load_cities  # noqa: E402
from services.runtime.paths import CITIES_DIR  # noqa: E402

SAMPLES = ROOT / "tests" / "fixtures" / "samples"
T0 = 1_736_755_200_000_000  # 2025-01-13T08:00:00Z
# Real samples and the public source of the shipped city files that receives each.
PUBLIC_SAMPLES = (
    ("paris", "velo-compteurs", "opendata/paris_comptage-velo-donnees-compteurs.csv"),
    (
        "paris",
        "comptages-routiers",
        "opendata/paris_comptages-routiers-permanents_champs-elysees.head300.csv",
    ),
    ("paris", "velib-disponibilite", "opendata/velib_gbfs_station_status.first20stations.json"),
    (
        "paris",
        "enedis-conso-departement",
        "opendata/enedis_consommation-electrique-par-secteur-dactivite-departement.head10.csv",
    ),
    ("paris", "airparif-qualite-air", "smart-data-models/AirQualityObserved.normalized-ld.json"),
    ("lyon", "atmo-aura-qualite-air", "smart-data-models/AirQualityObserved.keyvalues.json"),
    ("lyon", "onlymoov-trafic", "smart-data-models/TrafficFlowObserved.normalized.json"),
    ("nice", "parcs-azur", "smart-data-models/OffStreetParking.normalized.json"),
    ("nice", "meteo-stations", "smart-data-models/WeatherObserved.normalized.json"),
    ("angers", "velo-stations", "smart-data-models/BikeHireDockingStation.keyvalues.json"),
)
HELD_OUT = (("fr_CH", 7), ("fr_CA", 7), ("fr_FR", 7))  # (locale, seed)
FORMS = ("{first} {last}", "M. {last}", "Mme {last}", "{LAST} {first}")


@dataclass
class Tally:
    kept: int = 0
    flagged: int = 0
    records: int = 0

    def add(self, decisions: dict[str, int]) -> None:
        self.records += 1
        self.kept += decisions.get(KEPT, 0)
        self.flagged += decisions.get(REMOVED_SAFETY_NET, 0) + decisions.get(REPORTED_SAFETY_NET, 0)

    @property
    def rate(self) -> float:
        return self.flagged / self.kept if self.kept else 0.0


def shipped() -> tuple[dict[str, CityConfig], PolicySet]:
    cities = load_cities(CITIES_DIR)
    return cities, load_policies(cities)


def _records(source: Any, payload: bytes, attributes: dict | None = None) -> Iterator[dict]:
    from services.ingest.formats import parse_payload
    from services.ingest.records import raw_record

    parsed = parse_payload(payload, source)
    for entity in parsed.entities:
        yield raw_record(
            entity,
            source,
            lineage_id="bench",
            received_at_us=T0,
            attributes=(attributes or {}).get(entity.entity_id),
        )


def _undeclared(policy: Policy) -> Policy:
    return replace(policy, places=frozenset())


def false_positives(*, declared: bool = True, simulate: bool = True) -> dict[str, Tally]:
    """Flagged over kept values of public sources: ``samples`` and ``simulator``."""
    cities, policies = shipped()
    pseudonymise = Pseudonymiser(b"b" * 32, "2025-01")
    tallies = {"samples": Tally(), "simulator": Tally()}

    def run(source: Any, policy: Policy, payload: bytes, tally: Tally, attributes=None) -> None:
        if policy.personal:
            return
        policy = policy if declared else _undeclared(policy)
        for record in _records(source, payload, attributes):
            tally.add(anonymise(record, policy, pseudonymise)[1].decisions)

    for city, source_id, sample in PUBLIC_SAMPLES:
        path = SAMPLES / sample
        if not path.exists():
            raise FileNotFoundError(f"fixture missing: {path}")
        source = cities[city].source(source_id)
        run(source, policies.get(city, source_id), path.read_bytes(), tallies["samples"])
    if simulate:
        from services.ingest.service import reference_attributes
        from services.simulate.generator import SimulationConfig, generate

        reference = reference_attributes(cities)
        for payload in generate(SimulationConfig(meters=12, days=1), cities):
            source = cities[payload.city].source(payload.source)
            policy = policies.get(payload.city, payload.source)
            attributes = reference.get(f"{payload.city}/{payload.source}")
            run(source, policy, payload.body, tallies["simulator"], attributes)
    return tallies


def held_out_names(locale: str, seed: int, count: int) -> list[tuple[str, str]]:
    """(form, text) pairs: ``count`` people of ``locale`` in every form, in a sentence."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    out = []
    for _ in range(count):
        first, last = fake.first_name(), fake.last_name()
        for form in FORMS:
            name = form.format(first=first, last=last, LAST=last.upper())
            out.append((form, f"merci de rappeler {name} avant midi"))
    return out


def name_recall(count: int = 500) -> dict[str, dict[str, float]]:
    """Recall per locale and form on held-out names."""
    result: dict[str, dict[str, float]] = {}
    for locale, seed in HELD_OUT:
        found: dict[str, list[bool]] = {}
        for form, text in held_out_names(locale, seed, count):
            found.setdefault(form, []).append("name" in safety_net.find(text))
        per_form = {form: sum(hits) / len(hits) for form, hits in found.items()}
        per_form["all"] = sum(sum(h) for h in found.values()) / sum(len(h) for h in found.values())
        result[locale] = per_form
    return result


# -- cost ------------------------------------------------------------------------------------
@contextmanager
def previous_net() -> Iterator[None]:
    """The net as it was: the six identifier detectors on strings behind the same
    shape pre-filter, numbers unread."""
    names = ("_UNSHAPED_IDENTIFIERS", "PLACES", "scan_numbers", "_SUSPECT_IDENTIFIERS")
    names += ("_SUSPECT_PLACES",)
    saved = {name: getattr(safety_net, name) for name in names}
    safety_net._UNSHAPED_IDENTIFIERS, safety_net.PLACES = (), ()
    safety_net.scan_numbers = lambda values, missing=(): {}  # type: ignore[assignment]
    safety_net._SUSPECT_IDENTIFIERS = safety_net._SUSPECT
    safety_net._SUSPECT_PLACES = re.compile(r"(?!)")  # never
    safety_net._VERDICTS.clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(safety_net, name, value)
        safety_net._VERDICTS.clear()


def _column(name: str, kind: str, values: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "kind": kind, "strings": [], "doubles": []}
    out.update({"longs": [], "booleans": [], "missing": []})
    out[{"string": "strings", "double": "doubles", "long": "longs"}[kind]] = values
    return out


def _meter_day(meter: int) -> dict[str, Any]:
    rows = 144
    times = [f"2025-01-13 {k // 6:02d}:{k % 6 * 10:02d}:00" for k in range(rows)]
    return {
        "city": "benchville",
        "source": "courbes",
        "dataset": "load-curves",
        "format": "csv",
        "entity_id": f"{30001234500000 + meter:014d}",
        "entity_type": None,
        "lineage_id": "bench",
        "received_at": T0,
        "row_count": rows,
        "event_times": [T0 + k * 600_000_000 for k in range(rows)],
        "columns": [
            _column("pdl", "string", [f"{30001234500000 + meter:014d}"] * rows),
            _column("horodate", "string", times),
            _column(
                "energie_kwh", "double", [0.05 + 0.001 * ((meter + k) % 300) for k in range(rows)]
            ),
            _column("index_wh", "long", [12_000_000 + 37 * k + meter for k in range(rows)]),
            _column("qualite", "string", ["reel" if k % 50 else "estime" for k in range(rows)]),
        ],
        "attributes": {},
    }


def _station(station: int) -> dict[str, Any]:
    rows = 12
    point = json.dumps(
        {"type": "Point", "coordinates": [-0.55 - station / 1e5, 47.47 + station / 1e5]}
    )
    return {
        **_meter_day(station),
        "row_count": rows,
        "event_times": [T0 + k * 600_000_000 for k in range(rows)],
        "columns": [
            _column("name", "string", [f"Station {station} Place Jean Jaurès"] * rows),
            _column(
                "address", "string", [f"{station % 90 + 1} rue Victor Hugo, 49000 Angers"] * rows
            ),
            _column("location", "string", [point] * rows),
            _column(
                "status", "string", ["working" if k % 7 else "maintenance" for k in range(rows)]
            ),
            _column("bikes", "long", [k % 20 for k in range(rows)]),
        ],
    }


def _policy(public: bool) -> Policy:
    from services.anonymise.policy import FieldRule

    if public:
        names = ("name", "address", "location", "status", "bikes")
        fields = {n: FieldRule(n, "measure") for n in names}
        return Policy(
            "benchville", "stations", "b", fields, personal=False, places=frozenset(names[:3])
        )
    fields = {
        n: FieldRule(n, "measure") for n in ("horodate", "energie_kwh", "index_wh", "qualite")
    }
    fields["pdl"] = FieldRule("pdl", "identifier")
    return Policy("benchville", "courbes", "b", fields)


def throughput(records: int = 3000) -> dict[str, dict[str, float]]:
    """Records/s and readings/s of ``anonymise()`` with the previous and the whole net."""
    pseudonymise = Pseudonymiser(b"b" * 32, "2025-01")
    result: dict[str, dict[str, float]] = {}
    for label, make, public in (("meter-days", _meter_day, False), ("stations", _station, True)):
        inputs = [make(i % 500) for i in range(records)]
        policy = _policy(public)
        rows = sum(r["row_count"] for r in inputs)
        best = {"previous": 0.0, "whole": 0.0}
        for _ in range(3):  # alternated, best of three: warm caches for both
            for net in best:
                safety_net._VERDICTS.clear()
                with previous_net() if net == "previous" else _nothing():
                    started = time.perf_counter()
                    for record in inputs:
                        anonymise(record, policy, pseudonymise)
                    seconds = time.perf_counter() - started
                best[net] = max(best[net], rows / seconds)
        result[label] = {f"{net} readings/s": value for net, value in best.items()}
        figures = result[label]
        figures["ratio"] = figures["whole readings/s"] / figures["previous readings/s"]
    return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="records per cost pass")
    parser.add_argument("--names", type=int, default=500, help="people per held-out locale")
    args = parser.parse_args(argv)

    print("false positives on public sources (flagged / kept values)")
    for declared in (True, False):
        label = "as shipped (places declared)" if declared else "nothing declared"
        for corpus, tally in false_positives(declared=declared).items():
            print(
                f"  {label:30s} {corpus:10s} {tally.flagged:6d} / {tally.kept:7d} kept values "
                f"= {100 * tally.rate:.3f}%  ({tally.records} records)"
            )
    print("name recall on held-out names (detector lists: Faker fr_FR)")
    for locale, per_form in name_recall(args.names).items():
        forms = "  ".join(f"{form!r}: {100 * rate:.1f}%" for form, rate in per_form.items())
        print(f"  {locale}: {forms}")
    print("cost: anonymise() readings/s, previous net vs whole net, same run")
    for label, figures in throughput(args.records).items():
        print(
            f"  {label:10s} previous {figures['previous readings/s']:10.0f}  "
            f"whole {figures['whole readings/s']:10.0f}  ratio {figures['ratio']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
