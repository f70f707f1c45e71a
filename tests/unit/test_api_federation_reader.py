"""The federation reader over real gRPC and mutual TLS: in-memory federation nodes
(this node and three peers: one answers, one hangs past its deadline, one is down).
What the reader merges, what each node is told (the node's certificate, the caller's
audience on behalf of), and that a peer down or silent never holds the answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.api import reader as reader_module
from services.api.audience import Audience
from services.api.reader import FederationReader
from services.federation.certs import ensure_dev_certificates
from services.federation.protos import pb
from services.policy.federation import (
    DEFAULT_AGGREGATES,
    FederationConfig,
    Peer,
    certificate_paths,
)
from services.policy.limits import FederationLimits
from testkit.api_reader import MemoryServicer, sample_federation, serve_memory_node
from testkit.ports import free_port


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    certs: Path = tmp_path_factory.mktemp("certs")
    ensure_dev_certificates(certs, ["lyon", "paris", "brest", "nice"])
    nodes = sample_federation()
    hold = threading.Event()
    servicers = {
        "lyon": MemoryServicer(nodes["lyon"]),
        "paris": MemoryServicer(nodes["paris"]),
        "brest": MemoryServicer(nodes["paris"], hold=hold),
    }
    servers = {c: serve_memory_node(s, certificate_paths(certs, c)) for c, s in servicers.items()}
    config = FederationConfig(
        identity="lyon",
        listen=servers["lyon"][1],
        certs_dir=certs,
        peers=(
            Peer("paris", servers["paris"][1], ("paris",)),
            Peer("brest", servers["brest"][1], ("brest",)),
            Peer("nice", f"127.0.0.1:{free_port()}", ("nice",)),
        ),
        energy_aggregates=DEFAULT_AGGREGATES,
        peer_timeout_s=4.0,
        enabled=True,
        source="test",
    )
    reader = FederationReader(config)
    yield reader, servicers
    hold.set()
    reader.close()
    for server, _ in servers.values():
        server.stop(0)


def test_every_node_is_asked_with_the_nodes_certificate_on_behalf_of_the_caller(federation):
    reader, servicers = federation
    merged = reader.entities(
        pb.EntityQuery(entity_types=["AirQualityObserved"], limit=10, count=True),
        Audience(key_id="k", application="app", partner="acme"),
    )
    assert [(e.city, e.entity) for e in merged.items] == [
        ("lyon", "FR20004"),
        ("lyon", "FR20017"),
        ("lyon", "FR20062"),
        ("paris", "FR04002"),
        ("paris", "FR04143"),
    ]
    assert merged.total == 5
    outcomes = {n.node: n.outcome for n in merged.nodes}
    assert outcomes == {
        "brest": "timed-out",
        "lyon": "answered",
        "nice": "unreachable",
        "paris": "answered",
    }
    assert ("lyon", "acme") in servicers["lyon"].seen
    assert ("lyon", "acme") in servicers["paris"].seen


def test_the_public_is_asked_as_public_and_sees_no_partner_data(federation):
    reader, servicers = federation
    query = pb.EntityQuery(cities=["lyon"], entity_types=["ACMeasurement"], limit=5)
    merged = reader.entities(query, Audience())
    assert merged.items == () and merged.answered
    assert servicers["lyon"].seen[-1] == ("lyon", "public")
    partner = reader.entities(query, Audience(partner="acme"))
    assert [e.entity for e in partner.items] == ["m-7f3a"]


def test_a_window_deeper_than_one_call_is_read_in_several(federation, monkeypatch):
    reader, _ = federation
    whole = reader.entities(pb.EntityQuery(cities=["lyon"], limit=100), Audience())
    monkeypatch.setattr(reader_module, "NODE_LIMIT", 2)
    merged = reader.entities(pb.EntityQuery(cities=["lyon"], limit=3, offset=2), Audience())
    assert [e.entity for e in merged.items] == [e.entity for e in whole.items][2:5]
    assert len(whole.items) == 6 and {n.node for n in merged.nodes} == {"lyon"}


def test_temporal_through_the_federation(federation):
    reader, _ = federation
    query = pb.TemporalQuery(
        entities=pb.EntityQuery(cities=["lyon"], entity_types=["AirQualityObserved"], limit=1),
        last_n=3,
    )
    merged = reader.temporal(query, Audience())
    assert [e.entity.entity for e in merged.items] == ["FR20004"]
    assert list(merged.items[0].series[0].values) == [33.0, 34.0, 35.0]


class Crowded(MemoryServicer):
    """Holds each call until three are open at once (or half a second passed)."""

    def __init__(self, node):
        super().__init__(node)
        self.open, self.most = 0, 0
        self.changed = threading.Condition()

    def QueryEntities(self, request, context):
        with self.changed:
            self.open += 1
            self.most = max(self.most, self.open)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.open >= 3, timeout=0.5)
        try:
            yield from super().QueryEntities(request, context)
        finally:
            with self.changed:
                self.open -= 1


def test_a_node_is_never_asked_more_at_once_than_its_quota_per_caller(tmp_path):
    ensure_dev_certificates(tmp_path, ["lyon"])
    servicer = Crowded(sample_federation()["lyon"])
    server, address = serve_memory_node(servicer, certificate_paths(tmp_path, "lyon"))
    config = FederationConfig(
        identity="lyon",
        listen=address,
        certs_dir=tmp_path,
        peers=(),
        energy_aggregates=DEFAULT_AGGREGATES,
        peer_timeout_s=30.0,
        enabled=True,
        source="test",
        limits=FederationLimits(queries_per_caller=2),
    )
    reader = FederationReader(config)
    try:
        with ThreadPoolExecutor(max_workers=6) as callers:
            answers = list(
                callers.map(
                    # a partner's: the public takes only half the quota (test_api_slots_fairness)
                    lambda _: reader.entities(pb.EntityQuery(limit=1), Audience("k", "a", "acme")),
                    range(6),
                )
            )
    finally:
        reader.close()
        server.stop(0)
    assert all(a.complete for a in answers)
    assert servicer.most == 2
