"""Connections within bounds: a deadline for a request's headers, a cap on open
connections, a cap on one source's requests in progress.

aiohttp has no header timeout (a client sending one header byte per second holds
a connection for hours) and no connection cap, so each connection's protocol is
wrapped here (:class:`GuardedSite`): the wrapper only watches, forwards every
event to aiohttp's own protocol, and cuts a connection whose request headers are
not complete ``header_timeout_s`` after its first byte (408, one log line). The
middleware tells the wrapper when a request reaches a handler, and answers 503
on a connection opened beyond ``max_connections``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.ingest.limits import HttpLimits
from services.runtime.http_log import server_logger

log = logging.getLogger(__name__)

_CUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b'Content-Length: %d\r\n\r\n{"error": "%s"}'
)
_HEADERS_LATE = b"request headers not complete in time; the connection was closed"


class _Watched(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a deadline while a request's
    headers arrive (from the first byte of a request to its handler)."""

    def __init__(self, guard: ConnectionGuard, inner: Any):
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False
        self.early = False  # bytes of a next request came while one was being handled
        self.over_cap = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.over_cap = self.guard.opened(self)
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.busy:
            self.early = True
        elif self.timer is None:
            self._arm()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.closed(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def request_started(self) -> None:
        self.busy, self.early = True, False
        self._disarm()

    def request_finished(self) -> None:
        self.busy = False
        if self.early:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.guard.limits.header_timeout_s, self._cut)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _cut(self) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        peer = self.transport.get_extra_info("peername")
        log.info(
            "client cut: request headers not complete within %.3g s",
            self.guard.limits.header_timeout_s,
            extra={"peer": str(peer)},
        )
        self.transport.write(_CUT % (len(_HEADERS_LATE) + 13, _HEADERS_LATE))
        self.transport.close()


class ConnectionGuard:
    """Open connections (and the watcher of each) and one source's requests in progress."""

    def __init__(self, limits: HttpLimits):
        self.limits = limits
        self.open = 0
        self._watched: dict[object, _Watched] = {}
        self._in_progress: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Watched(self, factory())

    def opened(self, watched: _Watched) -> bool:
        """Counts a connection; True when it is one too many."""
        self.open += 1
        self._watched[watched.transport] = watched
        return self.open > self.limits.max_connections

    def closed(self, watched: _Watched) -> None:
        self.open -= 1
        self._watched.pop(watched.transport, None)

    def watcher(self, request: web.Request) -> _Watched | None:
        return self._watched.get(request.transport)

    def enter_source(self, key: tuple[str, str]) -> bool:
        """Counts a request of a source in; False (not counted) when it has too many."""
        with self._lock:
            current = self._in_progress.get(key, 0)
            if current >= self.limits.max_requests_per_source:
                return False
            self._in_progress[key] = current + 1
            return True

    def in_progress(self, key: tuple[str, str]) -> int:
        """Requests of a source between authentication and answer."""
        with self._lock:
            return self._in_progress.get(key, 0)

    def leave_source(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._in_progress[key] -= 1
            if not self._in_progress[key]:
                del self._in_progress[key]


GUARD = web.AppKey("connection_guard", ConnectionGuard)


@web.middleware
async def guard_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Stops the header deadline once a request reaches its handler; 503 on a
    connection beyond the cap (the client comes back when others have left)."""
    watched = request.app[GUARD].watcher(request)
    if watched is None:  # served without a GuardedSite (a plain runner)
        return await handler(request)
    watched.request_started()
    try:
        if watched.over_cap:
            response = web.json_response(
                {
                    "error": "the node has as many open connections as it accepts; "
                    "retry after the time in Retry-After",
                    "retry_after_s": 1,
                },
                status=503,
                headers={"Retry-After": "1"},
            )
            response.force_close()
            return response
        return await handler(request)
    finally:
        watched.request_finished()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are watched by the app's ConnectionGuard."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        reuse_port: bool = False,
    ):
        super().__init__(runner, host, port)
        self.guard = guard
        # Several ingest workers of one node listen on the same port (SO_REUSEPORT):
        # the kernel spreads new connections over them, and a dead worker's share
        # goes to the others at once. Off by default: a second node started on the
        # same port by mistake must fail with "address in use", not share it.
        self.reuse_port = reuse_port

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.wrap(server),
            self._host,
            self._port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def server_options(limits: HttpLimits) -> dict[str, Any]:
    """AppRunner options: bodies reach the handler compressed (body.py inflates
    them within bounds); idle kept-alive connections do not stay for an hour; the
    unread rest of a refused body (408, 413) is drained for 2 s, not aiohttp's 10,
    so that the client can read its answer without a slow one holding on."""
    return {
        "auto_decompress": False,
        "keepalive_timeout": limits.keepalive_timeout_s,
        "lingering_time": 2.0,
        "logger": server_logger(),
    }
