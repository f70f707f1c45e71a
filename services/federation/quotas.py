"""Fair shares of a node's federation API: how many streams and queries one caller
may hold at once, and how long a subscription may live.

One partner must not take every slot (it did: 16 subscriptions of 16, every
other partner refused). Each certified caller has its own quota; the node's total
stays a second, outer bound. A refusal names the caller's own quota and use,
never what other partners hold.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from services.federation.calls import FederationError
from services.policy.limits import FederationLimits

KINDS = {
    "subscriptions": ("subscriptions_per_caller", "subscriptions_total"),
    "queries": ("queries_per_caller", "queries_total"),
}


class CallerQuotas:
    """Counts open calls of one kind per certified caller, under a per-caller and a
    total bound; a slot is held for the life of the call (a context manager)."""

    def __init__(self, kind: str, per_caller: int, total: int, own: tuple[str, int] | None = None):
        self.kind = kind
        self.per_caller = per_caller
        # (identity, bound): the node itself (its common API) may hold its own count.
        self.own = own
        self.total = total
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, kind: str, limits: FederationLimits, home: str | None = None) -> CallerQuotas:
        per_caller, total = KINDS[kind]
        own = None
        if kind == "subscriptions" and home:
            own = (home, limits.subscriptions_own)
        return cls(kind, getattr(limits, per_caller), getattr(limits, total), own)

    def held(self, caller: str) -> int:
        with self._lock:
            return self._held.get(caller, 0)

    @contextmanager
    def slot(self, caller: str) -> Iterator[None]:
        self._acquire(caller)
        try:
            yield
        finally:
            with self._lock:
                left = self._held[caller] - 1
                if left:
                    self._held[caller] = left
                else:
                    del self._held[caller]

    def _acquire(self, caller: str) -> None:
        per_caller_key, total_key = KINDS[self.kind]
        bound = self.per_caller
        if self.own is not None and caller == self.own[0]:
            bound, per_caller_key = self.own[1], "subscriptions_own"
        with self._lock:
            mine = self._held.get(caller, 0)
            if mine >= bound:
                raise FederationError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{caller} already holds {mine} of its {bound} concurrent "
                    f"{self.kind} on this node (limits.{per_caller_key}); close one, or "
                    "retry when one ends",
                )
            if sum(self._held.values()) >= self.total:
                raise FederationError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this node serves as many {self.kind} as it can "
                    f"(limits.{total_key}); retry later",
                )
            self._held[caller] = mine + 1
