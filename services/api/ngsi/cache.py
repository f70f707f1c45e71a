"""A small time-bounded cache of finished answers.

What it holds changes slowly: the latest value of a sensor moves at its source's step
(minutes), types and attributes when a city opens a dataset. An entry is keyed by the
audience the nodes served (``on_behalf_of``: every key of the public shares the public
answer, a partner's keys share theirs), the route, the raw query string and the media
type. It is invalidated by age only (``ttl_s``); only complete answers are stored, so a
peer that comes back is seen at the next request. Least recently used entries go first
beyond ``max_entries`` or ``max_bytes`` (a client asking for thousands of distinct large
pages cannot grow the process without bound).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cached:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


class TtlCache:
    def __init__(
        self,
        ttl_s: float,
        max_entries: int = 2048,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl_s, self.max_entries, self.max_bytes, self.clock = (
            ttl_s,
            max_entries,
            max_bytes,
            clock,
        )
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self.bytes = 0

    def get(self, key: Hashable) -> object | None:
        found = self._entries.get(key)
        if found is None:
            return None
        stored, value = found
        if self.clock() - stored >= self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: object) -> None:
        if self.ttl_s <= 0 or _size(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self.clock(), value)
        self.bytes += _size(value)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= _size(value)


def _size(value: object) -> int:
    """Bytes a stored answer holds (its body); other values count as nothing."""
    return len(value.body) if isinstance(value, Cached) else 0
