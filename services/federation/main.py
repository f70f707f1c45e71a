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
from services.runtime.cities import load_cities
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError
from services.runtime.logs import configure_logging
from services.runtime.metrics import MetricsServer, ServiceMetrics
from services.runtime.paths import CITIES_DIR
from services.runtime.provisioning import connect_contracts
from services.runtime.service_main import install_stop_signals
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
    from services.federation.catalog import FederationTopics
    from services.federation.server import FederationServer

    configure_logging("federation")
    node = load_node_config()
    config = load_federation(node)
    if args.listen:
        from dataclasses import replace

        config = replace(config, listen=args.listen)
    cities = load_cities(args.cities)
    specs = public_specs(cities, args.topic_prefix, list(config.energy_aggregates.partners))
    contracts = connect_contracts(node, specs)
    warehouse = open_warehouse(node)
    metrics = ServiceMetrics("federation")
    metrics_server = None
    try:
        migrate(warehouse)  # a fresh warehouse answers with empty tables, not errors
        server = FederationServer(
            node,
            config,
            cities,
            warehouse,
            contracts,
            topics=FederationTopics(args.topic_prefix),
            registry=metrics.registry,
        ).start()
        metrics.ready = True
        if args.metrics_port is not None:
            metrics_server = MetricsServer(metrics, node.metrics.host, args.metrics_port).start()
        stop = threading.Event()
        install_stop_signals(stop)
        while not stop.wait(5.0):
            metrics.mark_progress()
        server.stop()
    finally:
        if metrics_server:
            metrics_server.stop()
        warehouse.close()
    return 0


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


def _peer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--peer", help="a peer of the federation file, or self (this node, the default)"
    )
    parser.add_argument("--address", help="dial host:port instead of a configured peer")
    parser.add_argument("--identity", help="with --address: the identity its certificate names")


def register(
    commands: argparse._SubParsersAction, service_commands: argparse._SubParsersAction
) -> None:

    federation = commands.add_parser(
        "federation",
        help="the gRPC federation API between city nodes: serve it, or call a node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = federation.add_subparsers(dest="federation_command", metavar="ACTION", required=True)

    run = actions.add_parser(
        "serve", help="serve the federation API alone (ClickHouse server, or publish stopped)"
    )
    run.add_argument("--cities", default=str(CITIES_DIR), help="directory of city files")
    run.add_argument("--listen", help="host:port (default: federation.listen of the node file)")
    run.add_argument(
        "--topic-prefix",
        default="",
        help="prefix of this node's public topics (several nodes on one broker)",
    )
    run.add_argument("--metrics-port", type=int, help="serve /metrics and /healthz on this port")
    run.set_defaults(handler=serve)

    gen = actions.add_parser("codegen", help="generate the Python modules of proto/")
    gen.add_argument("--force", action="store_true", help="even if they are current")
    gen.set_defaults(handler=codegen_command)

    check = actions.add_parser("health", help="ask a node's gRPC health service")
    _peer_arguments(check)
    check.set_defaults(handler=health_command)

    catalog = actions.add_parser("catalog", help="the datasets a node shares with this node")
    _peer_arguments(catalog)
    catalog.add_argument("--domain", action="append", default=[], help="only this domain")
    catalog.add_argument("--format", choices=FORMATS[:3], default="table")
    catalog.set_defaults(handler=catalog_command)

    schema = actions.add_parser("schema", help="the Avro schema of a dataset")
    _peer_arguments(schema)
    schema.add_argument("dataset", help="<city>/<source>, as the catalogue lists")
    schema.add_argument("--schema-id", type=int, default=0, help="a version a record named")
    schema.set_defaults(handler=schema_command)

    query = actions.add_parser(
        "query",
        help="observation rollups or energy aggregates of a node (or of every peer: --federated)",
    )
    _peer_arguments(query)
    query.add_argument("--kind", choices=("rollups", "energy"), default="rollups")
    query.add_argument("--metric", action="append", default=[], help="a vocabulary metric")
    query.add_argument("--city", action="append", default=[])
    query.add_argument("--zone", action="append", default=[])
    query.add_argument("--carrier", action="append", default=[])
    query.add_argument("--sector", action="append", default=[])
    query.add_argument("--dataset", action="append", default=[])
    query.add_argument("--start", required=True, help="ISO 8601 (UTC unless an offset is given)")
    query.add_argument("--end", required=True, help="ISO 8601, exclusive")
    query.add_argument("--granularity", choices=GRANULARITY_NAMES, default="PT1H")
    query.add_argument("--page-size", type=int, default=1000)
    query.add_argument("--timeout", type=float, default=60.0, help="deadline of the call (s)")
    query.add_argument(
        "--federated", action="store_true", help="ask the node to fan out to its peers too"
    )
    query.add_argument("--ask", action="append", default=[], help="with --federated: only peer")
    query.add_argument("--peer-timeout", type=float, help="with --federated: deadline per peer")
    query.add_argument("--format", choices=FORMATS[:3], default="table")
    query.set_defaults(handler=query_command)

    follow = actions.add_parser(
        "subscribe", help="a dataset's records as JSON lines (resumable with --position)"
    )
    _peer_arguments(follow)
    follow.add_argument("dataset")
    follow.add_argument("--start", default="earliest", help="earliest, latest, or an ISO 8601 time")
    follow.add_argument(
        "--position", type=Path, help="file keeping the position: resumed from, updated per batch"
    )
    follow.add_argument("--max", type=int, default=0, help="stop after this many records")
    follow.add_argument("--stop-at-end", action="store_true", help="stop once caught up")
    follow.set_defaults(handler=subscribe_command)

    certs = commands.add_parser(
        "certs",
        help="create a development certificate authority and node certificates",
        description="Create (once) a development authority and a certificate for this node "
        "(federation.identity) and for each --nodes code, under the node's state directory "
        "(var/federation/certs by default): ca.pem, <code>.pem, <code>.key (0600). "
        "Existing certificates are kept unless --renew or about to expire.",
    )
    certs.add_argument(
        "--nodes", default="", help="more identities, comma-separated (lyon,paris,enedis)"
    )
    certs.add_argument("--dir", type=Path, help="write there instead (outside git)")
    certs.add_argument("--dns", action="append", default=[], help="extra DNS name in certs")
    certs.add_argument("--ip", action="append", default=[], help="extra IP address in certs")
    certs.add_argument("--renew", action="store_true", help="issue new certificates")
    certs.set_defaults(handler=certs_command)
