"""Pure helpers of services.infra: no broker, no registry, no JVM started."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from services.infra import kafka_broker, paths, registry_server
from services.infra.java import class_file_java_major, parse_java_major
from services.infra.maven import pom_property
from services.infra.process import (
    is_alive,
    parse_pid,
    port_in_use,
    read_pid,
    runs_with,
    stop_process,
    tail,
    wait_until,
    write_pid,
)
from services.runtime.errors import InfrastructureError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1234\n", 1234), ("  42  ", 42), ("", None), ("abc", None), ("-5", None), ("0", None)],
)
def test_parse_pid(text: str, expected: int | None) -> None:
    assert parse_pid(text) == expected


def test_pid_file_roundtrip(tmp_path: Path) -> None:
    pid_file = tmp_path / "sub" / "x.pid"
    assert read_pid(pid_file) is None
    write_pid(pid_file, 4321)
    assert read_pid(pid_file) == 4321
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_dead_and_foreign_processes_are_told_apart() -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    assert not is_alive(done.pid)
    assert is_alive(os.getpid())
    # Alive, but not started with our marker: a recycled pid is not our server.
    assert not runs_with(os.getpid(), "-Dciteplus.state=/nowhere")
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-Dmark=1"])
    try:
        deadline = time.monotonic() + 5  # until the child has exec'd (its cmdline changes)
        while not runs_with(marked.pid, "-Dmark=1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs_with(marked.pid, "-Dmark=1")
        assert not runs_with(marked.pid, "-Dmark=")  # whole arguments only, not prefixes
    finally:
        marked.kill()
        marked.wait()
    assert not runs_with(marked.pid, "-Dmark=1")


def test_unreaped_child_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_until(lambda: not is_alive(child.pid), timeout=10, interval=0.05)


def test_stop_process_escalates_to_sigkill() -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    started = time.monotonic()
    assert stop_process(stubborn.pid, grace=0.5) is False
    assert time.monotonic() - started < 10
    assert not is_alive(stubborn.pid)


def test_port_in_use_sees_listening_and_bound_sockets() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert port_in_use(listening.getsockname()[1])
    with socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))
        port = bound_only.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def test_wait_until_gives_up_early() -> None:
    started = time.monotonic()
    assert not wait_until(lambda: False, timeout=30, interval=0.01, give_up=lambda: True)
    assert time.monotonic() - started < 1


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert tail(log) == ""
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]


def test_versions_come_from_the_poms() -> None:
    assert kafka_broker.kafka_version() == pom_property(kafka_broker.POM, "kafka.version")
    assert kafka_broker.kafka_version().count(".") == 2
    assert registry_server.registry_version().startswith("3.")


def test_pom_property_missing(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project><properties><a>1</a></properties></project>")
    assert pom_property(pom, "a") == "1"
    with pytest.raises(InfrastructureError, match="<b>"):
        pom_property(pom, "b")


def test_server_properties_rendering() -> None:
    text = kafka_broker.render_server_properties(
        kafka_broker.TEMPLATE.read_text(), 19092, 19093, Path("/data/kafka")
    )
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == "/data/kafka"
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert "$" not in text


def test_render_rejects_unknown_placeholder() -> None:
    with pytest.raises(InfrastructureError, match="placeholder"):
        kafka_broker.render_server_properties("x=${nope}", 1, 2, Path("/d"))


def test_cluster_id_looks_like_kafkas() -> None:
    for _ in range(200):
        cid = kafka_broker.new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_ports_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITEPLUS_KAFKA_PORT", raising=False)
    monkeypatch.delenv("CITEPLUS_KAFKA_CONTROLLER_PORT", raising=False)
    monkeypatch.delenv("CITEPLUS_REGISTRY_PORT", raising=False)
    assert kafka_broker.resolve_ports() == (9092, 9093)
    assert kafka_broker.resolve_ports(19092) == (19092, 19093)
    monkeypatch.setenv("CITEPLUS_KAFKA_PORT", "29092")
    assert kafka_broker.resolve_ports() == (29092, 29093)
    monkeypatch.setenv("CITEPLUS_KAFKA_CONTROLLER_PORT", "30000")
    assert kafka_broker.resolve_ports() == (29092, 30000)
    monkeypatch.setenv("CITEPLUS_KAFKA_PORT", "nine")
    with pytest.raises(InfrastructureError, match="CITEPLUS_KAFKA_PORT"):
        kafka_broker.resolve_ports()
    assert registry_server.resolve_port() == 8081
    monkeypatch.setenv("CITEPLUS_REGISTRY_PORT", "18081")
    assert registry_server.resolve_port() == 18081


def test_state_and_cache_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CITEPLUS_STATE", raising=False)
    assert paths.state_dir() == paths.REPO_ROOT / "var"
    assert (paths.REPO_ROOT / "pyproject.toml").is_file()
    monkeypatch.setenv("CITEPLUS_STATE", str(tmp_path))
    monkeypatch.setenv("CITEPLUS_CACHE", str(tmp_path / "c"))
    assert kafka_broker.broker_dir() == tmp_path / "kafka"
    assert kafka_broker.libs_dir() == tmp_path / "c" / "kafka" / "libs"


def test_registry_properties() -> None:
    memory = registry_server.registry_properties("memory", 18081, None)
    assert memory["quarkus.http.port"] == "18081"
    assert memory["quarkus.http.host"] == "127.0.0.1"
    assert "apicurio.storage.kind" not in memory  # Apicurio's default: in-memory H2
    kafkasql = registry_server.registry_properties("kafkasql", 8081, "127.0.0.1:9092")
    assert kafkasql["apicurio.storage.kind"] == "kafkasql"
    assert kafkasql["apicurio.kafkasql.bootstrap.servers"] == "127.0.0.1:9092"
    with pytest.raises(InfrastructureError, match="bootstrap"):
        registry_server.registry_properties("kafkasql", 8081, None)
    with pytest.raises(InfrastructureError, match="memory, kafkasql"):
        registry_server.registry_properties("disk", 8081, None)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25.0.3" 2026-04-21 LTS', 25),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("garbage", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_class_file_java_major(tmp_path: Path) -> None:
    jar = tmp_path / "x.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr(
            "META-INF/versions/9/module-info.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x35"
        )
        archive.writestr("a/B.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x41")  # 65 -> Java 21
    assert class_file_java_major(jar) == 21


def test_cluster_ports_and_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.infra import kafka_cluster

    monkeypatch.delenv("CITEPLUS_KAFKA_PORT", raising=False)
    monkeypatch.delenv("CITEPLUS_KAFKA_CONTROLLER_PORT", raising=False)
    ports = kafka_cluster.cluster_ports()
    assert ports == [(9092, 9095), (9093, 9096), (9094, 9097)]
    assert kafka_cluster.bootstrap_of(ports) == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    voters = kafka_cluster.quorum_voters(ports)
    assert voters == "1@127.0.0.1:9095,2@127.0.0.1:9096,3@127.0.0.1:9097"
    text = kafka_broker.render_server_properties(
        kafka_broker.TEMPLATE.read_text(),
        9093,
        9096,
        Path("/d"),
        node_id=2,
        voters=voters,
        replication=3,
    )
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert props["node.id"] == "2" and props["controller.quorum.voters"] == voters
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9096"
    assert props["transaction.state.log.min.isr"] == props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    monkeypatch.setenv("CITEPLUS_KAFKA_CONTROLLER_PORT", "9093")
    with pytest.raises(InfrastructureError, match="overlap"):
        kafka_cluster.cluster_ports(9092)
    with pytest.raises(InfrastructureError, match="brokers 1 to 3"):
        kafka_cluster.member(4)


def test_kafka_health_lines() -> None:
    from services.node.kafka_health import KafkaHealth, render_kafka_health

    clean = KafkaHealth(live=[1, 2, 3], controller=2)
    assert clean.clean
    assert render_kafka_health(clean).splitlines() == [
        "kafka: brokers up 1, 2 (controller), 3",
        "kafka: every partition in sync",
    ]
    hurt = KafkaHealth(
        live=[1, 2], down=[3], controller=1, under_replicated={"raw.v1": [2, 0]}, offline={}
    )
    assert not hurt.clean
    assert render_kafka_health(hurt).splitlines() == [
        "kafka: brokers up 1 (controller), 2; DOWN 3",
        "kafka: 2 partitions under-replicated: raw.v1 0,2",
    ]
    assert render_kafka_health(KafkaHealth(error="no answer")) == "kafka: no answer"
