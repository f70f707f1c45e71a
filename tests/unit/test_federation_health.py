"""Federation health follows the warehouse (real chDB, no broker needed)."""

from __future__ import annotations

from pathlib import Path

from grpc_health.v1 import health, health_pb2

from services.federation.health_watch import HealthWatch, warehouse_answers
from services.runtime.config import load_node_config
from services.warehouse.port import open_warehouse

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(servicer: health.HealthServicer, service: str = "") -> int:
    return servicer.Check(health_pb2.HealthCheckRequest(service=service), None).status


def test_serving_while_the_warehouse_answers_and_not_after(tmp_path: Path) -> None:
    warehouse = open_warehouse(load_node_config(env={}), path=tmp_path / "chdb")
    servicer = health.HealthServicer()
    watch = HealthWatch(servicer, ("", "citeplus.Federation"), warehouse_answers(warehouse))
    assert watch.check() is True
    assert status(servicer) == SERVING and status(servicer, "citeplus.Federation") == SERVING
    warehouse.close()
    assert watch.check() is False
    assert status(servicer) == NOT_SERVING


def test_status_comes_back_when_the_dependency_does() -> None:
    down = {"now": True}

    def probe() -> None:
        if down["now"]:
            raise ConnectionError("clickhouse:8123 refused the connection")

    servicer = health.HealthServicer()
    watch = HealthWatch(servicer, ("",), probe, interval_s=0.05)
    watch.start()
    try:
        assert status(servicer) == NOT_SERVING
        down["now"] = False
        assert watch.check() and status(servicer) == SERVING
    finally:
        watch.stop()
