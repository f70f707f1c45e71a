"""gzip bodies kept by their digest: an answer sent again is not compressed again.

The answers most asked for (entities of a type, types, the OpenAPI document) are
the same bytes for many callers until the data changes; compressing 20 KB costs
about a millisecond, hashing it some microseconds. So the caching middleware,
which hashes every body for its ETag anyway, looks the compressed form up by that
digest first. Bounded in bytes, least recently used out first; a body that
changes has a new digest, so nothing stale is ever served. Large bodies are
compressed on a worker thread, so that one big answer does not stall the others.
"""

from __future__ import annotations

import asyncio
import gzip
from collections import OrderedDict

LEVEL = 5  # zlib's default is 6; 5 is about as small here and faster
ON_THREAD_FROM = 64 * 1024  # bytes: larger bodies are compressed off the event loop


def compress(body: bytes) -> bytes:
    return gzip.compress(body, LEVEL, mtime=0)


class CompressedBodies:
    def __init__(self, max_bytes: int = 32 << 20):
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    async def get(self, digest: str, body: bytes) -> bytes:
        """The gzip form of ``body`` (whose digest is ``digest``), compressed once."""
        found = self._bodies.get(digest)
        if found is not None:
            self._bodies.move_to_end(digest)
            return found
        if len(body) >= ON_THREAD_FROM:
            compressed = await asyncio.get_running_loop().run_in_executor(None, compress, body)
        else:
            compressed = compress(body)
        self._keep(digest, compressed)
        return compressed

    def _keep(self, digest: str, compressed: bytes) -> None:
        if len(compressed) > self.max_bytes or digest in self._bodies:
            return
        self._bodies[digest] = compressed
        self._size += len(compressed)
        while self._size > self.max_bytes:
            self._size -= len(self._bodies.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._bodies)
