"""Assembling the publish service: the ClickHouse sink, the re-publisher for
partner cities and the query endpoint, in one process that owns the warehouse
(with chDB only one process may open it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from services.policy.federation import load_federation
from services.policy.sharing import sharing_policies
from services.publish import versions
from services.publish.partner_views import refresh_partner_views
from services.publish.republish import PublicTopics, Republisher, personal_sources
from services.publish.rows import (
    aggregates_table,
    dead_letters_table,
    observations_table,
    released_table,
)
from services.publish.sink import SinkRoute, WarehouseSink
from services.publish.sql_access import SqlAccess
from services.publish.sql_users import Credentials, UserStore, ensure_operator, parse_basic
from services.runtime import dlq
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import ConfigError
from services.runtime.kafka import make_producer, produce_bytes
from services.runtime.metrics import PostHandler, ServiceMetrics
from services.runtime.processor import StageRunner
from services.runtime.topics import TopicName, resolve_topics
from services.warehouse.migrations import migrate
from services.warehouse.port import Warehouse, open_warehouse, warehouse_url
from services.warehouse.query import QueryLimits, to_ipc, valid_utf8

log = logging.getLogger(__name__)

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def default_routes(timezones: Mapping[str, str] | None = None) -> list[SinkRoute]:
    """Topic -> table; ``timezones`` (city -> its zone) decide each reading's local day."""
    return [
        SinkRoute(
            TopicName.OBSERVATIONS,
            "observations",
            partial(observations_table, timezones=timezones),
            versions.supersede,
        ),
        SinkRoute(TopicName.ENERGY_AGGREGATES, "energy_aggregates", aggregates_table),
        SinkRoute(TopicName.ENERGY_RELEASED, "energy_aggregates_released", released_table),
        SinkRoute(dlq.DLQ_TOPIC, "dead_letters", dead_letters_table),
    ]


def sql_endpoint(
    warehouse: Warehouse, users: UserStore, limits: QueryLimits | None = None
) -> PostHandler:
    """POST /v1/sql: a read query in, an Arrow stream out (the CLI's path).

    HTTP Basic authentication against the users file (401 otherwise, the same
    answer for an unknown user and a wrong secret); sql_access.py decides what the
    user may run (a partner's analyst: its partner's views only); ClickHouse runs
    the query read-only and within ``limits``; invalid UTF-8 in results becomes U+FFFD.
    """
    access = SqlAccess(warehouse, users, limits or QueryLimits())
    text = "text/plain; charset=utf-8"
    # A secret check costs tens of ms of CPU on purpose; bounded, so that a flood of
    # guesses slows guessers, not the sink that shares this process.
    checking = threading.BoundedSemaphore(2)

    def authenticated(credentials: Credentials | None) -> bool | None:
        if credentials is None:
            return False
        if not checking.acquire(timeout=5):
            return None
        try:
            return users.check(credentials.user, credentials.secret)
        finally:
            checking.release()

    def handle(body: bytes, headers: Mapping[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        credentials = parse_basic(headers.get("Authorization"))
        try:
            known = authenticated(credentials)
        except ConfigError as exc:
            log.error("SQL users file refused", extra={"error": str(exc)})
            return 503, text, b"the node's SQL users file is unsafe; see the node's log\n", {}
        if known is None:
            return 503, text, b"too many logins at once; retry in a moment\n", {"Retry-After": "1"}
        if not known:
            reason = "no credentials" if credentials is None else "wrong user or secret"
            log.warning(
                "SQL query refused",
                extra={"reason": reason, "user": credentials.user if credentials else None},
            )
            return 401, text, b"authentication required (citeplus sql-users)\n", _CHALLENGE
        assert credentials is not None
        started = time.perf_counter()
        try:
            query = access.authorize(credentials.user, body.decode("utf-8"))
            table = access.run(query)
        except UnicodeDecodeError:
            return 400, text, b"the query is not UTF-8 text\n", {}
        except Exception as exc:  # ClickHouse's own message says what is wrong
            log.info("SQL query refused", extra={"user": credentials.user, "error": str(exc)[:200]})
            return 400, text, str(exc).encode("utf-8", "replace"), {}
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        facts = {"user": query.user, "partner": query.partner, "rows": table.num_rows}
        log.info("SQL query", extra={**facts, "ms": elapsed_ms})
        return 200, ARROW_STREAM, to_ipc(valid_utf8(table)), {}

    return handle


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="citeplus-sql", charset="UTF-8"'}


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
    """The three parts of publish, and whatever its composer runs beside them,
    started and stopped together."""

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
        self.post_routes = {"/v1/sql": sql_endpoint(self.warehouse, UserStore(node.state_dir))}
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
        if self.beside:
            self.beside.start()
        try:
            stop.wait()
        finally:
            if self.beside:
                self.beside.stop()
            for thread in threads:
                thread.join(60)
            self.warehouse.close()
        return not failures
