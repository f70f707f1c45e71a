"""Assembling the publish service: the ClickHouse sink, the re-publisher for
partner cities and the query endpoint, in one process that owns the warehouse
(with chDB only one process may open it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from services.policy.federation import load_federation
from services.policy.sharing import sharing_policies
from services.publish import versions
from services.publish.batch_rows import check_observation_batch, observation_batches_table
from services.publish.clickhouse_http.door import open_sql_door
from services.publish.partner_views import refresh_partner_views
from services.publish.republish import PublicTopics, Republisher, personal_sources
from services.publish.rows import (
    aggregates_table,
    dead_letters_table,
    observations_table,
    released_table,
)
from services.publish.sink import SinkRoute, WarehouseSink
from services.publish.sql_users import ensure_operator
from services.runtime import dlq
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.kafka import make_producer, produce_bytes
from services.runtime.metrics import ServiceMetrics
from services.runtime.processor import StageRunner
from services.runtime.topics import TopicName, resolve_topics
from services.warehouse.migrations import migrate
from services.warehouse.port import Warehouse, open_warehouse, warehouse_url

log = logging.getLogger(__name__)


def default_routes(timezones: Mapping[str, str] | None = None) -> list[SinkRoute]:
    """Topic -> table; ``timezones`` (city -> its zone) decide each reading's local day."""
    return [
        SinkRoute(
            TopicName.OBSERVATIONS,
            "observations",
            partial(observations_table, timezones=timezones),
            versions.supersede,
        ),
        SinkRoute(  # members of observations.v2 land exactly as observations.v1 records
            TopicName.OBSERVATIONS_V2,
            "observations",
            partial(observation_batches_table, timezones=timezones),
            versions.supersede_in_batches,
            whole_batches=True,
            check=check_observation_batch,
        ),
        SinkRoute(TopicName.ENERGY_AGGREGATES, "energy_aggregates", aggregates_table),
        SinkRoute(TopicName.ENERGY_RELEASED, "energy_aggregates_released", released_table),
        SinkRoute(dlq.DLQ_TOPIC, "dead_letters", dead_letters_table),
    ]


def undecodable_to_dead_letters(
    node: NodeConfig, contracts: Contracts
) -> Callable[[Message, Exception], None]:
    producer = make_producer(node)
    codec = contracts.codec(dlq.DLQ_TOPIC)

    def send(message: Message, error: Exception) -> None:
        letter = dlq.dead_letter(
            stage="publish",
            reason="undecodable",
            message=str(error),
            original_value=message.value(),
            original_key=message.key(),
            source_topic=message.topic(),
            source_partition=message.partition(),
            source_offset=message.offset(),
        )
        produce_bytes(
            producer, dlq.DLQ_TOPIC, dlq.dead_letter_key("publish", None), codec.encode(letter)
        )
        producer.flush(30)  # before the sink commits past it

    return send


class Companion(Protocol):
    """A server started and stopped with publish, in its process (the federation API)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


# What runs beside publish's sink and answers from its warehouse, or None when it is
# off. Publish does not know what it is: services/node/publish_process.py hands in the
# federation API (with chDB only the publish process may open the warehouse).
Beside = Callable[
    [NodeConfig, Contracts, dict[str, CityConfig], Warehouse, CollectorRegistry],
    Companion | None,
]


class PublishService:
    """The parts of publish (sink, re-publisher, SQL door), and whatever its composer
    runs beside them, started and stopped together."""

    def __init__(
        self,
        node: NodeConfig,
        contracts: Contracts,
        cities: dict[str, CityConfig],
        metrics: ServiceMetrics,
        *,
        instance: str = "0",
        warehouse: Warehouse | None = None,
        beside: Beside | None = None,
    ):
        ensure_operator(node.state_dir)  # refuses to start on an unsafe users file
        self.warehouse = warehouse or open_warehouse(node)
        applied = migrate(self.warehouse)
        if applied:
            log.info("warehouse migrated", extra={"applied": applied})
        federation = load_federation(node)
        if not warehouse_url(node):
            # On a ClickHouse server partners get server users and GRANTs, not this
            # door (docs/runbook.md, "Partner analysts"): no DDL on someone's server.
            partners = refresh_partner_views(self.warehouse, cities, federation.energy_aggregates)
            log.info("partner views ready", extra={"partners": partners})
        self.sink = WarehouseSink(
            node,
            contracts,
            self.warehouse,
            default_routes({code: city.timezone for code, city in cities.items()}),
            metrics=metrics,
            on_undecodable=undecodable_to_dead_letters(node, contracts),
        )
        self.republisher = StageRunner(
            Republisher(
                sharing_policies(cities),
                PublicTopics.resolve(resolve_topics()),
                federation.energy_aggregates,
                personal=personal_sources(cities),
            ),
            node,
            contracts,
            instance=instance,
            metrics=metrics,
        )
        # Analysts' door (ClickHouse's HTTP interface), on sessions of its own beside the sink's.
        self.sql = open_sql_door(node, self.warehouse)
        self.beside = (
            beside(node, contracts, cities, self.warehouse, metrics.registry) if beside else None
        )

    def run(self, stop: threading.Event) -> bool:
        """Run until ``stop``; False when a component failed (the supervisor restarts us)."""
        failures: list[str] = []

        def guarded(name: str, target: Callable[[threading.Event], object]) -> threading.Thread:
            def body() -> None:
                try:
                    target(stop)
                except Exception:
                    log.exception("publish component failed", extra={"component": name})
                    failures.append(name)
                    stop.set()

            return threading.Thread(target=body, name=name, daemon=True)

        threads = [guarded("sink", self.sink.run), guarded("republish", self.republisher.run)]
        for thread in threads:
            thread.start()
        if self.sql:
            self.sql.start()
        if self.beside:
            self.beside.start()
        try:
            stop.wait()
        finally:
            if self.beside:
                self.beside.stop()
            if self.sql:
                self.sql.stop()
            for thread in threads:
                thread.join(60)
            self.warehouse.close()
        return not failures
