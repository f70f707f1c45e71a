"""Reading entities through the federation API: this node's own server and its peers.

The API never opens the warehouse. It asks its own node's federation server and every
peer of the federation file in parallel, with the node's client certificate and the
caller's audience on behalf of (``citeplus-on-behalf-of``: a key's partner or
``public``), so each node serves only what both the node and the caller may see.
Each node has its own deadline (``peer_timeout_s``); a node that does not answer in
time, refuses or is down is reported with its outcome and the others' answer stands.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from threading import BoundedSemaphore, Lock
from typing import Any, Protocol

import grpc

from services.api.audience import PUBLIC_AUDIENCE, Audience
from services.api.merge import ANSWERED, Merged, NodeAnswer, NodeStatus, merge
from services.federation.client import FederationClient, open_channel
from services.policy.federation import FederationConfig

NODE_LIMIT = 1000  # a node serves at most this many entities per call (EntityQuery.limit)
NODE_TEMPORAL_LIMIT = 100  # and this many temporal entities
# Readings held per node for one temporal page. To merge a page at ``offset`` each node
# sends its first offset + limit entities with their series: unbounded, a page at
# offset 9,900 held a hundred federation answers of up to a million readings each.
# The bound is one federation answer's own (entities.MAX_POINTS_PER_CALL).
MAX_TEMPORAL_POINTS = 1_000_000
# gRPC statuses that are the node's trouble; any other status is its refusal.
TROUBLE = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "timed-out",
    grpc.StatusCode.UNAVAILABLE: "unreachable",
    grpc.StatusCode.INTERNAL: "failed",
    grpc.StatusCode.UNKNOWN: "failed",
    grpc.StatusCode.DATA_LOSS: "failed",
    grpc.StatusCode.UNIMPLEMENTED: "failed",
}


class EntityReader(Protocol):
    """What the NGSI-LD routes read: merged pages of entities and of temporal entities."""

    def entities(self, query: Any, audience: Audience) -> Merged:
        """Entities of an ``EntityQuery`` (limit up to 10,000: the merge window)."""

    def temporal(self, query: Any, audience: Audience) -> Merged:
        """Temporal entities of a ``TemporalQuery`` (limit and offset on entities)."""


@dataclass(frozen=True)
class NodeCatalog:
    """One node's GetCatalog answer for an audience (``catalog`` None: it did not
    answer; ``status`` says how it fared), and the address it is dialled at."""

    status: NodeStatus
    address: str
    catalog: Any = None


@dataclass(frozen=True)
class Node:
    code: str
    address: str
    cities: tuple[str, ...] = ()  # empty: unknown (the node itself), always asked


class FederationReader:
    """:class:`EntityReader` over gRPC: one channel per node, reused by every request."""

    def __init__(self, config: FederationConfig, max_workers: int = 32):
        self.config = config
        peers = tuple(Node(p.code, p.address, p.cities) for p in config.peers)
        self.nodes = (Node(config.identity, own_address(config.listen)), *peers)
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="api-fanout")
        # A node serves each certified caller at most `queries_per_caller` queries at once
        # and refuses the next (RESOURCE_EXHAUSTED); every API request reaches it as this
        # node's identity, so the reader queues at that bound instead of being refused.
        self._slots = {
            node.code: BoundedSemaphore(config.limits.queries_per_caller) for node in self.nodes
        }
        # Anonymous and partner-less callers (the public) take at most half of those, so
        # slow public queries (anyone may send them) cannot hold every slot and leave
        # partners' requests queued until their deadline.
        public_share = max(1, config.limits.queries_per_caller // 2)
        self._public_slots = {node.code: BoundedSemaphore(public_share) for node in self.nodes}
        self._channels: dict[str, grpc.Channel] = {}
        self._clients: dict[tuple[str, str], FederationClient] = {}
        self._lock = Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._clients.clear()

    def entities(self, query: Any, audience: Audience) -> Merged:
        return self._fan_out(query, query, audience, "QueryEntities")

    def temporal(self, query: Any, audience: Audience) -> Merged:
        return self._fan_out(query, query.entities, audience, "QueryTemporal")

    def catalogs(self, audience: Audience) -> list[NodeCatalog]:
        """Every node's GetCatalog on behalf of ``audience``, asked at once: each node
        lists only what it shares with that audience (never read from local files)."""
        timeout = self.config.peer_timeout_s
        futures = [
            self.pool.submit(self._catalog_of, node, audience, timeout) for node in self.nodes
        ]
        done, _ = wait(futures, timeout=timeout + 2.0)
        return [
            f.result() if f in done else NodeCatalog(NodeStatus(n.code, "timed-out"), n.address)
            for n, f in zip(self.nodes, futures, strict=True)
        ]

    def _catalog_of(self, node: Node, audience: Audience, timeout: float) -> NodeCatalog:
        try:
            catalog = self._client(node, audience.on_behalf_of).catalog(timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            outcome = TROUBLE.get(code, "refused")
            status = NodeStatus(node.code, outcome, code.name, error.details() or "")
            return NodeCatalog(status, node.address)
        return NodeCatalog(NodeStatus(node.code, ANSWERED), node.address, catalog)

    def _fan_out(self, query: Any, selection: Any, audience: Audience, method: str) -> Merged:
        """Every concerned node asked at once; the merge cut at the caller's page."""
        nodes = [n for n in self.nodes if _concerned(n, selection.cities)]
        timeout = self.config.peer_timeout_s
        deadline = time.monotonic() + timeout
        futures = [
            self.pool.submit(self._ask, node, query, audience, method, deadline) for node in nodes
        ]
        done, _ = wait(futures, timeout=timeout + 2.0)
        answers = [
            f.result() if f in done else NodeAnswer(NodeStatus(n.code, "timed-out"))
            for n, f in zip(nodes, futures, strict=True)
        ]
        return merge(answers, selection.offset, selection.limit)

    def _ask(
        self,
        node: Node,
        query: Any,
        audience: Audience,
        method: str,
        deadline: float,
    ) -> NodeAnswer:
        """One node's answer by the request's deadline for it (a call that waited in the
        pool or for a slot has that much less time)."""
        public = audience.on_behalf_of == PUBLIC_AUDIENCE
        slots = [self._public_slots[node.code]] if public else []
        slots.append(self._slots[node.code])
        taken = []
        try:
            for slot in slots:
                left = deadline - time.monotonic()
                if left <= 0 or not slot.acquire(timeout=left):
                    queued = NodeStatus(node.code, "timed-out", "DEADLINE_EXCEEDED", "queued")
                    return NodeAnswer(queued)
                taken.append(slot)
            client = self._client(node, audience.on_behalf_of)
            items, total = _read_window(client, method, query, deadline)
        except grpc.RpcError as error:
            code = error.code()
            outcome = TROUBLE.get(code, "refused")
            return NodeAnswer(NodeStatus(node.code, outcome, code.name, error.details() or ""))
        finally:
            for slot in reversed(taken):
                slot.release()
        return NodeAnswer(NodeStatus(node.code, ANSWERED), items, total)

    def client_for(self, code: str, behalf: str) -> FederationClient:
        """The client of node ``code`` on behalf of ``behalf`` (the channel shared with
        every request): what subscription feeds stream through."""
        node = next(n for n in self.nodes if n.code == code)
        return self._client(node, behalf)

    def _client(self, node: Node, behalf: str) -> FederationClient:
        with self._lock:
            client = self._clients.get((node.code, behalf))
            if client is None:
                channel = self._channels.get(node.code)
                if channel is None:
                    channel = open_channel(node.address, self.config.certificates, node.code)
                    self._channels[node.code] = channel
                client = FederationClient(channel, on_behalf_of=behalf)
                self._clients[(node.code, behalf)] = client
            return client


def own_address(listen: str) -> str:
    """Where to dial this node's own federation server: its listen address, with a
    wildcard host (``0.0.0.0:7443``, to reach partners) dialled on the loopback."""
    host, _, port = listen.rpartition(":")
    wildcard = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}
    return f"{wildcard.get(host, host)}:{port}"


def _concerned(node: Node, cities: Any) -> bool:
    return not cities or not node.cities or bool(set(cities) & set(node.cities))


def _read_window(
    client: FederationClient, method: str, query: Any, deadline: float
) -> tuple[list[Any], int]:
    """The node's first ``offset + limit`` entities, in calls of at most NODE_LIMIT."""
    selection = query.entities if method == "QueryTemporal" else query
    wanted = selection.offset + selection.limit
    items: list[Any] = []
    total = held = 0
    while True:
        call = type(query)()
        call.CopyFrom(query)
        part = call.entities if method == "QueryTemporal" else call
        most = NODE_TEMPORAL_LIMIT if method == "QueryTemporal" else NODE_LIMIT
        part.offset, part.limit = len(items), max(1, min(most, wanted - len(items)))
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Expired()
        got = 0
        for page in getattr(client.stub, method)(call, timeout=left, metadata=client.metadata):
            items.extend(page.entities)
            got += len(page.entities)
            total = max(total, page.total)
            if method == "QueryTemporal":
                held += sum(len(s.times) + len(s.buckets) for e in page.entities for s in e.series)
                if held > MAX_TEMPORAL_POINTS:
                    raise _TooManyReadings()
        if got < part.limit or len(items) >= wanted:
            return items[:wanted], total


class _Expired(grpc.RpcError):
    """The node's time ran out between two calls of one window."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "the node's deadline passed while reading further pages"


class _TooManyReadings(grpc.RpcError):
    """The node's entities up to the page hold more readings than one request may."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INVALID_ARGUMENT

    def details(self) -> str:
        return (
            f"this page needs more than {MAX_TEMPORAL_POINTS:,} readings from one node (the "
            "entities before offset are read too); lower offset or lastN, narrow the "
            "entities (type, q, georel), shorten the range or aggregate with a period"
        )
