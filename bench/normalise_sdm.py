"""Smart Data Models entities/s through normalise's transform (no broker), per type.

Context brokers push one entity per notification, so for these sources the cost
that matters is per entity, not per reading: parse-free (the AnonymisedRecord is
built once), the timing covers ``Normaliser.normalise`` only: choosing the
measures (name matching, aliases, dropped attributes), time columns, units and
series. Inputs: the official key-values example of each type
(tests/fixtures/sdm/<Type>/example.json), the entity id varied so that no reading
is a duplicate.

    uv run python bench/normalise_sdm.py [--entities 3000] [--without-positions]

``--without-positions`` turns the ``location`` -> position step off, to show what
it costs (compare the two runs on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from services.ingest.formats import parse_payload
from services.ingest.records import raw_record
from services.normalise.mapping import compile_city
from services.normalise.transform import Normaliser
from services.normalise.vocabulary import load_vocabulary
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.errors import RejectedInput

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sdm"


def record(path: Path, source: SourceConfig) -> dict:
    parsed = parse_payload(path.read_bytes(), source)
    raw = raw_record(parsed.entities[0], source, lineage_id="bench", received_at_us=1)
    out = {k: v for k, v in raw.items() if k != "entity_id"}
    out.update(entity_pseudonym="e", key_epoch="2025-01", policy_version="bench")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=3000, help="entities per type")
    parser.add_argument(
        "--without-positions", action="store_true", help="leave the position step out"
    )
    args = parser.parse_args()
    source = SourceConfig(
        city="bench", id="s", format="sdm-keyvalues", dataset="d", domain="weather",
        entity="id", token="env:BENCH_TOKEN",
    )  # fmt: skip
    vocabulary = load_vocabulary()
    city = CityConfig("bench", "Bench", "Europe/Paris", (source,))
    mapping = compile_city(city, vocabulary)["s"]
    if args.without_positions:
        mapping = replace(mapping, position=None)
    norm = Normaliser(vocabulary, {("bench", "s"): mapping})
    print(f"{'type':28} {'entities/s':>11} {'µs/entity':>10} {'metrics':>8}")
    for folder in sorted(p for p in FIXTURES.iterdir() if (p / "example.json").exists()):
        base = record(folder / "example.json", source)
        metrics = 0
        started = time.perf_counter()
        try:
            for k in range(args.entities):
                outcome = norm.normalise({**base, "entity_pseudonym": f"e{k}"}, lambda _: None)
                metrics = len(outcome.observations)
        except RejectedInput as exc:
            print(f"{folder.name:28} {'refused':>11} {exc.reason}")
            continue
        seconds = time.perf_counter() - started
        rate = args.entities / seconds
        print(f"{folder.name:28} {rate:>11,.0f} {1e6 / rate:>10.1f} {metrics:>8}")
    print(json.dumps({"entities_per_type": args.entities, "positions": not args.without_positions}))


if __name__ == "__main__":
    main()
