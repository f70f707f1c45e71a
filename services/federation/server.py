"""The federation server: the API of ``proto/`` on mutual TLS, gRPC health checking
and server reflection.

It runs inside the publish service by default (with chDB only that process may
open the warehouse, so it serves through publish's warehouse object), or alone
with ``citeplus federation serve`` when the warehouse is a ClickHouse server (or
publish is not running).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from services.federation import entities, queries
from services.federation.calls import (
    Caller,
    CallMetrics,
    CallRecord,
    FederationError,
    handled,
    invalid,
)
from services.federation.catalog import (
    DatasetInfo,
    Datasets,
    FederationTopics,
    HoldingsCache,
    listing_audience,
    vocabulary_metrics,
)
from services.federation.certs import server_credentials
from services.federation.entity_query import ENERGY_TYPE, validate_entities, validate_temporal
from services.federation.fanout import Fanout
from services.federation.health_watch import HealthWatch, warehouse_answers
from services.federation.protos import pb, rpc
from services.federation.queries import set_timestamp_ms
from services.federation.quotas import CallerQuotas
from services.federation.subscribe import StreamExpired, subscribe
from services.policy.federation import FederationConfig
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError, InfrastructureError, SchemaError
from services.runtime.registry import SchemaRegistry
from services.warehouse.port import Warehouse

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Federation"].full_name
LEVELS = {"open": pb.SHARING_LEVEL_OPEN, "shared": pb.SHARING_LEVEL_SHARED}
KINDS = {True: pb.DATASET_KIND_ENERGY_AGGREGATES, False: pb.DATASET_KIND_OBSERVATIONS}
_DOMAIN = r"^[a-z][a-z0-9_-]{0,31}$"


class FederationServicer(rpc.FederationServicer):
    def __init__(
        self,
        *,
        node: NodeConfig,
        config: FederationConfig,
        cities: dict[str, CityConfig],
        warehouse: Warehouse,
        contracts: Contracts,
        topics: FederationTopics,
        registry: CollectorRegistry | None = None,
    ):
        self.node = node
        self.config = config
        self.identity = config.identity
        self.datasets = Datasets(cities, config.energy_aggregates, config.identity)
        self.warehouse = warehouse
        self.contracts = contracts
        self.topics = topics
        self.holdings = HoldingsCache(warehouse)
        self.vocabulary = vocabulary_metrics()
        self.schemas = SchemaRegistry(node.registry.url)
        self.fanout = Fanout(config)
        self.call_metrics = CallMetrics(registry)
        self.subscriptions = CallerQuotas.of("subscriptions", config.limits, config.identity)
        self.queries = CallerQuotas.of("queries", config.limits)

    def close(self) -> None:
        self.fanout.close()
        self.schemas.close()

    # -- catalogue and schemas ---------------------------------------------------------
    @handled("GetCatalog")
    def GetCatalog(self, request: Any, context: grpc.ServicerContext, call: CallRecord) -> Any:
        for domain in request.domains:
            if not re.match(_DOMAIN, domain):
                raise invalid("domains", f"{domain[:40]!r} is not a domain name")
        domains = set(request.domains)
        holdings = self.holdings.get()
        catalog = pb.Catalog(
            node=self.identity, caller=call.caller.identity, cities=self.datasets.cities
        )
        for info in sorted(self.datasets.visible(call.caller), key=lambda d: d.id):
            if domains and info.domain not in domains:
                continue
            # The topic of whom the listing is for: asked on behalf of a partner, that
            # partner's own topic (never another partner's, which would name it).
            topic = info.topic_for(listing_audience(call.caller), self.topics)
            entry = pb.Dataset(
                id=info.id,
                kind=KINDS[info.is_aggregates],
                city=info.city,
                source=info.source,
                name=info.name,
                domain=info.domain,
                level=LEVELS[info.policy.level],
                licence=info.policy.licence or "",
                schema_subject=f"{topic}-value",
                topic=topic,
                record_type=info.record_type,
                publisher=pb.Publisher(
                    name=info.city_name,
                    contact_email=info.publisher.contact or "",
                    insee=info.publisher.insee or "",
                    siren=info.publisher.siren or "",
                ),
                frequency=info.frequency,
                entities_withheld=not call.caller.may_read_entities(
                    info.policy, self.datasets.home, personal=info.personal
                ),
            )
            if info.is_aggregates:
                entry.entity_types.append(ENERGY_TYPE)
            held = holdings.get((info.city, info.source))
            if held:
                entry.metrics.extend(held.metrics)
                entry.entity_types.extend(held.entity_types)
                set_timestamp_ms(entry.coverage.first, held.first_ms)
                set_timestamp_ms(entry.coverage.last, held.last_ms)
                entry.coverage.count = held.count
            catalog.datasets.append(entry)
        catalog.generated_at.GetCurrentTime()
        call.details["datasets_listed"] = len(catalog.datasets)
        return catalog

    @handled("GetSchema")
    def GetSchema(self, request: Any, context: grpc.ServicerContext, call: CallRecord) -> Any:
        info = self.datasets.require(request.dataset, call.caller)
        call.datasets = [info.id]
        topic = info.topic_for(call.caller, self.topics)
        if topic not in self.contracts:
            raise FederationError(
                grpc.StatusCode.UNAVAILABLE, f"the topic of {info.id} ({topic}) is not set up"
            )
        codec = self.contracts.codec(topic)
        schema_id, text = codec.schema_id, codec.schema.text
        if request.schema_id < 0:
            raise invalid("schema_id", "0 (current) or an id a Record carried")
        if request.schema_id and request.schema_id != schema_id:
            try:
                text = self.schemas.schema_text(request.schema_id)
                document = json.loads(text)
            except InfrastructureError as exc:
                raise FederationError(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc
            except (SchemaError, ValueError):
                document = {}
            name = f"{document.get('namespace', '')}.{document.get('name', '')}"
            if name != codec.schema.fullname:
                raise FederationError(
                    grpc.StatusCode.NOT_FOUND,
                    f"schema id {request.schema_id} is not a version of {codec.schema.fullname}",
                )
            schema_id = request.schema_id
        return pb.Schema(
            dataset=info.id,
            subject=f"{topic}-value",
            record_type=codec.schema.fullname,
            schema_id=schema_id,
            avro_schema=text,
        )

    # -- aggregates ----------------------------------------------------------------------
    def _known_metrics(self, call: CallRecord) -> frozenset[str]:
        held = self.holdings.get()
        visible = {(d.city, d.source) for d in self.datasets.visible(call.caller)}
        return self.vocabulary | {m for key, h in held.items() if key in visible for m in h.metrics}

    def answer(self, request: Any, call: CallRecord, budget_s: float | None) -> Iterator[Any]:
        question = queries.validate(request, call.caller, self.datasets, self._known_metrics(call))
        call.datasets = list(question.datasets)
        return queries.run(
            self.warehouse, question, self.datasets.timezones, budget_s, node=self.identity
        )

    @handled("QueryAggregates")
    def QueryAggregates(
        self, request: Any, context: grpc.ServicerContext, call: CallRecord
    ) -> Iterator[Any]:
        rows = 0
        with self.queries.slot(call.caller.identity):
            for page in self.answer(request, call, context.time_remaining()):
                rows += queries.rows_of(page)
                call.details["rows"] = rows
                yield page

    # -- entities (the common API) ---------------------------------------------------------
    def _entity_context(self, context: grpc.ServicerContext) -> entities.Context:
        return entities.Context(
            warehouse=self.warehouse,
            datasets=self.datasets,
            newest_ms=entities.newest_by_dataset(self.holdings.get()),
            budget_s=context.time_remaining(),
            node=self.identity,
        )

    @handled("QueryEntities")
    def QueryEntities(
        self, request: Any, context: grpc.ServicerContext, call: CallRecord
    ) -> Iterator[Any]:
        """Relayed calls are served here (the common API asks on behalf of its callers):
        the on-behalf-of identity only narrows what the entity rule lets through."""
        selection = validate_entities(request, call.caller, self.datasets)
        call.datasets = list(selection.scope.ids)
        with self.queries.slot(call.caller.identity):
            rows = 0
            for page in entities.entity_pages(self._entity_context(context), selection):
                rows += len(page.entities)
                call.details["rows"] = rows
                yield page

    @handled("QueryTemporal")
    def QueryTemporal(
        self, request: Any, context: grpc.ServicerContext, call: CallRecord
    ) -> Iterator[Any]:
        run = self._entity_context(context)
        question = validate_temporal(request, call.caller, self.datasets, run.newest_ms)
        call.datasets = list(question.selection.scope.ids)
        with self.queries.slot(call.caller.identity):
            rows = 0
            for page in entities.temporal_pages(run, question):
                rows += len(page.entities)
                call.details["rows"] = rows
                yield page

    # -- subscriptions -------------------------------------------------------------------
    @handled("Subscribe")
    def Subscribe(
        self, request: Any, context: grpc.ServicerContext, call: CallRecord
    ) -> Iterator[Any]:
        chosen, topic = self._subscribed(request, call.caller)
        call.datasets = [info.id for info in chosen]
        if topic not in self.contracts:
            raise FederationError(
                grpc.StatusCode.UNAVAILABLE, f"the topic {topic} is not set up on this node"
            )
        sent = {"records": 0}

        def count(n: int) -> None:
            sent["records"] += n
            call.details["records"] = sent["records"]

        life = self.config.limits.stream_max_life_s
        with self.subscriptions.slot(call.caller.identity):
            try:
                yield from subscribe(
                    self.node,
                    self.contracts,
                    chosen,
                    topic,
                    request,
                    context.is_active,
                    self.schemas,
                    count,
                    until=time.monotonic() + life,
                )
            except StreamExpired:
                call.details["ended"] = "max-life"
                raise FederationError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"this subscription reached its maximum life on this node ({life:g} s, "
                    "limits.stream_max_life_s); subscribe again with the last position "
                    "received to continue without gaps",
                ) from None

    def _subscribed(self, request: Any, caller: Caller) -> tuple[list[DatasetInfo], str]:
        """The datasets a Subscribe call streams and their topic: the one it names, or
        every dataset of the topic it names that the caller may read. Relayed (the
        common API on behalf of a key's audience), a dataset is streamed only when its
        entities may be read on that behalf: never a personal source to the public."""
        if request.dataset and request.topic:
            raise invalid("topic", "give dataset or topic, not both")
        if request.topic:
            chosen = [
                d
                for d in sorted(self.datasets.all.values(), key=lambda d: d.id)
                if caller.may_read_entities(d.policy, self.identity, personal=d.personal)
                and d.topic_for(caller, self.topics) == request.topic
            ]
            if not chosen:
                raise FederationError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"no dataset available to {caller} is carried by topic "
                    f"{request.topic[:120]!r} on this node (GetCatalog lists datasets and topics)",
                )
            return chosen, request.topic
        info = self.datasets.require(request.dataset, caller)
        if caller.on_behalf_of and not caller.may_read_entities(
            info.policy, self.identity, personal=info.personal
        ):
            raise FederationError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the records of {info.id} are entity-level data of a personal source: "
                f"not relayed for {caller.on_behalf_of} (its aggregates are: QueryAggregates)",
            )
        return [info], info.topic_for(caller, self.topics)

    # -- federated queries ---------------------------------------------------------------
    @handled("FederatedQuery")
    def FederatedQuery(
        self, request: Any, context: grpc.ServicerContext, call: CallRecord
    ) -> Iterator[Any]:
        if call.caller.on_behalf_of:
            raise FederationError(
                grpc.StatusCode.PERMISSION_DENIED,
                "a federated query is asked by its own caller, not relayed on behalf of another",
            )
        if not request.HasField("query"):
            raise invalid("query", "required")
        if request.query.page_token or request.query.datasets:
            raise invalid(
                "query", "page_token and datasets are one node's; leave them empty across nodes"
            )
        with self.queries.slot(call.caller.identity):
            yield from self._fan_out(request, context, call)

    def _fan_out(self, request: Any, context: grpc.ServicerContext, call: CallRecord) -> Any:
        peers = self.fanout.choose(request)
        timeout = self.fanout.peer_timeout(request, context.time_remaining())
        local = None
        if not request.exclude_local:
            pages = self.answer(request.query, call, timeout)  # validated here, before fan-out
            local = lambda: pages  # noqa: E731
        else:
            queries.validate(request.query, call.caller, self.datasets, self._known_metrics(call))
        call.details["peers"] = ",".join(p.code for p in peers)
        started = time.monotonic()
        for item in self.fanout.run(request, call.caller, peers, timeout, local):
            if item.HasField("summary"):
                call.details["rows"] = item.summary.rows
                call.details["outcomes"] = ",".join(
                    f"{s.node}:{pb.PeerOutcome.Name(s.outcome).removeprefix('PEER_OUTCOME_')}"
                    for s in item.summary.peers
                )
            yield item
        call.details["fanout_ms"] = round((time.monotonic() - started) * 1000, 1)


class FederationServer:
    """The gRPC server: federation API, health, reflection; mutual TLS only."""

    def __init__(
        self,
        node: NodeConfig,
        config: FederationConfig,
        cities: dict[str, CityConfig],
        warehouse: Warehouse,
        contracts: Contracts,
        *,
        topics: FederationTopics | None = None,
        registry: CollectorRegistry | None = None,
        max_workers: int = 48,
    ):
        self.config = config
        self.servicer = FederationServicer(
            node=node,
            config=config,
            cities=cities,
            warehouse=warehouse,
            contracts=contracts,
            topics=topics or FederationTopics(),
            registry=registry,
        )
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="federation"),
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                # The node pings idle connections too: a partner that vanished (no
                # FIN, a dropped VPN) has its streams cancelled and their quota slots
                # freed within about a minute and a half, not at the stream's max life.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
            maximum_concurrent_rpcs=max_workers * 2,
        )
        rpc.add_FederationServicer_to_server(self.servicer, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.health_watch = HealthWatch(self.health, ("", SERVICE), warehouse_answers(warehouse))
        reflection.enable_server_reflection(
            (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        try:
            self.port = self.server.add_secure_port(
                config.listen, server_credentials(config.certificates)
            )
        except RuntimeError as exc:
            raise CiteplusError(
                f"cannot listen on {config.listen} for the federation API ({exc}); "
                "is another node using that port? (federation.listen)"
            ) from exc

    @property
    def address(self) -> str:
        host = self.config.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    def start(self) -> FederationServer:
        self.server.start()
        self.health_watch.start()
        log.info(
            "federation API serving",
            extra={
                "address": self.address,
                "identity": self.config.identity,
                "peers": [p.code for p in self.config.peers],
            },
        )
        return self

    def stop(self, grace: float = 5.0) -> None:
        self.health_watch.stop()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
        self.servicer.close()

    def wait(self) -> None:
        self.server.wait_for_termination()
