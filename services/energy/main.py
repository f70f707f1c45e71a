"""Process entry points of energy-analytics: ``citeplus service energy-analytics``
and ``citeplus energy report``."""

from __future__ import annotations

import argparse
import logging
import uuid
from pathlib import Path

from services.runtime.paths import CITIES_DIR
from services.runtime.service_main import add_stage_arguments

log = logging.getLogger(__name__)


def topic_specs(prefix: str = ""):
    """The stage's topics (declared in deploy/topics.yaml), under ``prefix`` if given,
    and what to provision for them."""
    from services.energy.stage import ENERGY_TOPIC_NAMES, EnergyTopics
    from services.runtime.topics import resolve_topics

    registry = resolve_topics(prefix)
    return EnergyTopics.resolve(registry), registry.specs(*ENERGY_TOPIC_NAMES)


def serve(args: argparse.Namespace) -> int:
    """Run the stage until SIGTERM/SIGINT; the open batch commits (or aborts) first."""
    from services.energy.stage import (
        NAME,
        EnergyStage,
        policies_from_cities,
        timezones_from_cities,
    )
    from services.energy.windows import HOUR_US
    from services.runtime.service_main import run_stage

    topics, specs = topic_specs(args.topic_prefix)

    def build(node, contracts, cities, metrics):
        policies = policies_from_cities(cities)
        stage = EnergyStage(
            topics,
            node=node,
            contracts=contracts,
            policies=policies,
            timezones=timezones_from_cities(cities),
            lateness_us=int(args.lateness_hours * HOUR_US),
            metrics=metrics,
            name=f"{args.topic_prefix}{NAME}",
            idle_close_us=(
                int(node.processing.idle_close_s * 1_000_000)
                if node.processing.idle_close_s > 0
                else None
            ),
        )
        log.info(
            "energy stage configured",
            extra={
                "inputs": stage.input_topics,
                "lateness_hours": args.lateness_hours,
                "idle_close_s": node.processing.idle_close_s,
                "policies": {
                    c: [p.min_meters, p.dominance_share, sorted(p.non_residential)]
                    for c, p in policies.items()
                },
            },
        )
        return stage

    return run_stage(
        NAME,
        build,
        args,
        specs=specs if args.topic_prefix else None,
        dead_letter_topic=topics.dead_letters,
    )


def report(args: argparse.Namespace) -> int:
    """Read the aggregates topic (latest version per window) and print the figures."""
    from confluent_kafka import KafkaError

    from services.energy.report import latest, render
    from services.runtime.cities import load_cities
    from services.runtime.config import load_node_config
    from services.runtime.errors import CiteplusError
    from services.runtime.kafka import make_consumer
    from services.runtime.provisioning import connect_contracts

    cities = load_cities(Path(args.cities))
    if args.city not in cities:
        raise CiteplusError(f"unknown city {args.city!r}; known: {', '.join(sorted(cities))}")
    node = load_node_config()
    topics, specs = topic_specs(args.topic_prefix)
    contracts = connect_contracts(node, specs)
    codec = contracts.codec(topics.aggregates)
    consumer = make_consumer(
        node, group_id=f"citeplus.report.{uuid.uuid4().hex}", **{"enable.partition.eof": True}
    )
    metadata = consumer.list_topics(topics.aggregates, timeout=15).topics[topics.aggregates]
    if metadata.error is not None:
        raise CiteplusError(f"cannot read {topics.aggregates}: {metadata.error}")
    consumer.subscribe([topics.aggregates])
    remaining, records = set(metadata.partitions), []
    try:
        while remaining:
            for message in consumer.consume(1000, 2.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                    continue
                record = codec.decode(message.value())
                if record["city"] == args.city and record["carrier"] == args.carrier:
                    records.append(record)
    finally:
        consumer.close()
    current = latest(records)
    print(
        render(
            current,
            city=args.city,
            zone=args.zone,
            sector=args.sector,
            carrier=args.carrier,
            tz=cities[args.city].timezone,
        )
    )
    return 0


def register(
    commands: argparse._SubParsersAction, service_commands: argparse._SubParsersAction
) -> None:
    """Add ``citeplus service energy-analytics`` and ``citeplus energy report``."""
    parser = service_commands.add_parser(
        "energy-analytics",
        help="windowed energy aggregates with statistical secrecy -> energy.aggregates.v1 "
        "(provisional, internal) and energy.aggregates.released.v2 (once per closed day)",
        description="Aggregate energy observations per city x zone x carrier x sector in "
        "windows of 15 minutes, 1 hour and the city's local day (its city file's `timezone`: "
        "23 or 25 hours on DST days), apply each city's statistical-secrecy "
        "policy (its city file's `secrecy:` block), keep provisional upserts internal and "
        "release every window once, when its day closes.",
    )
    add_stage_arguments(parser)
    parser.add_argument(
        "--lateness-hours",
        type=float,
        default=48.0,
        help="how long after a local day ends its windows still accept data (default: 48)",
    )
    parser.add_argument(
        "--topic-prefix",
        default="",
        help="run on prefixed copies of the topics (tests, side-by-side runs)",
    )
    parser.set_defaults(handler=serve)

    energy = commands.add_parser("energy", help="energy aggregates: figures for energy teams")
    actions = energy.add_subparsers(dest="energy_command", metavar="ACTION")
    actions.required = True
    show = actions.add_parser(
        "report",
        help="average day, peak hour per day, week-on-week and year-on-year change",
        description="Read energy.aggregates.v1 (latest version of each window) and print "
        "a zone's load profile, its peak hour per day and its day-to-day changes. Withheld "
        "cells are left out.",
    )
    show.add_argument("--city", required=True, help="city code")
    show.add_argument("--zone", default="*", help="zone code, or * for the city (default)")
    show.add_argument("--sector", default="*", help="sector, or * for all (default)")
    show.add_argument("--carrier", default="electricity", help="default: electricity")
    show.add_argument("--cities", default=str(CITIES_DIR), help="directory of city files")
    show.add_argument("--topic-prefix", default="", help=argparse.SUPPRESS)
    show.set_defaults(handler=report)
