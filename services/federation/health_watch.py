"""gRPC health that tells the truth: SERVING only while the warehouse answers.

Every answer of the federation API but subscriptions comes from the warehouse;
a node whose ClickHouse is gone would otherwise say SERVING to load balancers
and peers while failing every query. A thread probes it every few seconds and
flips the status both ways, logging each change once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from grpc_health.v1 import health, health_pb2

from services.warehouse.port import Warehouse

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def warehouse_answers(warehouse: Warehouse) -> Callable[[], None]:
    """A probe that raises when the warehouse cannot run the smallest query."""

    def probe() -> None:
        warehouse.query_arrow("SELECT 1 AS ok")

    return probe


class HealthWatch:
    """Sets ``services`` on ``servicer`` from ``probe`` now and every ``interval_s``."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        services: Iterable[str],
        probe: Callable[[], None],
        interval_s: float = 5.0,
    ):
        self.servicer = servicer
        self.services = tuple(services)
        self.probe = probe
        self.interval_s = interval_s
        self.serving: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Probe once and publish the outcome; True when serving."""
        try:
            self.probe()
        except Exception as exc:  # any failure of the dependency means not serving
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        else:
            ok, reason = True, None
        if ok != self.serving:
            (log.info if ok else log.warning)(
                "federation health", extra={"serving": ok, "reason": reason}
            )
        self.serving = ok
        for name in self.services:
            self.servicer.set(name, SERVING if ok else NOT_SERVING)
        return ok

    def start(self) -> HealthWatch:
        self.check()
        self._thread = threading.Thread(target=self._run, name="federation-health", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
