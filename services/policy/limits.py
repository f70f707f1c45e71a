"""The federation API's limits as the federation file declares them (``limits:`` of
deploy/federation.yaml); enforced by quotas.py and the Subscribe loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FederationLimits:
    """``limits:`` of the federation file (deploy/federation.yaml)."""

    subscriptions_per_caller: int = 4
    subscriptions_total: int = 32
    # The node's own identity (its common API, which feeds every NGSI-LD subscription
    # of one audience from one stream per topic): its own bound, not a partner's.
    subscriptions_own: int = 16
    queries_per_caller: int = 4
    queries_total: int = 32
    stream_max_life_s: float = 3600.0
