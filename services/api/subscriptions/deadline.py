"""A total time for one notification attempt, whatever the receiver does.

httpx's timeouts bound each operation (connect, one read, one write): a receiver
that sends one byte just before each read would time out holds the attempt, and one
of the notifier's shared connections, for ever; two hundred such receivers (ten
keys' worth of subscriptions) would leave no connection for anyone else. So the
notifier's connections go through :class:`DeadlineBackend`, whose every socket
operation is bounded by what is left of the current attempt (:func:`attempt`, per
thread: each delivery sends from its own thread), and fails as a timeout once the
attempt's time is over.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_local = threading.local()


@contextmanager
def attempt(total_s: float) -> Iterator[None]:
    """Every socket operation of this thread inside the block ends by ``total_s``."""
    _local.deadline = time.monotonic() + total_s
    try:
        yield
    finally:
        _local.deadline = math.inf


def _bounded(timeout: float | None) -> float | None:
    left = getattr(_local, "deadline", math.inf) - time.monotonic()
    if left == math.inf:
        return timeout
    if left <= 0:
        raise httpcore.ReadTimeout("the attempt's total time is over")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self.inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, every operation within the attempt's time."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self.inner.connect_tcp(
            host, port, _bounded(timeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("notifications go over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def deadline_transport(limits: httpx.Limits) -> httpx.HTTPTransport:
    """httpx's transport (certificates verified, no proxy from the environment) whose
    connections go through :class:`DeadlineBackend`. httpx takes no network backend,
    so its connection pool is made again with one."""
    transport = httpx.HTTPTransport(verify=True, trust_env=False, limits=limits)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=True, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=DeadlineBackend(),
    )
    return transport
