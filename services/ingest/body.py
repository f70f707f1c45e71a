"""Reading a request body within bounds: streaming decompression that stops at the
cap, a minimum transfer rate, and a memory budget shared by every request.

aiohttp's own decompression is off (``auto_decompress=False``, see
``connections.server_options``): it inflates ahead of the reader and keeps
inflating what a refused request still sends, so eight 1 MB gzip bombs took the
process to ~1 GB. Here a body is inflated only as far as it is read, never more
than ``max_body`` + 1 bytes, and the inflated bytes of all requests together stay
under ``body_memory`` (a request that would pass it gets 503, not the node's RAM).
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from services.ingest.limits import HttpLimits, excerpt

# Content-Encoding -> zlib wbits (gzip header, zlib header); "identity" is no coding.
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
ACCEPTED_ENCODINGS = ("identity", "gzip", "deflate")
HELD = web.RequestKey("held_body_bytes", int)


class BodyRefused(Exception):
    """A body that is not read to its end; ``status`` and the text the sender gets."""

    status = 400

    def __init__(self, message: str, **extra: object):
        super().__init__(message)
        self.extra = extra


class BodyTooLarge(BodyRefused):
    status = 413


class UnsupportedEncoding(BodyRefused):
    status = 415


class SlowBody(BodyRefused):
    status = 408


class NodeBusy(BodyRefused):
    status = 503


class ClientGone(Exception):
    """The client closed the connection before its body was read."""


class MemoryBudget:
    """Bytes of request bodies held at once, all requests together."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            self.peak = max(self.peak, self.held)
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self.held -= size


@dataclass
class BodyStats:
    """What reading bodies has cost so far: the most bytes one request inflated."""

    largest_inflated: int = 0


class Inflater:
    """Inflates a Content-Encoding stream piece by piece (at most ``STEP`` bytes each),
    never past ``cap`` + 1 bytes in all: the first byte beyond the cap stops it."""

    STEP = 1024 * 1024

    def __init__(self, encoding: str, cap: int):
        self.cap = cap
        self.produced = 0
        self.encoding = encoding
        self._zlib = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
        self._started = False

    @property
    def compressed(self) -> bool:
        return self._zlib is not None

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The inflated pieces of ``chunk``; BodyTooLarge once more than ``cap`` would come."""
        if self._zlib is None:
            yield from self._count(chunk)
            return
        if not self._started and chunk:
            self._started = True
            if self.encoding == "deflate" and chunk[0] & 0x0F != 8:
                # "deflate" sent without its zlib header, as some clients do (RFC 9110 §8.4.1.2)
                self._zlib = zlib.decompressobj(-15)
        data, wanted = chunk, 1
        while data or wanted:
            limit = min(self.STEP, self.cap + 1 - self.produced)
            try:
                out = self._zlib.decompress(data, limit)
            except zlib.error as exc:
                raise BodyRefused(f"the body is not valid compressed data ({exc})") from None
            data = self._zlib.unconsumed_tail
            wanted = len(out) == limit  # zlib may hold more output for input it took
            yield from self._count(out)

    def _count(self, out: bytes) -> Iterator[bytes]:
        self.produced += len(out)
        if self.produced > self.cap:
            raise BodyTooLarge(
                f"body larger than {self.cap:,} bytes once decompressed; split the batch",
                limit=self.cap,
            )
        if out:
            yield out

    def finish(self) -> None:
        if self._zlib is not None and not self._zlib.eof:
            raise BodyRefused("the compressed body is truncated: it ends before its stream does")


def content_encoding(request: web.Request) -> str:
    """The body's coding, or UnsupportedEncoding naming the accepted ones (br included:
    brotli would need a streaming decoder with an output bound, not worth its weight)."""
    value = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if value in _WBITS or value == "identity":
        return value
    raise UnsupportedEncoding(
        f"Content-Encoding not accepted; send the body as one of: {', '.join(ACCEPTED_ENCODINGS)}",
        accepted=list(ACCEPTED_ENCODINGS),
    )


async def _next_chunk(request: web.Request, timeout: float) -> bytes | None:
    """The next bytes of the body (b"" at its end), None if none came within ``timeout``."""
    try:
        return await asyncio.wait_for(request.content.readany(), timeout)
    except TimeoutError:
        return None
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ClientGone(str(exc) or type(exc).__name__) from None
    except (RequestPayloadError, HttpProcessingError) as exc:  # broken chunked framing
        raise BodyRefused(f"the body's framing is broken ({excerpt(exc)})") from None


class _RateWindow:
    """The wire bytes of the current window; SlowBody when one ends under the rate."""

    def __init__(self, limits: HttpLimits):
        self.limits = limits
        self.started = time.monotonic()
        self.bytes = 0

    def remaining(self) -> float:
        return max(0.0, self.started + self.limits.body_window_s - time.monotonic())

    def check(self) -> None:
        if self.remaining() > 0:
            return
        needed = self.limits.body_min_rate * self.limits.body_window_s
        if self.bytes < needed:
            raise SlowBody(
                f"body sent slower than {self.limits.body_min_rate:,} bytes/s over "
                f"{self.limits.body_window_s:g} s; the request was cut, send it again faster"
            )
        self.started, self.bytes = time.monotonic(), 0


async def read_body(
    request: web.Request, limits: HttpLimits, budget: MemoryBudget, stats: BodyStats
) -> bytes:
    """The whole inflated body, or a BodyRefused/ClientGone; what it held is given back
    to the budget when the caller is done (``release_body``)."""
    inflater = Inflater(content_encoding(request), limits.max_body)
    if not inflater.compressed and (request.content_length or 0) > limits.max_body:
        raise BodyTooLarge(f"body larger than {limits.max_body:,} bytes; split the batch")
    window = _RateWindow(limits)
    parts: list[bytes] = []
    held = 0
    try:
        while True:
            chunk = await _next_chunk(request, max(window.remaining(), 0.001))
            if chunk is None:
                window.check()
                continue
            if not chunk:
                inflater.finish()
                break
            window.bytes += len(chunk)
            window.check()
            try:
                for out in inflater.feed(chunk):
                    if not budget.take(len(out)):
                        raise NodeBusy(
                            "the node holds as many request bodies as it may; retry shortly",
                            retry_after=1,
                        )
                    held += len(out)
                    parts.append(out)
            finally:
                stats.largest_inflated = max(stats.largest_inflated, inflater.produced)
        body = b"".join(parts)
        request[HELD] = held
        return body
    except BaseException:
        budget.give_back(held)
        raise


def release_body(request: web.Request, budget: MemoryBudget) -> None:
    """Give a read body's bytes back to the budget (once its batch is done)."""
    budget.give_back(request.get(HELD, 0))
    request[HELD] = 0
