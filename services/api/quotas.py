"""Request quotas: a token bucket per key, and one per client address for anonymous callers.

A bucket holds up to ``burst`` requests and refills at ``rate`` per second; a request
takes one token or is refused with the seconds until one is back (the 429's
Retry-After). The clock is passed in, so tests move it instead of sleeping.

Anonymous callers are told apart by the TCP peer address only: a header such as
X-Forwarded-For is believed only from a proxy the node names
(``api.trusted_proxies``), else anyone could pick a fresh address per request and
never meet the limit. Anonymous buckets are kept for the most recent addresses only
(an address forgotten is one that has been quiet, so its bucket would be full
anyway), which bounds memory whatever the number of clients.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
MAX_ANONYMOUS_BUCKETS = 100_000


@dataclass(frozen=True)
class Rate:
    """``per_second`` refill, ``burst`` capacity."""

    per_second: float
    burst: int


class TokenBucket:
    def __init__(self, rate: Rate, clock: Clock):
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._at = clock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = self._clock()
        elapsed = max(0.0, now - self._at)
        self._tokens = min(float(self.rate.burst), self._tokens + elapsed * self.rate.per_second)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate.per_second


def retry_after(wait_s: float) -> int:
    """Retry-After is whole seconds (RFC 9110); round up so a client that obeys succeeds."""
    return max(1, math.ceil(wait_s))


class Quotas:
    """Buckets by caller: ``key:<id>`` for a key, ``addr:<address>`` for anonymous."""

    def __init__(
        self,
        anonymous: Rate,
        key_default: Rate,
        clock: Clock = time.monotonic,
        max_anonymous: int = MAX_ANONYMOUS_BUCKETS,
    ):
        self.anonymous = anonymous
        self.key_default = key_default
        self._clock = clock
        self._keys: dict[str, TokenBucket] = {}
        self._addresses: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max_anonymous = max_anonymous

    def for_key(self, key_id: str, rate: Rate | None = None) -> float:
        """Take a token of ``key_id``'s bucket (``rate``: its own limit, else the node's);
        a changed rate starts a new bucket."""
        wanted = rate or self.key_default
        bucket = self._keys.get(key_id)
        if bucket is None or bucket.rate != wanted:
            bucket = self._keys[key_id] = TokenBucket(wanted, self._clock)
        return bucket.take()

    def for_address(self, address: str) -> float:
        bucket = self._addresses.get(address)
        if bucket is None:
            bucket = self._addresses[address] = TokenBucket(self.anonymous, self._clock)
            while len(self._addresses) > self._max_anonymous:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        return bucket.take()
