"""HTTP compression of answers, as ClickHouse does it: only when the client sets
``enable_http_compression=1`` and accepts an encoding this end can write."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.publish.clickhouse_http.exchange import Response

_SMALL = 256  # below this, compressing costs more than it saves


def chosen_encoding(params: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The first of the client's Accept-Encoding this end writes (lz4, gzip, deflate)."""
    if params.get("enable_http_compression", "0") not in ("1", "true"):
        return None
    accepted = [
        part.split(";")[0].strip().lower()
        for part in (headers.get("Accept-Encoding") or "").split(",")
    ]
    for encoding in accepted:
        if encoding in ("lz4", "gzip", "deflate"):
            return encoding
    return None


def encode(data: bytes, encoding: str, level: int = 3) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=level)
    if encoding == "deflate":
        return zlib.compress(data, level)
    import lz4.frame

    return lz4.frame.compress(data)


def compress_response(
    response: Response, params: Mapping[str, str], headers: Mapping[str, str]
) -> Response:
    encoding = chosen_encoding(params, headers)
    if encoding is None or len(response.body) < _SMALL:
        return response
    level = params.get("http_zlib_compression_level", "3")
    chosen = min(max(int(level), 1), 9) if level.isdigit() else 3
    response.body = encode(response.body, encoding, chosen)
    response.headers["Content-Encoding"] = encoding
    return response
