"""Process entry points of normalise: ``citeplus service normalise`` and
``citeplus normalise check`` (validate the vocabulary and every mapping)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from services.policy.topics import declared_topics
from services.runtime.cities import load_cities
from services.runtime.service_main import run_stage

if TYPE_CHECKING:
    from services.normalise.mapping import SourceMapping

# The stage's own modules are imported inside the commands on purpose: services/cli.py imports
# every main to build its parser, and a command loads only what it runs.

from services.runtime.commands import Command, cities_option
from services.runtime.service_main import stage_options


def serve(args: argparse.Namespace) -> int:
    from services.normalise.stage import build_stage

    return run_stage("normalise", build_stage, args, topics=declared_topics)


def check(args: argparse.Namespace) -> int:
    from services.normalise.registers import describe
    from services.normalise.stage import compile_mappings
    from services.normalise.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    cities = load_cities(args.cities)
    mappings = compile_mappings(cities, vocabulary)
    print(f"vocabulary: {len(vocabulary.metrics)} metrics, {len(vocabulary.models)} SDM types")
    print(f"Smart Data Models types: {', '.join(sorted(vocabulary.models))}")
    for city in cities.values():
        for source in city.sources:
            mapping = mappings.get((city.code, source.id))
            if mapping is None:
                state = "no mapping (records go to the dead letters)"
            elif mapping.smart_data_models:
                extra = f" + {len(mapping.measures)} measures" if mapping.measures else ""
                state = f"Smart Data Models built-in{extra}"
            else:
                state = ", ".join(
                    f"{m.column}->{m.metric.name} ({m.kind}{describe(m, vocabulary.max_rates)})"
                    for m in mapping.measures
                )
            print(f"{city.code}/{source.id}: {state}")
            if mapping is not None:
                for note in time_notes(mapping):
                    print(f"  note: {note}")
    return 0


def time_notes(mapping: SourceMapping) -> list[str]:
    """What a platform team should know about a source's times before it runs."""
    from services.normalise.mapping import DEFAULT_LATENESS_US
    from services.normalise.timebounds import TimeBounds

    notes = []
    if mapping.format == "linky-tic":
        notes.append(
            "historique-mode frames carry no horodate: their reception time (ingest's "
            "received_at) is the event time, flagged time-from-reception; identical "
            "frames received at different times are different readings"
        )
    if any("%" in spec.format and "%z" not in spec.format for spec in mapping.times):
        notes.append(
            "local times without an offset: the repeated autumn hour is placed from the "
            "entity's previous reading, so a source that corrects readings inside that "
            "hour must send offsets"
        )
    if mapping.lateness_us != DEFAULT_LATENESS_US or mapping.bounds != TimeBounds():
        notes.append(
            f"corrections replace within {mapping.lateness_us / 3_600_000_000:g} h; "
            f"plausible times: {mapping.bounds.describe()}"
        )
    return notes


SERVICE = Command(
    "normalise",
    "map anonymised records to the common model (observations.v1)",
    serve,
    description="Consume anonymised.v1, map each source to the controlled vocabulary "
    "(deploy/vocabulary.yaml, city mapping sections), produce observations.v1 exactly once.",
    options=stage_options(),
)

COMMANDS = (
    Command(
        "normalise",
        "normalise tools (check the vocabulary and mappings)",
        actions=(
            Command(
                "check",
                "validate deploy/vocabulary.yaml and every mapping",
                check,
                options=(cities_option(),),
            ),
        ),
        metavar=None,
    ),
)
