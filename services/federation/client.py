"""Calling a federation node: a mutual-TLS channel that checks the peer is who the
configuration says (its certificate must name the expected identity, whatever
address is dialled), and the stubs of the API, health checking included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.federation.calls import ON_BEHALF_OF
from services.federation.certs import channel_credentials
from services.federation.protos import pb, rpc
from services.policy.federation import CertificatePaths

SERVICE = "citeplus.federation.v1.Federation"
MAX_MESSAGE = 64 * 1024 * 1024


def open_channel(
    address: str,
    certificates: CertificatePaths,
    expected_identity: str | None,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.keepalive_time_ms", 30_000),
        # A peer back from a restart is dialled again within seconds, not after gRPC's
        # default back-off (up to 120 s): a federated answer stays partial no longer.
        # (The minimum is left alone: gRPC also takes it as the connect timeout, and a
        # peer that hangs in its handshake must time out, not look unreachable.)
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    if expected_identity:
        options.append(("grpc.ssl_target_name_override", expected_identity))
    return grpc.secure_channel(
        address, credentials or channel_credentials(certificates), options=options
    )


class FederationClient:
    """One node's API over one channel; ``on_behalf_of`` narrows what it may see."""

    def __init__(self, channel: grpc.Channel, *, on_behalf_of: str | None = None):
        self.channel = channel
        self.stub = rpc.FederationStub(channel)
        self.health_stub = health_pb2_grpc.HealthStub(channel)
        self.metadata = ((ON_BEHALF_OF, on_behalf_of),) if on_behalf_of else None

    @classmethod
    def connect(
        cls,
        address: str,
        certificates: CertificatePaths,
        expected_identity: str | None,
        **kwargs: Any,
    ) -> FederationClient:
        return cls(open_channel(address, certificates, expected_identity), **kwargs)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> FederationClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def health(self, timeout: float = 5.0, service: str = SERVICE) -> str:
        answer = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)

    def catalog(self, timeout: float = 10.0, **fields: Any) -> Any:
        return self.stub.GetCatalog(
            pb.GetCatalogRequest(**fields), timeout=timeout, metadata=self.metadata
        )

    def schema(self, dataset: str, schema_id: int = 0, timeout: float = 10.0) -> Any:
        return self.stub.GetSchema(
            pb.GetSchemaRequest(dataset=dataset, schema_id=schema_id),
            timeout=timeout,
            metadata=self.metadata,
        )

    def query(self, query: Any, timeout: float = 30.0) -> Iterator[Any]:
        return self.stub.QueryAggregates(query, timeout=timeout, metadata=self.metadata)

    def entities(self, query: Any, timeout: float = 30.0) -> Iterator[Any]:
        """QueryEntities: EntityPage messages, the last one marked."""
        return self.stub.QueryEntities(query, timeout=timeout, metadata=self.metadata)

    def temporal(self, query: Any, timeout: float = 30.0) -> Iterator[Any]:
        """QueryTemporal: TemporalPage messages, the last one marked."""
        return self.stub.QueryTemporal(query, timeout=timeout, metadata=self.metadata)

    def subscribe(self, request: Any, timeout: float | None = None) -> Iterator[Any]:
        return self.stub.Subscribe(request, timeout=timeout, metadata=self.metadata)

    def federated(self, request: Any, timeout: float = 60.0) -> Iterator[Any]:
        return self.stub.FederatedQuery(request, timeout=timeout, metadata=self.metadata)
