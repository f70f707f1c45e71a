"""Source tokens: each source pushes with its own bearer token, only to itself.

Tokens are resolved once at start from the references in the city files
(``env:VAR`` / ``file:/path``); they are compared in constant time and never
logged or echoed.
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
    status: int  # 200, 401 or 403
    message: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class SourceTokens:
    """Digests of every source's token; the tokens themselves are not kept."""

    def __init__(self, cities: dict[str, CityConfig]):
        self._by_source: dict[tuple[str, str], bytes] = {}
        self.unconfigured: list[str] = []
        for city in cities.values():
            for source in city.sources:
                try:
                    self._by_source[(city.code, source.id)] = _digest(resolve_secret(source.token))
                except ConfigError as exc:
                    self.unconfigured.append(f"{city.code}/{source.id}")
                    log.warning("source has no usable token", extra={"detail": str(exc)})
        self._owners = {digest: key for key, digest in self._by_source.items()}

    def check(self, city: str, source: str, authorization: str | None) -> AuthDecision:
        """200 when the bearer token is this source's; 401 unknown; 403 another source's."""
        if not authorization or not authorization.startswith("Bearer "):
            return AuthDecision(401, "send the source's token as 'Authorization: Bearer <token>'")
        presented = _digest(authorization[len("Bearer ") :].strip())
        expected = self._by_source.get((city, source))
        if expected is None:
            return AuthDecision(401, "this source has no credentials configured on this node")
        if hmac.compare_digest(presented, expected):
            return AuthDecision(200, "ok")
        owner = self._owners.get(presented)
        if owner is not None:
            return AuthDecision(403, "this token belongs to another source; it may push only there")
        return AuthDecision(401, "unknown token for this source")
