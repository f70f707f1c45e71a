"""Per-source admission of HTTP batches: a token bucket for each source that
declares a ``rate_limit`` in its city file (sources without one are not limited).

Pure and clock-injected, so the arithmetic is tested without a server; the HTTP
edge answers 429 with ``Retry-After`` when a batch is refused, before reading it.
"""

from __future__ import annotations

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


class SourceLimits:
    """The buckets of every limited source, keyed by (city, source)."""

    def __init__(self, cities: Iterable[CityConfig], clock: Callable[[], float] = time.monotonic):
        self.buckets = {
            (city.code, source.id): TokenBucket(source.rate_limit, clock)
            for city in cities
            for source in city.sources
            if source.rate_limit is not None
        }

    def wait_for(self, city: str, source: str) -> float:
        """0 when the source may push a batch now, else how long to wait."""
        bucket = self.buckets.get((city, source))
        return 0.0 if bucket is None else bucket.take()
