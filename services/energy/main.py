"""Process entry points of energy-analytics: ``citeplus service energy-analytics``
and ``citeplus energy report``."""

from __future__ import annotations

import argparse
import logging
import uuid
from pathlib import Path

from services.policy.topics import declared_topics
from services.runtime.cities import load_cities
from services.runtime.commands import Command, cities_option, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError
from services.runtime.kafka import make_consumer
from services.runtime.provisioning import connect_contracts
from services.runtime.service_main import run_stage, stage_options
from services.runtime.topics import TopicName, resolve_topics

log = logging.getLogger(__name__)

# The stage's own modules are imported inside the commands on purpose: services/cli.py imports
# every main to build its parser, and a command loads only what it runs.


def topic_specs(prefix: str = ""):
    """The stage's topics (declared in deploy/topics.yaml), under ``prefix`` if given,
    and what to provision for them."""
    from services.energy.stage import ENERGY_TOPIC_NAMES, EnergyTopics

    registry = resolve_topics(prefix)
    names = (*ENERGY_TOPIC_NAMES, TopicName.OBSERVATIONS_V2, TopicName.ENERGY_REGROUPED_V1)
    return EnergyTopics.resolve(registry), registry.specs(*names)


def serve(args: argparse.Namespace) -> int:
    """Run the stage until SIGTERM/SIGINT; the open batch commits (or aborts) first."""
    from services.energy.stage import (
        NAME,
        EnergyStage,
        policies_from_cities,
        timezones_from_cities,
    )
    from services.energy.windows import HOUR_US

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
        topics=(lambda _node: specs) if args.topic_prefix else declared_topics,
        dead_letter_topic=topics.dead_letters,
    )


def report(args: argparse.Namespace) -> int:
    """Read the aggregates topic (latest version per window) and print the figures."""
    from confluent_kafka import KafkaError

    from services.energy.report import latest, render

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


SERVICE = Command(
    "energy-analytics",
    "windowed energy aggregates with statistical secrecy -> energy.aggregates.v1 "
    "(provisional, internal) and energy.aggregates.released.v2 (once per closed day)",
    serve,
    description="Aggregate energy observations per city x zone x carrier x sector in "
    "windows of 15 minutes, 1 hour and the city's local day (its city file's `timezone`: "
    "23 or 25 hours on DST days), apply each city's statistical-secrecy "
    "policy (its city file's `secrecy:` block), keep provisional upserts internal and "
    "release every window once, when its day closes.",
    options=(
        *stage_options(),
        option(
            "--lateness-hours",
            type=float,
            default=48.0,
            help="how long after a local day ends its windows still accept data (default: 48)",
        ),
        option(
            "--topic-prefix",
            default="",
            help="run on prefixed copies of the topics (tests, side-by-side runs)",
        ),
    ),
)

REPORT = Command(
    "report",
    "average day, peak hour per day, week-on-week and year-on-year change",
    report,
    description="Read energy.aggregates.v1 (latest version of each window) and print "
    "a zone's load profile, its peak hour per day and its day-to-day changes. Withheld "
    "cells are left out.",
    options=(
        option("--city", required=True, help="city code"),
        option("--zone", default="*", help="zone code, or * for the city (default)"),
        option("--sector", default="*", help="sector, or * for all (default)"),
        option("--carrier", default="electricity", help="default: electricity"),
        cities_option(),
        option("--topic-prefix", default="", help=argparse.SUPPRESS),
    ),
)

COMMANDS = (Command("energy", "energy aggregates: figures for energy teams", actions=(REPORT,)),)
