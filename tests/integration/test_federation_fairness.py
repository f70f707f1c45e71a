"""Fair shares of one node's federation API, as hostile or greedy partners meet it:
real gRPC over loopback with mutual TLS, one `citeplus federation serve` process
(lyon) with small limits, partners paris and nice holding certificates of the
same development authority.

What must hold: a partner opening more subscriptions than its quota is refused
with a status naming its own quota while another partner still gets a slot; a
stream past its maximum life ends with a clear status after a last position; a
cancelled stream is audited as CANCELLED; a malformed on-behalf-of header is
refused and audited under the certified caller.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest

from services.federation.client import FederationClient
from services.federation.protos import pb
from services.policy.federation import certificate_paths
from services.runtime.kafka import RecordProducer, make_producer
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import load_topics
from testkit.federation_nodes import T0, Node, make_authority, observation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PER_CALLER = 2
MAX_LIFE_S = 10  # long enough for the quota steps to run on a loaded machine


@pytest.fixture(scope="module")
def lyon(node, tmp_path_factory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("fairness")
    certs = make_authority(root / "certs", ["lyon", "paris", "nice"])
    prefix = f"test.fair{uuid.uuid4().hex[:8]}."
    lyon = Node(
        "lyon",
        root / "lyon",
        certs_dir=certs,
        bootstrap=node.kafka.bootstrap,
        registry=node.registry.url,
        topic_prefix=prefix,
        limits={
            "subscriptions_per_caller": PER_CALLER,
            "subscriptions_total": 16,
            "stream_max_life_s": MAX_LIFE_S,
        },
    )
    lyon.sharing = {"air": {"level": "open", "licence": "ODbL-1.0"}}
    specs = [
        replace(load_topics()["public.observations.v1"], name=prefix + "public.observations.v1")
    ]
    provision_topics(node, specs)
    writer = RecordProducer(make_producer(node), connect_contracts(node, specs))
    for i in range(20):
        record = observation("lyon", "air", "z1", i, T0 + i * 600_000_000, 6)
        writer.produce(specs[0].name, record["entity_pseudonym"], record)
    assert writer.flush() == 0
    lyon.prepare(seed=False)  # Subscribe reads topics, not the warehouse
    lyon.start()
    try:
        yield lyon.wait_ready()
    finally:
        lyon.stop()


def open_stream(lyon: Node, partner: str) -> tuple[FederationClient, Any]:
    """A subscription from the earliest record, once its first batch arrived (so the
    node holds its slot)."""
    client = lyon.client(partner)
    request = pb.SubscribeRequest(dataset="lyon/air", max_batch=5)
    setattr(request, "from", pb.START_POINT_EARLIEST)
    stream = client.subscribe(request, timeout=120)
    first = next(stream)
    assert first.records
    return client, stream


def audit_lines(lyon: Node) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in lyon.log_file.read_text().splitlines() if x.startswith("{")]
    return [entry for entry in lines if entry.get("msg") == "federation call"]


def wait_for_audit(lyon: Node, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first audit line that ``matches``, polled for (the line is written when the
    server side of the call ends, after the client saw it end)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [entry for entry in audit_lines(lyon) if matches(entry)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no such audit line; calls seen: {audit_lines(lyon)[-5:]}")


def test_quotas_are_per_caller_and_streams_end_at_their_max_life(lyon: Node) -> None:
    opened = [open_stream(lyon, "paris") for _ in range(PER_CALLER)]
    try:
        # One more from paris is refused, naming paris's own quota and nothing of others.
        client = lyon.client("paris")
        request = pb.SubscribeRequest(dataset="lyon/air")
        setattr(request, "from", pb.START_POINT_EARLIEST)
        with client, pytest.raises(grpc.RpcError) as caught:
            next(client.subscribe(request, timeout=30))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "paris" in caught.value.details()
        assert "subscriptions_per_caller" in caught.value.details()
        assert "nice" not in caught.value.details()

        # Another partner still gets a slot.
        nice_client, nice_stream = open_stream(lyon, "nice")
        with nice_client:
            nice_stream.cancel()

        # A cancelled stream is audited as CANCELLED, under its certified caller.
        paris_client, cancelled = opened.pop(0)
        cancelled.cancel()
        paris_client.close()
        wait_for_audit(
            lyon,
            lambda e: (
                e["method"] == "Subscribe" and e["caller"] == "paris" and e["status"] == "CANCELLED"
            ),
        )

        # The other paris stream ends at its maximum life: a last position, then a status.
        _, stream = opened[0]
        batches = []
        with pytest.raises(grpc.RpcError) as ended:
            for batch in stream:
                batches.append(batch)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "maximum life" in ended.value.details()
        assert batches and batches[-1].position.partitions
        line = wait_for_audit(
            lyon, lambda e: e["method"] == "Subscribe" and e.get("ended") == "max-life"
        )
        assert line["caller"] == "paris" and line["status"] == "DEADLINE_EXCEEDED"
    finally:
        for client, stream in opened:
            stream.cancel()
            client.close()


def test_a_malformed_on_behalf_of_is_refused_and_audited_under_the_certified_caller(
    lyon: Node,
) -> None:
    paths = certificate_paths(lyon.certs_dir, "nice")
    with (
        FederationClient.connect(lyon.address, paths, "lyon", on_behalf_of="Not A Code!") as client,
        pytest.raises(grpc.RpcError) as caught,
    ):
        client.catalog()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    line = wait_for_audit(
        lyon, lambda e: e["method"] == "GetCatalog" and e.get("on_behalf_of_malformed")
    )
    assert line["caller"] == "nice" and line["status"] == "INVALID_ARGUMENT"
