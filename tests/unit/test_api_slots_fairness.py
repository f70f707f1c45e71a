"""A hostile anonymous client against the federation reader's slots (real gRPC and
mutual TLS to an in-memory node that hangs): every API request reaches a node as this
node's certificate, which the node serves a few queries at a time; the reader queued
everyone for those same slots, so slow public queries held them all and a partner's
request waited out its deadline without ever reaching the node."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.api.audience import Audience
from services.api.reader import FederationReader
from services.federation.certs import ensure_dev_certificates
from services.federation.protos import pb
from services.policy.federation import DEFAULT_AGGREGATES, FederationConfig, certificate_paths
from services.policy.limits import FederationLimits
from testkit.api_reader import MemoryServicer, sample_federation, serve_memory_node

SLOTS = 4
PARTNER = Audience(key_id="k1", application="app", partner="acme")


@pytest.fixture(scope="module")
def hung(tmp_path_factory):
    certs: Path = tmp_path_factory.mktemp("certs")
    ensure_dev_certificates(certs, ["lyon"])
    hold = threading.Event()
    servicer = MemoryServicer(sample_federation()["lyon"], hold=hold)
    server, address = serve_memory_node(servicer, certificate_paths(certs, "lyon"))
    config = FederationConfig(
        identity="lyon",
        listen=address,
        certs_dir=certs,
        peers=(),
        energy_aggregates=DEFAULT_AGGREGATES,
        peer_timeout_s=20.0,
        enabled=True,
        source="test",
        limits=FederationLimits(queries_per_caller=SLOTS),
    )
    reader = FederationReader(config)
    yield reader, servicer, hold
    hold.set()
    reader.close()
    server.stop(0)


def wait_for(condition, bound_s: float = 3.0) -> None:
    """Poll until ``condition()`` or ``bound_s`` passed (then go on: the assertion says)."""
    end = time.monotonic() + bound_s
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)


def test_public_requests_cannot_hold_every_slot_a_partner_needs(hung) -> None:
    reader, servicer, hold = hung
    query = pb.EntityQuery(entity_types=["AirQualityObserved"], limit=5)
    with ThreadPoolExecutor(max_workers=SLOTS + 1) as pool:
        public = [pool.submit(reader.entities, query, Audience()) for _ in range(SLOTS)]
        wait_for(lambda: len(servicer.seen) >= SLOTS, bound_s=1.0)  # as many as may reach
        partner = pool.submit(reader.entities, query, PARTNER)
        # while the public queries still hang (the node holds them until released)
        wait_for(lambda: any(b == "acme" for _, b in servicer.seen), bound_s=15.0)
        reached = [b for _, b in servicer.seen]
        hold.set()
        for future in (*public, partner):
            future.result()
    assert "acme" in reached, reached  # the partner's query reached the node
    assert reached.count("public") < SLOTS  # public queries queued at their own share
