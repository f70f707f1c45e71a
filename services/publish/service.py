"""Assembling the publish service: the ClickHouse sink, the re-publisher for
partner cities and the query endpoint, in one process that owns the warehouse
(with chDB only one process may open it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import Message

from services.publish import versions
from services.publish.migrations import migrate
from services.publish.query import ensure_read_only, to_ipc
from services.publish.republish import PublicTopics, Republisher
from services.publish.rows import (
    aggregates_table,
    dead_letters_table,
    observations_table,
    released_table,
)
from services.publish.sharing import sharing_policies
from services.publish.sink import SinkRoute, WarehouseSink
from services.publish.warehouse import Warehouse, open_warehouse
from services.runtime import dlq
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import make_producer, produce_bytes
from services.runtime.metrics import PostHandler, ServiceMetrics
from services.runtime.processor import StageRunner

log = logging.getLogger(__name__)

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def default_routes() -> list[SinkRoute]:
    return [
        SinkRoute("observations.v1", "observations", observations_table, versions.supersede),
        SinkRoute("energy.aggregates.v1", "energy_aggregates", aggregates_table),
        SinkRoute("energy.aggregates.released.v2", "energy_aggregates_released", released_table),
        SinkRoute(dlq.DLQ_TOPIC, "dead_letters", dead_letters_table),
    ]


def sql_endpoint(warehouse: Warehouse) -> PostHandler:
    """POST /v1/sql: a read query in, an Arrow stream out (loopback; the CLI's path)."""

    def handle(body: bytes) -> tuple[int, str, bytes]:
        try:
            table = warehouse.query_arrow(ensure_read_only(body.decode("utf-8")))
        except CiteplusError as exc:
            return 400, "text/plain; charset=utf-8", str(exc).encode()
        except Exception as exc:  # ClickHouse's own message says what is wrong
            return 400, "text/plain; charset=utf-8", str(exc).encode()
        return 200, ARROW_STREAM, to_ipc(table)

    return handle


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


class PublishService:
    """The three parts of publish, started and stopped together."""

    def __init__(
        self,
        node: NodeConfig,
        contracts: Contracts,
        cities: dict[str, CityConfig],
        metrics: ServiceMetrics,
        *,
        instance: str = "0",
        warehouse: Warehouse | None = None,
    ):
        self.warehouse = warehouse or open_warehouse(node)
        applied = migrate(self.warehouse)
        if applied:
            log.info("warehouse migrated", extra={"applied": applied})
        self.sink = WarehouseSink(
            node,
            contracts,
            self.warehouse,
            default_routes(),
            metrics=metrics,
            on_undecodable=undecodable_to_dead_letters(node, contracts),
        )
        from services.federation.config import load_federation

        self.republisher = StageRunner(
            Republisher(
                sharing_policies(cities), PublicTopics(), load_federation(node).energy_aggregates
            ),
            node,
            contracts,
            instance=instance,
            metrics=metrics,
        )
        self.post_routes = {"/v1/sql": sql_endpoint(self.warehouse)}
        # The federation API (services/federation) serves from this process's warehouse.
        from services.federation.hook import federation_beside_publish

        self.federation = federation_beside_publish(
            node, contracts, cities, self.warehouse, metrics.registry
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
        if self.federation:
            self.federation.start()
        try:
            stop.wait()
        finally:
            if self.federation:
                self.federation.stop()
            for thread in threads:
                thread.join(60)
            self.warehouse.close()
        return not failures
