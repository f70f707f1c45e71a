"""A small time-bounded cache of finished answers.

What it holds changes slowly: the latest value of a sensor moves at its source's step
(minutes), types and attributes when a city opens a dataset. An entry is keyed by the
audience the nodes served (``on_behalf_of``: every key of the public shares the public
answer, a partner's keys share theirs), the route, the raw query string and the media
type. It is invalidated by age only (``ttl_s``); only complete answers are stored, so a
peer that comes back is seen at the next request. Least recently used entries go first
beyond ``max_entries``.
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
        self, ttl_s: float, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()

    def get(self, key: Hashable) -> object | None:
        found = self._entries.get(key)
        if found is None:
            return None
        stored, value = found
        if self.clock() - stored >= self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: object) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[key] = (self.clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
