"""Source tokens: each source pushes with its own bearer token, only to itself.

Tokens are resolved once at start from the references in the city files
(``env:VAR`` / ``file:/path``); they are compared in constant time and never
logged or echoed. Nothing before authentication: a request without a token of
this node hears a generic 401 that names no city or source, whatever its path;
only a token holder learns whether a path exists (404) or is another's (403).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from services.runtime.cities import CityConfig, resolve_secret
from services.runtime.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthDecision:
    status: int  # 200, 401, 403 or 404
    message: str


def _digest(token: str) -> bytes:
    # surrogatepass: header bytes that are not UTF-8 reach us as lone surrogates
    # (aiohttp's decoding); they must digest to an unknown token (401), not raise.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class SourceTokens:
    """Digests of every source's token; the tokens themselves are not kept."""

    def __init__(self, cities: dict[str, CityConfig]):
        self._by_source: dict[tuple[str, str], bytes] = {}
        self._declared = {(c.code, s.id) for c in cities.values() for s in c.sources}
        self.unconfigured: list[str] = []
        for city in cities.values():
            for source in city.sources:
                try:
                    self._by_source[(city.code, source.id)] = _digest(resolve_secret(source.token))
                except ConfigError as exc:
                    self.unconfigured.append(f"{city.code}/{source.id}")
                    log.warning("source has no usable token", extra={"detail": str(exc)})
        self._owners = {digest: key for key, digest in self._by_source.items()}

    def _presented(self, authorization: str | None) -> bytes | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return _digest(authorization[len("Bearer ") :].strip())

    def is_known(self, authorization: str | None) -> bool:
        """True when the bearer token is some source's token of this node."""
        presented = self._presented(authorization)
        return presented is not None and presented in self._owners

    def check(self, city: str, source: str, authorization: str | None) -> AuthDecision:
        """200 when the bearer token is this source's; 401 (the same words for every
        path) for no or an unknown token; for another source's token, 403 if the
        path is a source of this node, 404 if not."""
        presented = self._presented(authorization)
        if presented is None:
            return AuthDecision(401, "send your source's token as 'Authorization: Bearer <token>'")
        expected = self._by_source.get((city, source))
        if expected is not None and hmac.compare_digest(presented, expected):
            return AuthDecision(200, "ok")
        if presented not in self._owners:
            return AuthDecision(401, "unknown token; send your source's token as a Bearer token")
        if (city, source) in self._declared:
            return AuthDecision(403, "this token may not push to this source")
        return AuthDecision(404, "no such city or source on this node; GET /v1/cities lists them")
