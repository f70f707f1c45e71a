"""The managed-server bookkeeping on a stand-in server: a Python sleeper, no JVM.

The stand-in "answers" once it has created the file named by its address, so
readiness, deafness and death can each be staged in a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.infra.managed import ManagedServer
from services.infra.process import is_alive, write_pid
from services.runtime.errors import InfrastructureError

SLEEPER = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"


def _server(tmp_path: Path, *, answers: bool = True) -> ManagedServer:
    return ManagedServer(
        directory=lambda: tmp_path / "stand-in",
        stem="standin",
        marker=lambda: f"--state={tmp_path}",
        answers=(lambda address: Path(address).exists()) if answers else (lambda _: False),
        address_key="where",
        host="127.0.0.1",
        start_timeout_s=1.0,
        stop_grace_s=5.0,
        log=logging.getLogger("services.infra.test"),
        name="stand-in server",
        stale_name="stand-in",
        deaf_name="stand-in",
        preposition="at",
    )


def _command(server: ManagedServer, address: Path, code: str = SLEEPER) -> list[str]:
    return [sys.executable, "-c", code, str(address), server.marker()]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ManagedServer]:
    managed = _server(tmp_path)
    yield managed
    managed.stop()  # whatever a failed test left running


def test_launch_adopt_status_stop(server: ManagedServer, tmp_path: Path) -> None:
    address = str(tmp_path / "ready")
    cmd = _command(server, tmp_path / "ready")
    assert server.launch(cmd, address, {"extra": 1}, starting="stand-in") == address
    pid = server.running_pid(clean_stale=False)
    assert pid is not None and is_alive(pid)
    assert json.loads(server.run_file.read_text()) == {"pid": pid, "where": address, "extra": 1}
    assert server.adopt(pid, address) == address

    status = server.status("standin", "1.0", recorded=("extra",))
    keys = "name version running pid stale_pid where extra answering log state_dir"
    assert list(status) == keys.split()  # the order `infra status --json` prints
    assert status["running"] and status["answering"] and status["pid"] == pid

    server.stop()
    assert not is_alive(pid)
    assert not server.pid_file.exists() and not server.run_file.exists()
    assert not server.status("standin", "1.0")["running"]
    server.stop()  # nothing to stop: still fine


def test_a_deaf_server_is_stopped_and_forgotten(tmp_path: Path) -> None:
    deaf = _server(tmp_path, answers=False)
    cmd = _command(deaf, tmp_path / "ready")
    with pytest.raises(InfrastructureError, match=r"stand-in server did not answer within 1 s at"):
        deaf.launch(cmd, str(tmp_path / "ready"), {}, starting="stand-in")
    assert not deaf.pid_file.exists() and not deaf.run_file.exists()
    assert deaf.running_pid(clean_stale=False) is None


def test_a_dying_server_shows_its_log(server: ManagedServer, tmp_path: Path) -> None:
    cmd = _command(server, tmp_path / "ready", code="print('no luck'); raise SystemExit(3)")
    with pytest.raises(InfrastructureError, match=r"exited with code 3") as caught:
        server.launch(cmd, str(tmp_path / "ready"), {}, starting="stand-in")
    assert str(caught.value).endswith("no luck")
    assert not server.pid_file.exists()


def test_a_stranger_behind_a_stale_pid_file_is_left_alone(
    server: ManagedServer, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_pid(server.pid_file, stranger.pid)
        assert server.status("standin", "1.0")["stale_pid"] == stranger.pid
        with caplog.at_level(logging.INFO, logger="services.infra.test"):
            server.stop()
        assert "removed stale stand-in pid file" in caplog.text
        assert "stand-in server is not running" in caplog.text
        assert stranger.poll() is None and not server.pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_busy_port_is_named(server: ManagedServer) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        with pytest.raises(InfrastructureError, match=rf"port {busy} on 127.0.0.1 \(the port\)"):
            server.refuse_busy_port(busy, "the port", "another one")
