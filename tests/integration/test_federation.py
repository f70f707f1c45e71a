"""Three Cité+ nodes federating on one machine (lyon, paris, nice): separate processes,
ports, warehouses (chDB) and topic prefixes on the one local broker, one development
authority. What a partner sees follows the city files' sharing sections; mutual
TLS refuses clients without a valid certificate of the authority.

Lyon shares air (open), traffic (open), meters with paris only; water is internal.
Paris and nice share air (open) and meters with lyon only. Lyon's peers are paris,
nice and "bordeaux", a socket that accepts connections and never answers.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from services.federation.certs import create_authority, issue
from services.federation.client import FederationClient
from services.federation.protos import pb
from services.policy.federation import certificate_paths
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from testkit.federation_nodes import T0, Node, make_authority, observation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0_S = T0 // 1_000_000
OPEN = {"level": "open", "licence": "ODbL-1.0"}


@pytest.fixture(scope="module")
def blackhole():
    """A peer that accepts TCP connections and never says a word (a hung node)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(scope="module")
def nodes(node, tmp_path_factory, blackhole):
    root = tmp_path_factory.mktemp("federation")
    certs = make_authority(root / "certs", ["lyon", "paris", "nice"])
    unique = f"test.fed{int(time.time() * 1000) % 10**8}."
    common = {"certs_dir": certs, "bootstrap": node.kafka.bootstrap, "registry": node.registry.url}
    lyon = Node("lyon", root / "lyon", topic_prefix=unique + "lyon.", **common)
    paris = Node("paris", root / "paris", topic_prefix=unique + "paris.", **common)
    nice = Node("nice", root / "nice", topic_prefix=unique + "nice.", **common)
    lyon.sharing = {
        "air": OPEN,
        "traffic": OPEN,
        "meters": {"level": "shared", "partners": ["paris"]},
    }
    for other in (paris, nice):
        other.sharing = {"air": OPEN, "meters": {"level": "shared", "partners": ["lyon"]}}
    lyon.peers = [
        {"code": "paris", "address": paris.address},
        {"code": "nice", "address": nice.address},
        {"code": "bordeaux", "address": blackhole},
    ]
    paris.peers = [{"code": "lyon", "address": lyon.address}]
    everyone = (lyon, paris, nice)
    seeding = [n.prepare() for n in everyone]
    assert [p.wait(120) for p in seeding] == [0, 0, 0]
    for n in everyone:
        n.start()
    try:
        for n in everyone:
            n.wait_ready()
        yield {"lyon": lyon, "paris": paris, "nice": nice, "certs": certs, "root": root}
    finally:
        for n in everyone:
            n.stop()


def rollups(metric: str, hours: int = 24, **fields) -> pb.AggregateQuery:
    query = pb.AggregateQuery(
        kind=pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS,
        metrics=[metric],
        granularity=pb.GRANULARITY_PT1H,
        **fields,
    )
    query.start.FromSeconds(T0_S)
    query.end.FromSeconds(T0_S + hours * 3600)
    return query


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if not isinstance(result, pb.Catalog | pb.Schema):
            list(result)
    return caught.value.code()


# -- catalogue and authorisation ---------------------------------------------------------


def test_catalogue_differs_by_caller_and_internal_is_never_listed(nodes) -> None:
    lyon = nodes["lyon"]
    with lyon.client("paris") as client:
        seen_by_paris = client.catalog()
    with lyon.client("nice") as client:
        seen_by_nice = client.catalog()
    assert seen_by_paris.node == "lyon" and seen_by_paris.caller == "paris"
    assert [d.id for d in seen_by_paris.datasets] == [
        "lyon/air",
        "lyon/energy-aggregates",
        "lyon/meters",
        "lyon/traffic",
    ]
    assert [d.id for d in seen_by_nice.datasets] == [
        "lyon/air",
        "lyon/energy-aggregates",
        "lyon/traffic",
    ]
    meters = next(d for d in seen_by_paris.datasets if d.id == "lyon/meters")
    assert meters.level == pb.SHARING_LEVEL_SHARED
    assert meters.topic == f"{lyon.topic_prefix}public.shared.paris.observations.v1"
    assert list(meters.metrics) == ["active_energy_import"]
    assert meters.coverage.count == 4 * 3 * 288
    air = next(d for d in seen_by_nice.datasets if d.id == "lyon/air")
    assert (air.level, air.licence, air.domain) == (
        pb.SHARING_LEVEL_OPEN,
        "ODbL-1.0",
        "environment",
    )
    assert air.coverage.first.seconds == T0_S
    assert air.schema_subject == f"{lyon.topic_prefix}public.observations.v1-value"
    # What catalogues (the API's DCAT-AP /catalog) are built from: the city, how often,
    # which entity types (this seed's readings carry none: none listed, never "").
    assert air.publisher.name == "Lyon" and air.frequency == "CONT"
    assert list(air.entity_types) == []
    aggregates = next(d for d in seen_by_nice.datasets if d.id == "lyon/energy-aggregates")
    assert list(aggregates.entity_types) == ["CitePlusEnergyAggregate"]
    assert aggregates.frequency == "DAILY" and not aggregates.entities_withheld
    with lyon.client("nice") as client:
        energy_only = client.catalog(domains=["energy"])
    assert [d.id for d in energy_only.datasets] == ["lyon/energy-aggregates"]


def test_shared_dataset_is_refused_to_a_partner_it_does_not_name(nodes) -> None:
    lyon = nodes["lyon"]
    with lyon.client("paris") as paris:
        assert paris.schema("lyon/meters").record_type == "citeplus.v1.Observation"
        answered = sum(len(p.rollups) for p in paris.query(rollups("active_energy_import")))
    assert answered == 4 * 24  # 4 zones x 24 hours, one sector
    with lyon.client("nice") as nice:
        for dataset in ("lyon/meters", "lyon/water", "lyon/nothing-here"):
            assert status_of(lambda d=dataset: nice.schema(d)) == grpc.StatusCode.PERMISSION_DENIED
            request = pb.SubscribeRequest(dataset=dataset, stop_at_end=True)
            setattr(request, "from", pb.START_POINT_EARLIEST)
            assert status_of(lambda r=request: nice.subscribe(r, timeout=10)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
        query = rollups("active_energy_import", datasets=["lyon/meters"])
        assert status_of(lambda: nice.query(query)) == grpc.StatusCode.PERMISSION_DENIED
        # Without naming datasets, nice gets the rollups of what it may see: none of meters.
        assert sum(len(p.rollups) for p in nice.query(rollups("active_energy_import"))) == 0
        # Internal water is never served, not even as a rollup.
        assert sum(len(p.rollups) for p in nice.query(rollups("water_volume"))) == 0
    with lyon.client("paris") as paris:
        assert sum(len(p.rollups) for p in paris.query(rollups("water_volume"))) == 0


def test_invalid_requests_get_clear_statuses(nodes) -> None:
    lyon = nodes["lyon"]
    with lyon.client("paris") as client:
        cases = {
            "metrics": rollups("no_such_metric"),
            "end": rollups("no2", hours=-1),
            "page_size": rollups("no2", page_size=50_000),
            "granularity": replace_field(rollups("no2"), granularity=0),
            "zones": rollups("no2", zones=["z1'; DROP TABLE observations; --"]),
            "page_token": rollups("no2", page_token="bm90IGEgdG9rZW4"),
        }
        for field_name, query in cases.items():
            with pytest.raises(grpc.RpcError) as caught:
                list(client.query(query))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field_name
            assert caught.value.details().startswith(field_name), caught.value.details()
            assert "Traceback" not in caught.value.details()
        too_long = rollups("no2", hours=24 * 400)
        with pytest.raises(grpc.RpcError, match="at most 366 days"):
            list(client.query(too_long))


def replace_field(message, **fields):
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def test_pages_resume_with_their_token_and_energy_aggregates_keep_secrecy(nodes) -> None:
    lyon = nodes["lyon"]
    with lyon.client("nice") as client:
        whole = [r for p in client.query(rollups("no2", page_size=500)) for r in p.rollups]
        pages = list(client.query(rollups("no2", page_size=7)))
        assert len(pages) == (len(whole) + 6) // 7 and pages[-1].last
        assert [r for p in pages for r in p.rollups] == whole
        again = list(client.query(rollups("no2", page_size=7, page_token=pages[3].next_page_token)))
        assert [r for p in again for r in p.rollups] == whole[4 * 7 :]
        energy = pb.AggregateQuery(
            kind=pb.AGGREGATE_KIND_ENERGY_AGGREGATES, granularity=pb.GRANULARITY_PT1H
        )
        energy.start.FromSeconds(T0_S)
        energy.end.FromSeconds(T0_S + 2 * 3600)
        cells = [c for p in client.query(energy) for c in p.energy]
    assert len(cells) == 5 * 2
    hidden = [c for c in cells if c.zone == "z4"]
    assert all(c.suppressed and not c.HasField("energy_kwh") for c in hidden)
    shown = [c for c in cells if c.zone == "z1"]
    # The released values, never the provisional upserts (100 kWh more, with a share).
    assert [c.energy_kwh for c in shown] == [0.0, 1.0]
    assert not any(c.HasField("largest_share") for c in cells)
    assert all(c.version == 1 and c.released_at.seconds > 0 for c in cells)


def test_daily_rollups_follow_the_city_calendar(nodes) -> None:
    with nodes["lyon"].client("nice") as client:
        query = rollups("no2", hours=48, zones=["z1"])
        query.granularity = pb.GRANULARITY_P1D
        days = [r for p in client.query(query) for r in p.rollups]
    assert [r.window_start.seconds for r in days] == [T0_S, T0_S + 86400]
    assert all(r.readings == 3 * 144 for r in days)  # 3 entities x 144 readings per day


# -- federated queries ---------------------------------------------------------------------


def federated(client, metric: str, peer_timeout: float = 2.0, **fields):
    request = pb.FederatedQueryRequest(query=rollups(metric), **fields)
    request.peer_timeout.FromNanoseconds(int(peer_timeout * 1e9))
    rows: dict[str, int] = {}
    summary = None
    for item in client.federated(request, timeout=30):
        if item.HasField("page"):
            rows[item.page.node] = rows.get(item.page.node, 0) + len(item.page.rollups)
        elif item.HasField("summary"):
            summary = item.summary
    assert summary is not None
    outcomes = {
        s.node: pb.PeerOutcome.Name(s.outcome).removeprefix("PEER_OUTCOME_") for s in summary.peers
    }
    return rows, outcomes, summary


def test_federated_query_merges_answers_while_a_peer_is_stopped(nodes) -> None:
    lyon, nice = nodes["lyon"], nodes["nice"]
    per_city = 4 * 24
    with lyon.client("lyon") as operator:
        started = time.monotonic()
        rows, outcomes, summary = federated(operator, "no2")
        assert rows == {"lyon": per_city, "paris": per_city, "nice": per_city}
        assert outcomes == {
            "lyon": "ANSWERED",
            "paris": "ANSWERED",
            "nice": "ANSWERED",
            "bordeaux": "TIMED_OUT",
        }
        assert summary.rows == 3 * per_city
        assert time.monotonic() - started < 8  # the hung peer cost its own deadline, no more

        nice.stop()
        try:
            rows, outcomes, _ = federated(operator, "no2")
            assert rows == {"lyon": per_city, "paris": per_city}
            assert outcomes["nice"] == "UNREACHABLE"
            assert outcomes["paris"] == outcomes["lyon"] == "ANSWERED"
            assert outcomes["bordeaux"] == "TIMED_OUT"
        finally:
            nice.start().wait_ready()

        # Energy data shared with lyon by paris and nice reaches lyon's operator...
        rows, _, _ = federated(operator, "active_energy_import", peers=["paris", "nice"])
        assert rows == {"lyon": per_city, "paris": per_city, "nice": per_city}
    # ...but not nice asking lyon to ask paris: paris shares meters with lyon, not nice.
    with lyon.client("nice") as partner:
        rows, outcomes, _ = federated(partner, "active_energy_import", peers=["paris"])
    assert rows == {"lyon": 0, "paris": 0}  # both answered, with nothing nice may see
    assert outcomes == {"lyon": "ANSWERED", "paris": "ANSWERED"}


def test_federated_query_refuses_unknown_peers_and_relays(nodes) -> None:
    with nodes["lyon"].client("lyon") as operator:
        with pytest.raises(grpc.RpcError) as caught:
            federated(operator, "no2", peers=["marseille"])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with nodes["lyon"].client("lyon", on_behalf_of="nice") as relay:
        with pytest.raises(grpc.RpcError) as caught:
            federated(relay, "no2")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


# -- subscriptions -------------------------------------------------------------------------


def test_subscription_resumes_after_a_server_restart_without_gaps_or_duplicates(
    node, nodes
) -> None:
    lyon = nodes["lyon"]
    declared = load_topics(partners=["paris"])
    specs = [
        replace(declared[name], name=lyon.topic_prefix + name, partitions=2)
        for name in ("public.observations.v1", "public.shared.paris.observations.v1")
    ]
    provision_topics(node, specs)
    contracts = connect_contracts(node, specs)
    public = specs[0].name
    writer = RecordProducer(make_producer(node), contracts)

    def publish(first: int, count: int) -> list[str]:
        """``count`` air records (and traffic ones between them); their lineage ids."""
        air = []
        for i in range(first, first + count):
            record = observation("lyon", "air", f"z{i % 4 + 1}", i, T0 + i * 600_000_000, 6)
            writer.produce(public, record["entity_pseudonym"], record)
            air.append(record["lineage_id"])
            if i % 3 == 0:
                other = observation("lyon", "traffic", "z1", i, T0, 6)
                writer.produce(public, other["entity_pseudonym"], other)
        assert writer.flush() == 0
        return air

    expected = publish(0, 300)
    received: list[tuple[int, int, bytes]] = []
    with lyon.client("paris") as client:
        request = pb.SubscribeRequest(dataset="lyon/air", max_batch=40)
        setattr(request, "from", pb.START_POINT_EARLIEST)
        stream = client.subscribe(request, timeout=60)
        position = None
        for batch in stream:
            received += [(r.partition, r.offset, r.value) for r in batch.records]
            position = batch.position
            if len(received) >= 120:
                break
        stream.cancel()
    assert position is not None and position.topic == public

    lyon.stop()  # SIGTERM; records keep being published while it is down
    expected += publish(300, 200)
    lyon.start().wait_ready()
    expected += publish(500, 100)

    with lyon.client("paris") as client:
        request = pb.SubscribeRequest(dataset="lyon/air", resume=position, stop_at_end=True)
        batches = list(client.subscribe(request, timeout=60))
        schema = client.schema("lyon/air")
    assert batches[-1].caught_up
    received += [(r.partition, r.offset, r.value) for b in batches for r in b.records]

    coordinates = [(p, o) for p, o, _ in received]
    assert len(coordinates) == len(set(coordinates)), "a record was sent twice"
    import io
    import json

    import fastavro

    reader = fastavro.parse_schema(json.loads(schema.avro_schema))
    lineage = [
        fastavro.schemaless_reader(io.BytesIO(v), reader)["lineage_id"] for *_, v in received
    ]
    assert sorted(lineage) == sorted(expected), "gaps or duplicates"
    for partition in {p for p, _ in coordinates}:
        offsets = [o for p, o in coordinates if p == partition]
        assert offsets == sorted(offsets)

    # A position the topic no longer holds is refused, never skipped silently.
    stale = pb.Position(topic=public, partitions=[pb.PartitionOffset(partition=0, next_offset=-5)])
    with lyon.client("paris") as client, pytest.raises(grpc.RpcError) as caught:
        list(client.subscribe(pb.SubscribeRequest(dataset="lyon/air", resume=stale), timeout=10))
    assert caught.value.code() in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INVALID_ARGUMENT)


def test_subscription_from_time_and_latest(node, nodes) -> None:
    lyon = nodes["lyon"]
    with lyon.client("nice") as client:
        latest = pb.SubscribeRequest(dataset="lyon/air", stop_at_end=True)
        setattr(latest, "from", pb.START_POINT_LATEST)
        assert sum(len(b.records) for b in client.subscribe(latest, timeout=30)) == 0
        future = pb.SubscribeRequest(dataset="lyon/air", stop_at_end=True)
        future.from_time.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        assert sum(len(b.records) for b in client.subscribe(future, timeout=30)) == 0


# -- mutual TLS ----------------------------------------------------------------------------


def refused(lyon: Node, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    channel = grpc.secure_channel(
        lyon.address, credentials, options=[("grpc.ssl_target_name_override", "lyon")]
    )
    with FederationClient(channel) as client, pytest.raises(grpc.RpcError) as caught:
        client.catalog(timeout=5)
    return caught.value.code()


def test_clients_without_a_valid_certificate_are_refused(nodes, tmp_path: Path) -> None:
    lyon, certs = nodes["lyon"], nodes["certs"]
    ca = (certs / "ca.pem").read_bytes()

    no_certificate = grpc.ssl_channel_credentials(root_certificates=ca)
    assert refused(lyon, no_certificate) == grpc.StatusCode.UNAVAILABLE

    rogue = tmp_path / "rogue"
    create_authority(rogue, name="another authority")
    issue(rogue, "paris")  # the right name, from the wrong authority
    other = certificate_paths(rogue, "paris")
    from_other_authority = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=other.key.read_bytes(),
        certificate_chain=other.cert.read_bytes(),
    )
    assert refused(lyon, from_other_authority) == grpc.StatusCode.UNAVAILABLE

    expired_dir = tmp_path / "expired"
    now = dt.datetime.now(dt.UTC)
    expired = issue(
        expired_dir,
        "paris",
        authority=certs,
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    with_expired = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=expired.key.read_bytes(),
        certificate_chain=expired.cert.read_bytes(),
    )
    assert refused(lyon, with_expired) == grpc.StatusCode.UNAVAILABLE

    plaintext = grpc.insecure_channel(lyon.address)
    with FederationClient(plaintext) as client, pytest.raises(grpc.RpcError) as caught:
        client.catalog(timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    # A node that is not who the configuration expects is refused by the client too.
    impostor = FederationClient.connect(
        lyon.address, certificate_paths(certs, "paris"), expected_identity="paris"
    )
    with impostor, pytest.raises(grpc.RpcError) as caught:
        impostor.catalog(timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    # And the node still serves a valid client.
    with lyon.client("paris") as client:
        assert client.health() == "SERVING"
        assert client.catalog().caller == "paris"


def test_health_and_reflection_answer(nodes) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    lyon = nodes["lyon"]
    with lyon.client("nice") as client:
        assert client.health(service="") == "SERVING"
        stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"citeplus.federation.v1.Federation", "grpc.health.v1.Health"} <= names


def test_every_call_is_logged_with_caller_method_and_dataset(nodes) -> None:
    lyon = nodes["lyon"]
    with lyon.client("paris") as client:
        client.schema("lyon/meters")
    time.sleep(0.3)
    import json

    lines = [json.loads(line) for line in lyon.log_file.read_text().splitlines() if "{" in line]
    calls = [entry for entry in lines if entry.get("msg") == "federation call"]
    assert any(
        e["caller"] == "paris" and e["method"] == "GetSchema" and e["dataset"] == "lyon/meters"
        for e in calls
    )
    assert any(
        e["caller"] == "nice" and e["dataset"] is None and e["status"] == "PERMISSION_DENIED"
        for e in calls
    )  # a refused dataset is not echoed as if it were one of the node's
