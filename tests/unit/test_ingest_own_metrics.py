"""An ingest worker's own metrics port (several workers share the HTTP port): the
runtime's metrics server renders the registry the worker counts into, and its
/healthz says what the HTTP port's says, however long the edge has been idle.
No broker: the producer is built but never started."""

from __future__ import annotations

import time
from argparse import Namespace

import httpx
import pytest

from services.ingest.core import IngestCore
from services.ingest.health import worker_health
from services.ingest.main import _own_metrics_port
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.errors import ConfigError
from services.runtime.group_commit import GroupCommitProducer
from services.runtime.metrics import MetricsServer, ServiceMetrics
from testkit.codecs import offline_contracts


def test_own_port_serves_the_workers_registry_and_an_idle_worker_is_healthy() -> None:
    metrics = ServiceMetrics("ingest")
    sink = GroupCommitProducer(NodeConfig(), "citeplus.test.ingest.0")
    core = IngestCore(offline_contracts("raw.v2", "dlq.v1", "raw.dlq.v1"), sink, metrics=metrics)
    sink.commits, sink.failures = 7, 1
    core.metrics.records_in.labels("ingest").inc(42)
    server = MetricsServer(metrics, "127.0.0.1", 0, health=lambda: worker_health(core)).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        starting = httpx.get(f"{base}/healthz", timeout=10)
        metrics.ready = True  # what the worker sets once its HTTP port listens
        metrics.last_progress = time.monotonic() - 3600  # an hour without a push
        idle = httpx.get(f"{base}/healthz", timeout=10)
        exposition = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        server.stop()
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    assert metrics.health()[1]["status"] == "stalled"  # what a stage's loop would say
    assert idle.status_code == 200
    assert idle.json() == {"service": "ingest", "status": "ok", "commits": 7, "failures": 1}
    assert 'citeplus_records_in_total{service="ingest"} 42.0' in exposition


def args(**given: object) -> Namespace:
    return Namespace(**{"metrics_port": None, "workers": 1, "instance": "0", **given})


def test_own_metrics_port_with_several_workers_or_when_given() -> None:
    assert _own_metrics_port(args()) is None  # one worker: its HTTP port's /metrics
    assert _own_metrics_port(args(metrics_port=0)) == 0
    assert _own_metrics_port(args(workers=2, instance="1", metrics_port=9999)) == 9999
    node = load_node_config()  # the worker's node.yaml: its index picks its port there
    assert _own_metrics_port(args(workers=2, instance="1")) == node.metrics_port("ingest", 1)
    assert node.metrics_port("ingest", 1) != node.metrics_port("ingest", 0) != node.ingest.port
    with pytest.raises(ConfigError, match="--metrics-port"):
        _own_metrics_port(args(workers=2, instance="w1"))
