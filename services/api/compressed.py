"""gzip bodies kept by their digest: an answer sent again is not compressed again.

The answers most asked for (entities of a type, types, the OpenAPI document) are
the same bytes for many callers until the data changes; compressing 20 KB costs
about a millisecond, hashing it some microseconds. So the caching middleware,
which hashes every body for its ETag anyway, looks the compressed form up by that
digest first. Bounded in bytes, least recently used out first; a body that
changes has a new digest, so nothing stale is ever served.
"""

from __future__ import annotations

import gzip
from collections import OrderedDict

LEVEL = 5  # zlib's default is 6; 5 is about as small here and faster
LARGEST = 1 << 20  # bodies above this are compressed by aiohttp, off the event loop


class CompressedBodies:
    def __init__(self, max_bytes: int = 32 << 20):
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, digest: str, body: bytes) -> bytes:
        """The gzip form of ``body`` (whose digest is ``digest``), compressed once."""
        found = self._bodies.get(digest)
        if found is not None:
            self._bodies.move_to_end(digest)
            return found
        compressed = gzip.compress(body, LEVEL, mtime=0)
        self._bodies[digest] = compressed
        self._size += len(compressed)
        while self._size > self.max_bytes and self._bodies:
            self._size -= len(self._bodies.popitem(last=False)[1])
        return compressed

    def __len__(self) -> int:
        return len(self._bodies)
