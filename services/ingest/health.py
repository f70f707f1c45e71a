"""What an ingest worker's /healthz says, on the shared HTTP port and on its own.

Several workers share the HTTP port, so the node also reads each at its own metrics
port (services/runtime/metrics.py); both answers are written here so that they
cannot drift apart. Ingest is a server, not a loop: it marks no progress, and an
idle edge (no city pushing at night) is healthy, never "stalled"."""

from __future__ import annotations

from services.ingest.core import IngestCore


def health_body(core: IngestCore) -> dict[str, object]:
    """The shared port's /healthz body: alive, and its producer's commits and failures."""
    sink = core.sink
    assert sink is not None, "a serving ingest has a sink"
    return {"service": "ingest", "status": "ok", "commits": sink.commits, "failures": sink.failures}


def worker_health(core: IngestCore) -> tuple[bool, dict[str, object]]:
    """(healthy, body) of the worker's own /healthz: the shared port's answer once the
    worker listens there (``metrics.ready``), "starting" before, when a push could not
    reach it yet."""
    body = health_body(core)
    if not core.metrics.ready:
        return False, {**body, "status": "starting"}
    return True, body
