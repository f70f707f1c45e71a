"""The start-up every service shares (services/runtime/service_main.run_service)."""

from __future__ import annotations

import signal
import threading
import urllib.request
from pathlib import Path

import pytest

from services.runtime.paths import CITIES_DIR
from services.runtime.service_main import Running, ServiceStart, StartUp, run_service


@pytest.fixture(autouse=True)
def _restore_signals():
    """run_service installs SIGTERM/SIGINT handlers: give the test runner its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _no_topics(node, cities):
    return None  # this test reaches no broker: the contracts step is what a service chooses


def test_a_service_is_built_from_the_node_and_cities_and_always_closed() -> None:
    seen: dict[str, object] = {}

    def build(up: StartUp) -> Running:
        seen["cities"], seen["metrics"] = sorted(up.cities), up.metrics.service

        def run(stop: threading.Event) -> int:
            seen["stop_is_clear"] = not stop.is_set()
            raise RuntimeError("the service failed")

        return Running(run=run, close=lambda: seen.setdefault("closed", True))

    start = ServiceStart("probe", Path(CITIES_DIR), node_metrics_port=False, contracts=_no_topics)
    with pytest.raises(RuntimeError, match="the service failed"):
        run_service(start, build)
    assert seen["closed"] is True and seen["stop_is_clear"] is True
    assert seen["metrics"] == "probe" and "paris" in seen["cities"]  # type: ignore[operator]


def test_metrics_are_served_while_the_service_runs_and_its_exit_code_is_returned() -> None:
    answers: list[int] = []

    def build(up: StartUp) -> Running:
        def run(stop: threading.Event) -> int:
            with urllib.request.urlopen(f"http://{up.node.metrics.host}:{port}/metrics") as r:
                answers.append(r.status)
            return 3

        return Running(run=run)

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = ServiceStart("probe", Path(CITIES_DIR), metrics_port=port, contracts=_no_topics)
    assert run_service(start, build) == 3
    assert answers == [200]
    with pytest.raises(OSError):  # stopped with the service
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
