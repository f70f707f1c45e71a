"""FederatedQuery: one question asked of this node and its partner nodes at once.

Each peer gets its own thread and its own deadline; pages are forwarded the moment
they arrive, tagged with the node that answered, so a slow or stopped city delays
nobody: when its deadline passes it is reported (timed out, unreachable, refused,
failed) next to the others' answers.

Peers are asked on behalf of the caller (``citeplus-on-behalf-of``): a peer then
serves only what both this node and the caller may see. Calls are not relayed
further (a peer answers from its own warehouse), so there are no loops.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from services.federation.calls import ON_BEHALF_OF, Caller, invalid
from services.federation.client import FederationClient, open_channel
from services.federation.protos import pb
from services.federation.queries import rows_of
from services.policy.federation import FederationConfig, Peer

MAX_PEER_TIMEOUT_S = 60.0
MARGIN_S = 0.2  # kept from the caller's deadline to send the summary

OUTCOMES = {
    grpc.StatusCode.DEADLINE_EXCEEDED: pb.PEER_OUTCOME_TIMED_OUT,
    grpc.StatusCode.UNAVAILABLE: pb.PEER_OUTCOME_UNREACHABLE,
    grpc.StatusCode.INTERNAL: pb.PEER_OUTCOME_FAILED,
    grpc.StatusCode.UNKNOWN: pb.PEER_OUTCOME_FAILED,
    grpc.StatusCode.DATA_LOSS: pb.PEER_OUTCOME_FAILED,
    grpc.StatusCode.UNIMPLEMENTED: pb.PEER_OUTCOME_FAILED,
}


def outcome_of(code: grpc.StatusCode) -> int:
    """Timed out, unreachable and failed are the peer's trouble; any other status
    (permission, invalid argument, not found, exhausted...) is its refusal."""
    return OUTCOMES.get(code, pb.PEER_OUTCOME_REFUSED)


def _duration(seconds: float) -> Any:
    value = pb.PeerStatus().elapsed
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class Fanout:
    def __init__(self, config: FederationConfig, max_workers: int = 32):
        self.config = config
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fanout")
        self._clients: dict[str, FederationClient] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _client(self, peer: Peer) -> FederationClient:
        with self._lock:
            client = self._clients.get(peer.code)
            if client is None:
                channel = open_channel(peer.address, self.config.certificates, peer.code)
                client = FederationClient(channel)
                self._clients[peer.code] = client
            return client

    def _forget(self, peer: Peer) -> None:
        with self._lock:
            client = self._clients.pop(peer.code, None)
        if client:
            client.close()

    def choose(self, request: Any) -> list[Peer]:
        names = list(dict.fromkeys(request.peers))
        for name in names:
            if name not in {p.code for p in self.config.peers}:
                known = ", ".join(p.code for p in self.config.peers) or "none"
                raise invalid("peers", f"{name!r} is not a peer of this node (peers: {known})")
        peers = [p for p in self.config.peers if not names or p.code in names]
        cities = set(request.query.cities)
        return [p for p in peers if not cities or cities & set(p.cities)]

    def peer_timeout(self, request: Any, remaining: float | None) -> float:
        wanted = self.config.peer_timeout_s
        if request.HasField("peer_timeout"):
            wanted = request.peer_timeout.ToNanoseconds() / 1e9
            if not 0 < wanted <= MAX_PEER_TIMEOUT_S:
                raise invalid("peer_timeout", f"between 0 and {MAX_PEER_TIMEOUT_S:g} s")
        if remaining is not None:
            wanted = min(wanted, remaining - MARGIN_S)
        if wanted <= 0:
            raise invalid("peer_timeout", "the call's own deadline leaves no time for peers")
        return wanted

    def run(
        self,
        request: Any,
        caller: Caller,
        peers: list[Peer],
        timeout_s: float,
        local: Callable[[], Iterator[Any]] | None,
    ) -> Iterator[Any]:
        """FederatedQueryResponse messages: pages as they come, a status per node, a summary."""
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=256)
        stopping = threading.Event()
        calls: list[Any] = []
        behalf = caller.identity if caller.identity != self.config.identity else None

        def put(item: tuple[str, Any]) -> None:
            while not stopping.is_set():
                try:
                    inbox.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def ask_peer(peer: Peer) -> None:
            started, rows = time.monotonic(), 0
            status = pb.PeerStatus(node=peer.code, outcome=pb.PEER_OUTCOME_ANSWERED, status="OK")
            query = pb.AggregateQuery()
            query.CopyFrom(request.query)
            metadata = ((ON_BEHALF_OF, behalf),) if behalf else None
            fresh_channel_tried = False
            try:
                while True:
                    left = timeout_s - (time.monotonic() - started)
                    if left <= 0:
                        raise _Expired()
                    call = self._client(peer).stub.QueryAggregates(
                        query, timeout=left, metadata=metadata
                    )
                    calls.append(call)
                    token = ""
                    try:
                        for page in call:
                            page.node = peer.code  # who answered is who we dialled
                            rows += rows_of(page)
                            token = page.next_page_token if page.last else ""
                            put(("page", page))
                    except grpc.RpcError as exc:
                        # A channel that failed before waits out a reconnection backoff and
                        # fails fast meanwhile: a peer back up deserves one fresh attempt.
                        if exc.code() != grpc.StatusCode.UNAVAILABLE or rows or fresh_channel_tried:
                            raise
                        self._forget(peer)
                        fresh_channel_tried = True
                        continue
                    if not token:
                        break
                    query.page_token = token  # a long answer: continue where it stopped
            except grpc.RpcError as exc:
                status.outcome = outcome_of(exc.code())
                status.status, status.message = exc.code().name, exc.details() or ""
            except _Expired:
                status.outcome, status.status = pb.PEER_OUTCOME_TIMED_OUT, "DEADLINE_EXCEEDED"
            except Exception as exc:  # never let one peer take the call down
                status.outcome, status.status, status.message = (
                    pb.PEER_OUTCOME_FAILED,
                    "INTERNAL",
                    type(exc).__name__,
                )
            status.rows = rows
            status.elapsed.CopyFrom(_duration(time.monotonic() - started))
            put(("status", status))

        def answer_locally() -> None:
            assert local is not None
            started, rows = time.monotonic(), 0
            status = pb.PeerStatus(
                node=self.config.identity, outcome=pb.PEER_OUTCOME_ANSWERED, status="OK"
            )
            try:
                for page in local():
                    rows += rows_of(page)
                    put(("page", page))
                    if time.monotonic() - started > timeout_s:
                        raise _Expired()
            except _Expired:
                status.outcome, status.status = pb.PEER_OUTCOME_TIMED_OUT, "DEADLINE_EXCEEDED"
            except Exception as exc:
                code = getattr(exc, "code", grpc.StatusCode.INTERNAL)
                status.outcome = outcome_of(code)
                status.status = code.name
                status.message = getattr(exc, "message", "") or type(exc).__name__
            status.rows = rows
            status.elapsed.CopyFrom(_duration(time.monotonic() - started))
            put(("status", status))

        tasks = [self.pool.submit(ask_peer, peer) for peer in peers]
        if local is not None:
            tasks.append(self.pool.submit(answer_locally))
        waiting = {p.code for p in peers} | ({self.config.identity} if local else set())
        done: list[Any] = []
        total = 0
        deadline = time.monotonic() + timeout_s + 2.0
        try:
            while waiting:
                try:
                    kind, item = inbox.get(timeout=max(0.05, deadline - time.monotonic()))
                except queue.Empty:
                    break  # a peer's thread did not report in time: reported below
                if kind == "page":
                    total += rows_of(item)
                    yield pb.FederatedQueryResponse(page=item)
                else:
                    waiting.discard(item.node)
                    done.append(item)
                    yield pb.FederatedQueryResponse(peer=item)
            for node in sorted(waiting):
                status = pb.PeerStatus(
                    node=node, outcome=pb.PEER_OUTCOME_TIMED_OUT, status="DEADLINE_EXCEEDED"
                )
                done.append(status)
                yield pb.FederatedQueryResponse(peer=status)
            yield pb.FederatedQueryResponse(summary=pb.FederatedSummary(peers=done, rows=total))
        finally:
            stopping.set()
            for call in calls:
                call.cancel()
            for task in tasks:
                task.cancel()


class _Expired(Exception):
    pass
