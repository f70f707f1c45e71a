"""The bounds of the HTTP edge, in one typed value: what a slow, greedy or hostile
client meets. Read from node.yaml's ``ingest`` section (plus ``--max-body-mb``) so
that tests can serve the same app with short timeouts and small caps."""

from __future__ import annotations

from dataclasses import dataclass

from services.runtime.config import IngestSection
from services.runtime.errors import ConfigError

MiB = 1024 * 1024
DEFAULT_MAX_BODY = 32 * MiB
# Longest excerpt of the sender's own input that an answer may quote (an entity id).
MAX_ECHO_CHARS = 200


@dataclass(frozen=True)
class HttpLimits:
    """``max_body`` caps a body once inflated (gzip/deflate): 413 as soon as it is
    passed, with never more than the cap inflated. ``body_memory`` caps the bodies
    of all requests held at once (503 beyond), so that concurrency cannot multiply
    ``max_body``. A request whose headers take over ``header_timeout_s``, or whose
    body arrives slower than ``body_min_rate`` bytes/s over ``body_window_s``, is cut
    (408). At most ``max_connections`` connections (503 beyond) and
    ``max_requests_per_source`` requests in progress per source token (429 beyond)."""

    max_body: int = DEFAULT_MAX_BODY
    header_timeout_s: float = 10.0
    body_window_s: float = 10.0
    body_min_rate: int = 1024
    max_connections: int = 256
    max_requests_per_source: int = 32
    body_memory: int = 96 * MiB
    keepalive_timeout_s: float = 30.0
    public_catalogue: bool = False

    def __post_init__(self) -> None:
        if self.body_memory < self.max_body:
            raise ConfigError(
                f"{self.body_memory // MiB} MiB of bodies in memory is below the largest body "
                f"({self.max_body // MiB} MiB, --max-body-mb): a body that large would always "
                "get 503; raise body_memory_mb or lower --max-body-mb",
                key="ingest.body_memory_mb",
            )

    @classmethod
    def of(cls, section: IngestSection, max_body: int = DEFAULT_MAX_BODY) -> HttpLimits:
        return cls(
            max_body=max_body,
            header_timeout_s=section.header_timeout_s,
            body_window_s=section.body_window_s,
            body_min_rate=section.body_min_rate,
            max_connections=section.max_connections,
            max_requests_per_source=section.max_requests_per_source,
            body_memory=section.body_memory_mb * MiB,
            keepalive_timeout_s=section.keepalive_timeout_s,
            public_catalogue=section.public_catalogue,
        )


def excerpt(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """At most ``limit`` characters of a value an answer quotes back, saying how
    long it was when cut: a 10 MB entity id must not make a 10 MB answer."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text):,} characters]"
