"""A deep temporal page asked of the federation reader (real gRPC and mutual TLS to an
in-memory node): every node reads the series of the entities before the offset too,
to merge the page; held without a bound, one request at offset 9,900 made the API
hold up to a hundred federation answers of a million readings each."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.api import reader as reader_module
from services.api.audience import Audience
from services.api.reader import FederationReader
from services.federation.certs import ensure_dev_certificates
from services.federation.protos import pb
from services.policy.federation import DEFAULT_AGGREGATES, FederationConfig, certificate_paths
from testkit.api_reader import MemoryNode, MemoryServicer, entity, serve_memory_node

STATIONS, READINGS = 30, 20
PUBLIC = Audience()


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    certs: Path = tmp_path_factory.mktemp("certs")
    ensure_dev_certificates(certs, ["lyon"])
    node = MemoryNode(
        entities=[entity("lyon", f"S{i:03d}", values={"no2": 1.0}) for i in range(STATIONS)]
    )
    start = datetime(2026, 1, 15)
    for i in range(STATIONS):
        node.series[("lyon", f"S{i:03d}")] = {
            "no2": [(start + timedelta(minutes=15 * j), float(j)) for j in range(READINGS)]
        }
    server, address = serve_memory_node(MemoryServicer(node), certificate_paths(certs, "lyon"))
    config = FederationConfig(
        identity="lyon",
        listen=address,
        certs_dir=certs,
        peers=(),
        energy_aggregates=DEFAULT_AGGREGATES,
        peer_timeout_s=10.0,
        enabled=True,
        source="test",
    )
    built = FederationReader(config)
    yield built
    built.close()
    server.stop(0)


def page(offset: int, limit: int) -> pb.TemporalQuery:
    return pb.TemporalQuery(
        entities=pb.EntityQuery(entity_types=["AirQualityObserved"], offset=offset, limit=limit)
    )


def test_a_page_whose_window_holds_too_many_readings_is_refused_and_says_what_to_do(
    reader, monkeypatch
) -> None:
    # 25 stations of 20 readings read to serve the page at offset 20: 500 readings.
    monkeypatch.setattr(reader_module, "MAX_TEMPORAL_POINTS", 400, raising=False)
    merged = reader.temporal(page(20, 5), PUBLIC)
    assert not merged.items
    [node] = merged.nodes
    assert (node.outcome, node.status) == ("refused", "INVALID_ARGUMENT")
    assert "offset" in node.message and "lastN" in node.message


def test_a_page_within_the_bound_is_served_whole(reader, monkeypatch) -> None:
    monkeypatch.setattr(reader_module, "MAX_TEMPORAL_POINTS", 400, raising=False)
    merged = reader.temporal(page(10, 5), PUBLIC)
    assert [i.entity.entity for i in merged.items] == [f"S{i:03d}" for i in range(10, 15)]
    assert all(len(s.times) == READINGS for i in merged.items for s in i.series)
