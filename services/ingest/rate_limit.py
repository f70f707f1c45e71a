"""Per-source admission of HTTP batches: a token bucket for each source that
declares a ``rate_limit`` in its city file (sources without one are not limited).

Pure and clock-injected, so the arithmetic is tested without a server; the HTTP
edge answers 429 with ``Retry-After`` when a batch is refused, before reading it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

from services.runtime.cities import CityConfig, RateLimit


class TokenBucket:
    """``burst`` batches at once, refilled at ``per_second``."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self.tokens = float(limit.burst)
        self.updated = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a batch may go now (and counts it), else the seconds until one may."""
        with self._lock:
            now = self.clock()
            elapsed = max(0.0, now - self.updated)
            refilled = self.tokens + elapsed * self.limit.per_second
            self.tokens = min(float(self.limit.burst), refilled)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.limit.per_second


def share_of(limit: RateLimit, workers: int) -> RateLimit:
    """One worker's part of a source's limit when ``workers`` ingest workers share the
    port: the rate and the burst divided (a burst of at least 1), so that all of them
    together never admit more than the city file says. Divided rather than shared
    through Kafka: admission is decided before the body is read, in microseconds, and
    a round trip to a broker per batch would cost more than the batch. The price: a
    source whose connections all land on one worker gets 1/``workers`` of its rate
    (the kernel spreads connections, not requests; clients with several connections
    get close to the whole)."""
    if workers <= 1:
        return limit
    return RateLimit(limit.per_second / workers, max(1, math.ceil(limit.burst / workers)))


class SourceLimits:
    """The buckets of every limited source, keyed by (city, source); ``workers``: how
    many ingest workers share the sources' limits (:func:`share_of`)."""

    def __init__(
        self,
        cities: Iterable[CityConfig],
        clock: Callable[[], float] = time.monotonic,
        workers: int = 1,
    ):
        self.buckets = {
            (city.code, source.id): TokenBucket(share_of(source.rate_limit, workers), clock)
            for city in cities
            for source in city.sources
            if source.rate_limit is not None
        }

    def wait_for(self, city: str, source: str) -> float:
        """0 when the source may push a batch now, else how long to wait."""
        bucket = self.buckets.get((city, source))
        return 0.0 if bucket is None else bucket.take()
