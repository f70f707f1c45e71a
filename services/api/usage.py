"""Usage of the API in Prometheus metrics, per key.

Counted under the key's id (never its secret), ``anonymous`` for every caller
without a key: never the client address, which would be personal data in the
metrics store and an unbounded number of series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

ANONYMOUS_LABEL = "anonymous"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Usage:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter(
            "citeplus_api_requests",
            "Requests answered by the common API, by key and status class",
            ["key", "status"],
            registry=registry,
        )
        self.rejected = Counter(
            "citeplus_api_rejected",
            "Requests refused before reaching a route (bad key, quota, bounds), by key and reason",
            ["key", "reason"],
            registry=registry,
        )

    def answered(self, key_id: str | None, status: int) -> None:
        self.requests.labels(key_id or ANONYMOUS_LABEL, status_class(status)).inc()

    def refused(self, key_id: str | None, reason: str) -> None:
        self.rejected.labels(key_id or ANONYMOUS_LABEL, reason).inc()
