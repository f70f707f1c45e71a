"""Commands of the federation: ``citeplus federation serve|query|catalog|schema|subscribe|
health|codegen`` and ``citeplus certs``.

``serve`` runs the server alone, for a node whose warehouse is a ClickHouse server
(with chDB the publish service serves the API itself, since only it may open the
warehouse). The other commands are an operator's client: they dial a peer of the
federation file (``--peer paris``), this node (``--peer self``, the default) or
any address (``--address host:port --identity code``) with this node's certificate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import threading
from pathlib import Path
from typing import Any

import fastavro
import grpc

from services.policy.federation import load_federation
from services.policy.sharing import partners_of, sharing_policies
from services.runtime.commands import Command, Option, cities_option, option
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError
from services.runtime.provisioning import connect_contracts
from services.runtime.service_main import Running, ServiceStart, run_service
from services.runtime.topics import load_topics
from services.warehouse.migrations import migrate
from services.warehouse.port import open_warehouse
from services.warehouse.query import FORMATS, render

# Federation modules (protos, server, client, queries) are imported inside the commands on
# purpose: they load the generated gRPC code, which `citeplus federation codegen` writes.
GRANULARITY_NAMES = ("PT15M", "PT1H", "P1D")


# -- serve -----------------------------------------------------------------------------


def public_specs(cities: dict[str, Any], prefix: str, aggregates_partners: list[str]) -> list[Any]:
    """The public topics a federation server reads (under ``prefix``)."""
    from dataclasses import replace

    partners = sorted({*partners_of(sharing_policies(cities)), *aggregates_partners})
    return [
        replace(spec, name=prefix + spec.name)
        for spec in load_topics(partners=partners).values()
        if spec.name.startswith("public.")
    ]


def serve(args: argparse.Namespace) -> int:
    def contracts(node: Any, cities: dict[str, Any]) -> Any:
        partners = list(load_federation(node).energy_aggregates.partners)
        return connect_contracts(node, public_specs(cities, args.topic_prefix, partners))

    start = ServiceStart(
        "federation",
        Path(args.cities),
        contracts,
        metrics_port=args.metrics_port,
        node_metrics_port=False,
    )
    return run_service(start, lambda up: _start_server(args, up))


def _start_server(args: argparse.Namespace, up: Any) -> Any:
    """The federation server on the node's warehouse (migrated first: a fresh warehouse
    answers with empty tables, not errors), ready once it listens."""
    from dataclasses import replace

    from services.federation.catalog import FederationTopics
    from services.federation.server import FederationServer

    config = load_federation(up.node)
    if args.listen:
        config = replace(config, listen=args.listen)
    warehouse = open_warehouse(up.node)
    try:
        migrate(warehouse)
        server = FederationServer(
            up.node,
            config,
            up.cities,
            warehouse,
            up.contracts,
            topics=FederationTopics(args.topic_prefix),
            registry=up.metrics.registry,
        ).start()
    except BaseException:
        warehouse.close()
        raise
    up.metrics.ready = True

    def run(stop: threading.Event) -> int:
        while not stop.wait(5.0):
            up.metrics.mark_progress()
        server.stop()
        return 0

    return Running(run=run, close=warehouse.close, details={"listen": config.listen})


def codegen_command(args: argparse.Namespace) -> int:
    from services.federation.protos import codegen

    print(f"generated {codegen(force=args.force)}")
    return 0


# -- certificates ----------------------------------------------------------------------


def certs_command(args: argparse.Namespace) -> int:
    from services.federation.certs import ensure_dev_certificates

    node = load_node_config()
    config = load_federation(node)
    directory = args.dir.resolve() if args.dir else config.certs_dir
    identities = [config.identity, *(n.strip() for n in args.nodes.split(",") if n.strip())]
    created_ca, issued = ensure_dev_certificates(
        directory,
        identities,
        dns_names=tuple(args.dns),
        addresses=tuple(args.ip),
        renew=args.renew,
    )
    print(f"{'created ' if created_ca else 'kept    '} authority  {directory / 'ca.pem'}")
    for entry in issued:
        state = "issued  " if entry.created else "kept    "
        print(f"{state} {entry.identity:<10} {entry.cert}  (key {entry.key}, mode 0600)")
    print(
        "Development certificates only: every node of this machine trusts this authority. "
        "Never commit keys; production certificates come from the federation's authority."
    )
    return 0


# -- client commands ------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from services.federation.client import FederationClient

    config = load_federation(load_node_config())
    if args.address:
        address, identity = args.address, args.identity
    elif args.peer in (None, "self", config.identity):
        host, _, port = config.listen.rpartition(":")
        address = f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{port}"
        identity = config.identity
    else:
        peer = config.peer(args.peer)
        address, identity = peer.address, peer.code
    return FederationClient.connect(address, config.certificates, identity)


def _failed(exc: grpc.RpcError) -> int:
    print(f"citeplus: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return 1


def _time(text: str) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CiteplusError(f"expected an ISO 8601 date or time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(dt.UTC))
    return stamp


def _aggregate_query(args: argparse.Namespace) -> Any:
    from services.federation.protos import pb

    kind = (
        pb.AGGREGATE_KIND_ENERGY_AGGREGATES
        if args.kind == "energy"
        else pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS
    )
    return pb.AggregateQuery(
        kind=kind,
        cities=args.city,
        metrics=args.metric,
        zones=args.zone,
        carriers=args.carrier,
        sectors=args.sector,
        datasets=args.dataset,
        start=_time(args.start),
        end=_time(args.end),
        granularity=pb.Granularity.Value(f"GRANULARITY_{args.granularity}"),
        page_size=args.page_size,
    )


def query_command(args: argparse.Namespace) -> int:
    from services.federation.protos import pb
    from services.federation.queries import table_of_pages

    query = _aggregate_query(args)
    pages: list[Any] = []
    statuses: list[Any] = []
    with _client(args) as client:
        try:
            if args.federated:
                request = pb.FederatedQueryRequest(query=query, peers=args.ask)
                if args.peer_timeout:
                    request.peer_timeout.FromNanoseconds(int(args.peer_timeout * 1e9))
                for item in client.federated(request, timeout=args.timeout):
                    if item.HasField("page"):
                        pages.append(item.page)
                    elif item.HasField("summary"):
                        statuses = list(item.summary.peers)
            else:
                pages = list(client.query(query, timeout=args.timeout))
        except grpc.RpcError as exc:
            return _failed(exc)
    sys.stdout.buffer.write(render(table_of_pages(pages), args.format))
    for status in statuses:
        outcome = pb.PeerOutcome.Name(status.outcome).removeprefix("PEER_OUTCOME_").lower()
        detail = f" ({status.status}: {status.message})" if status.message else ""
        seconds = status.elapsed.ToNanoseconds() / 1e9
        print(
            f"{status.node:<12} {outcome:<12} {status.rows:>8} rows  {seconds:6.2f} s{detail}",
            file=sys.stderr,
        )
    if pages and pages[-1].next_page_token and not args.federated:
        print(f"more rows: --page-token {pages[-1].next_page_token}", file=sys.stderr)
    return 0


def catalog_command(args: argparse.Namespace) -> int:
    import pyarrow as pa
    from google.protobuf.json_format import MessageToDict

    from services.federation.protos import pb

    with _client(args) as client:
        try:
            catalog = client.catalog(domains=args.domain)
        except grpc.RpcError as exc:
            return _failed(exc)
    print(
        f"node {catalog.node} ({', '.join(catalog.cities)}) as seen by {catalog.caller}",
        file=sys.stderr,
    )
    rows = []
    for entry in catalog.datasets:
        data = MessageToDict(entry, preserving_proto_field_name=True)
        coverage = data.pop("coverage", {})
        data["level"] = pb.SharingLevel.Name(entry.level).removeprefix("SHARING_LEVEL_").lower()
        data["metrics"] = ",".join(entry.metrics)
        data["first"], data["last"] = coverage.get("first", ""), coverage.get("last", "")
        data["count"] = int(coverage.get("count", 0))
        rows.append(
            {
                k: data.get(k, "")
                for k in (
                    "id",
                    "level",
                    "licence",
                    "domain",
                    "metrics",
                    "topic",
                    "first",
                    "last",
                    "count",
                )
            }
        )
    table = pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())})
    sys.stdout.buffer.write(render(table, args.format))
    return 0


def schema_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            schema = client.schema(args.dataset, args.schema_id)
        except grpc.RpcError as exc:
            return _failed(exc)
    print(f"{schema.subject} id {schema.schema_id} ({schema.record_type})", file=sys.stderr)
    print(json.dumps(json.loads(schema.avro_schema), indent=2, ensure_ascii=False))
    return 0


def subscribe_command(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToJson, Parse

    from services.federation.protos import pb

    request = pb.SubscribeRequest(
        dataset=args.dataset, max_records=args.max, stop_at_end=args.stop_at_end
    )
    position_file: Path | None = args.position
    if position_file and position_file.exists():
        request.resume.CopyFrom(Parse(position_file.read_text(), pb.Position()))
    elif args.start in ("earliest", "latest"):
        setattr(request, "from", pb.StartPoint.Value(f"START_POINT_{args.start.upper()}"))
    else:
        request.from_time.CopyFrom(_time(args.start))
    readers: dict[int, Any] = {}
    received = 0
    with _client(args) as client:
        try:
            for batch in client.subscribe(request):
                for record in batch.records:
                    reader = readers.get(record.schema_id)
                    if reader is None:
                        text = client.schema(args.dataset, record.schema_id).avro_schema
                        reader = fastavro.parse_schema(json.loads(text))
                        readers[record.schema_id] = reader
                    value = fastavro.schemaless_reader(io.BytesIO(record.value), reader)
                    print(json.dumps(value, default=str, ensure_ascii=False))
                received += len(batch.records)
                if position_file:
                    position_file.write_text(MessageToJson(batch.position))
        except grpc.RpcError as exc:
            return _failed(exc)
        except KeyboardInterrupt:
            pass
    print(f"{received} records", file=sys.stderr)
    return 0


def health_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            status = client.health()
        except grpc.RpcError as exc:
            return _failed(exc)
    print(status)
    return 0 if status == "SERVING" else 1


# -- wiring ------------------------------------------------------------------------------


PEER_OPTIONS = (
    option("--peer", help="a peer of the federation file, or self (this node, the default)"),
    option("--address", help="dial host:port instead of a configured peer"),
    option("--identity", help="with --address: the identity its certificate names"),
)


def _repeated(flag: str, help: str | None = None) -> Option:
    return option(flag, action="append", default=[], help=help)


SERVE = Command(
    "serve",
    "serve the federation API alone (ClickHouse server, or publish stopped)",
    serve,
    options=(
        cities_option(),
        option("--listen", help="host:port (default: federation.listen of the node file)"),
        option(
            "--topic-prefix",
            default="",
            help="prefix of this node's public topics (several nodes on one broker)",
        ),
        option("--metrics-port", type=int, help="serve /metrics and /healthz on this port"),
    ),
)

QUERY = Command(
    "query",
    "observation rollups or energy aggregates of a node (or of every peer: --federated)",
    query_command,
    options=(
        *PEER_OPTIONS,
        option("--kind", choices=("rollups", "energy"), default="rollups"),
        _repeated("--metric", "a vocabulary metric"),
        *(_repeated(flag) for flag in ("--city", "--zone", "--carrier", "--sector", "--dataset")),
        option("--start", required=True, help="ISO 8601 (UTC unless an offset is given)"),
        option("--end", required=True, help="ISO 8601, exclusive"),
        option("--granularity", choices=GRANULARITY_NAMES, default="PT1H"),
        option("--page-size", type=int, default=1000),
        option("--timeout", type=float, default=60.0, help="deadline of the call (s)"),
        option("--federated", action="store_true", help="ask the node to fan out to its peers too"),
        _repeated("--ask", "with --federated: only peer"),
        option("--peer-timeout", type=float, help="with --federated: deadline per peer"),
        option("--format", choices=FORMATS[:3], default="table"),
    ),
)

SUBSCRIBE = Command(
    "subscribe",
    "a dataset's records as JSON lines (resumable with --position)",
    subscribe_command,
    options=(
        *PEER_OPTIONS,
        option("dataset"),
        option("--start", default="earliest", help="earliest, latest, or an ISO 8601 time"),
        option(
            "--position",
            type=Path,
            help="file keeping the position: resumed from, updated per batch",
        ),
        option("--max", type=int, default=0, help="stop after this many records"),
        option("--stop-at-end", action="store_true", help="stop once caught up"),
    ),
)

FEDERATION = Command(
    "federation",
    "the gRPC federation API between city nodes: serve it, or call a node",
    description=__doc__,
    verbatim=True,
    actions=(
        SERVE,
        Command(
            "codegen",
            "generate the Python modules of proto/",
            codegen_command,
            options=(option("--force", action="store_true", help="even if they are current"),),
        ),
        Command("health", "ask a node's gRPC health service", health_command, PEER_OPTIONS),
        Command(
            "catalog",
            "the datasets a node shares with this node",
            catalog_command,
            options=(
                *PEER_OPTIONS,
                _repeated("--domain", "only this domain"),
                option("--format", choices=FORMATS[:3], default="table"),
            ),
        ),
        Command(
            "schema",
            "the Avro schema of a dataset",
            schema_command,
            options=(
                *PEER_OPTIONS,
                option("dataset", help="<city>/<source>, as the catalogue lists"),
                option("--schema-id", type=int, default=0, help="a version a record named"),
            ),
        ),
        QUERY,
        SUBSCRIBE,
    ),
)

CERTS = Command(
    "certs",
    "create a development certificate authority and node certificates",
    certs_command,
    description="Create (once) a development authority and a certificate for this node "
    "(federation.identity) and for each --nodes code, under the node's state directory "
    "(var/federation/certs by default): ca.pem, <code>.pem, <code>.key (0600). "
    "Existing certificates are kept unless --renew or about to expire.",
    options=(
        option("--nodes", default="", help="more identities, comma-separated (lyon,paris,enedis)"),
        option("--dir", type=Path, help="write there instead (outside git)"),
        _repeated("--dns", "extra DNS name in certs"),
        _repeated("--ip", "extra IP address in certs"),
        option("--renew", action="store_true", help="issue new certificates"),
    ),
)

COMMANDS = (FEDERATION, CERTS)
