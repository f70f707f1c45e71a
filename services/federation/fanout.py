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
        behalf = caller.identity if caller.identity != self.config.identity else None
        fan = _Round(query=request.query, timeout_s=timeout_s, behalf=behalf)
        tasks = [self.pool.submit(self._ask_peer, fan, peer) for peer in peers]
        if local is not None:
            tasks.append(self.pool.submit(self._answer_locally, fan, local))
        waiting = {p.code for p in peers} | ({self.config.identity} if local else set())
        try:
            yield from fan.gather(waiting, deadline=time.monotonic() + timeout_s + 2.0)
        finally:
            fan.stop(tasks)

    def _ask_peer(self, fan: _Round, peer: Peer) -> None:
        fan.report(peer.code, lambda started: self._peer_pages(fan, peer, started), _peer_failure)

    def _answer_locally(self, fan: _Round, local: Callable[[], Iterator[Any]]) -> None:
        def pages(started: float) -> Iterator[Any]:
            for page in local():
                yield page
                if time.monotonic() - started > fan.timeout_s:
                    raise _Expired()

        fan.report(self.config.identity, pages, _local_failure)

    def _peer_pages(self, fan: _Round, peer: Peer, started: float) -> Iterator[Any]:
        """A peer's pages, asked again from the last page token while its answer goes
        on, within the call's time for peers."""
        query = pb.AggregateQuery()
        query.CopyFrom(fan.query)
        metadata = ((ON_BEHALF_OF, fan.behalf),) if fan.behalf else None
        rows, fresh_channel_tried = 0, False
        while True:
            left = fan.timeout_s - (time.monotonic() - started)
            if left <= 0:
                raise _Expired()
            stream = self._client(peer).stub.QueryAggregates(query, timeout=left, metadata=metadata)
            fan.calls.append(stream)
            token = ""
            try:
                for page in stream:
                    page.node = peer.code  # who answered is who we dialled
                    rows += rows_of(page)
                    token = page.next_page_token if page.last else ""
                    yield page
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


def _peer_failure(exc: Exception, status: Any) -> None:
    """A peer's gRPC status said as its outcome; anything else is our failure to ask."""
    if isinstance(exc, grpc.RpcError):
        status.outcome = outcome_of(exc.code())
        status.status, status.message = exc.code().name, exc.details() or ""
    else:  # never let one peer take the call down
        status.outcome, status.status, status.message = (
            pb.PEER_OUTCOME_FAILED,
            "INTERNAL",
            type(exc).__name__,
        )


def _local_failure(exc: Exception, status: Any) -> None:
    """This node's own refusal or failure (a FederationError carries its status)."""
    code = getattr(exc, "code", grpc.StatusCode.INTERNAL)
    status.outcome = outcome_of(code)
    status.status = code.name
    status.message = getattr(exc, "message", "") or type(exc).__name__


class _Round:
    """One FederatedQuery in flight: the inbox its workers report into, the calls to
    cancel when it ends, and the bookkeeping every node's status shares."""

    def __init__(self, query: Any, timeout_s: float, behalf: str | None) -> None:
        self.query = query
        self.timeout_s = timeout_s
        self.behalf = behalf
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=256)
        self.stopping = threading.Event()
        self.calls: list[Any] = []

    def put(self, item: tuple[str, Any]) -> None:
        """Into the inbox, unless the call ended (then nobody reads it any more)."""
        while not self.stopping.is_set():
            try:
                self.inbox.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def report(
        self,
        node: str,
        pages: Callable[[float], Iterator[Any]],
        failure: Callable[[Exception, Any], None],
    ) -> None:
        """Forward one node's pages, then its status: rows, time taken, and how it
        ended (answered, timed out, or what ``failure`` makes of an exception)."""
        started, rows = time.monotonic(), 0
        status = pb.PeerStatus(node=node, outcome=pb.PEER_OUTCOME_ANSWERED, status="OK")
        try:
            for page in pages(started):
                rows += rows_of(page)
                self.put(("page", page))
        except _Expired:
            status.outcome, status.status = pb.PEER_OUTCOME_TIMED_OUT, "DEADLINE_EXCEEDED"
        except Exception as exc:
            failure(exc, status)
        status.rows = rows
        status.elapsed.CopyFrom(_duration(time.monotonic() - started))
        self.put(("status", status))

    def gather(self, waiting: set[str], deadline: float) -> Iterator[Any]:
        """Responses as workers report, then a timed-out status for every node that did
        not report by ``deadline``, then the summary."""
        done: list[Any] = []
        total = 0
        while waiting:
            try:
                kind, item = self.inbox.get(timeout=max(0.05, deadline - time.monotonic()))
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

    def stop(self, tasks: list[Any]) -> None:
        """Release the workers: no more puts, peer calls cancelled, queued tasks dropped."""
        self.stopping.set()
        for call in self.calls:
            call.cancel()
        for task in tasks:
            task.cancel()


class _Expired(Exception):
    pass
