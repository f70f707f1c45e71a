"""The project's own Kafka broker and Apicurio registry, started for real.

Tests on the shared broker and registry (default state directory and ports)
only ever start them, never stop them: other tests use them, and start is
idempotent. Everything that stops, restarts or breaks a server does so on a
broker and registry of its own, in a temporary state directory on free ports.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.infra.kafka_broker import broker_answers, broker_status, start_broker, stop_broker
from services.infra.process import port_in_use, write_pid
from services.infra.registry_server import (
    registry_status,
    start_registry,
    stop_registry,
)
from services.runtime.errors import InfrastructureError
from testkit.ports import free_port

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "record",
    "name": "InfraProbe",
    "namespace": "org.citeplus.test",
    "fields": [{"name": "city", "type": "string"}, {"name": "value", "type": "double"}],
}
CCOMPAT_JSON = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def _register(url: str, subject: str) -> int:
    answer = httpx.post(
        f"{url}/subjects/{subject}/versions",
        json={"schema": json.dumps(SCHEMA)},
        headers=CCOMPAT_JSON,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


@pytest.fixture(scope="module")
def own_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """State directory and ports for a broker and registry that only these tests use."""
    port = free_port(pair=True)
    registry_port = free_port()
    while registry_port in (port, port + 1):
        registry_port = free_port()
    env = {
        "CITEPLUS_STATE": str(tmp_path_factory.mktemp("infra-state")),
        "CITEPLUS_KAFKA_PORT": str(port),
        "CITEPLUS_KAFKA_CONTROLLER_PORT": str(port + 1),
        "CITEPLUS_REGISTRY_PORT": str(registry_port),
    }
    yield env
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        stop_registry()
        stop_broker()


@pytest.fixture
def own(own_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in own_env.items():
        monkeypatch.setenv(key, value)
    return own_env


# --- the shared broker and registry: started, never stopped ------------------------------


def test_start_broker_twice_is_a_noop() -> None:
    first = start_broker()
    pid = broker_status()["pid"]
    second = start_broker()
    status = broker_status()
    assert second == first
    assert status["running"] and status["answering"]
    assert status["pid"] == pid
    assert broker_answers(first)


def test_registry_answers_and_serves_confluent_clients() -> None:
    storage = registry_status()["storage"] or "memory"  # leave a running one as it is
    url = start_registry(storage)
    assert url.endswith("/apis/ccompat/v7")
    assert start_registry(storage) == url
    subjects = httpx.get(f"{url}/subjects", timeout=10)
    assert subjects.status_code == 200 and isinstance(subjects.json(), list)

    subject = f"citeplus-infra-test-{uuid.uuid4().hex}-value"
    schema_id = _register(url, subject)
    try:
        client = SchemaRegistryClient({"url": url})
        fetched = client.get_schema(schema_id)
        assert fetched.schema_type == "AVRO"
        assert json.loads(fetched.schema_str) == SCHEMA
        # Confluent's stock serializer and deserializer against Apicurio's ccompat API.
        ctx = SerializationContext("citeplus-infra-test", MessageField.VALUE)
        serialize = AvroSerializer(
            client,
            json.dumps(SCHEMA),
            conf={"auto.register.schemas": False, "use.latest.version": True},
        )
        serialize_auto = AvroSerializer(client, json.dumps(SCHEMA))
        record = {"city": "Lyon", "value": 21.5}
        ctx_subject = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
        payload = serialize(record, ctx_subject)
        assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == schema_id
        assert serialize_auto(record, ctx)[1:5] == payload[1:5]  # same content, same id
        deserialize = AvroDeserializer(SchemaRegistryClient({"url": url}))
        assert deserialize(payload, ctx_subject) == record
    finally:
        for suffix in ("", "?permanent=true"):
            for name in (subject, "citeplus-infra-test-value"):
                httpx.delete(f"{url}/subjects/{name}{suffix}", timeout=10)


# --- a broker and registry of our own ------------------------------------------------------


def test_port_in_use_is_named(own: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        with pytest.raises(InfrastructureError, match=rf"port {busy}\b") as caught:
            start_broker(port=busy)
        assert "CITEPLUS_KAFKA_PORT" in str(caught.value)
        monkeypatch.setenv("CITEPLUS_KAFKA_PORT", str(busy))
        monkeypatch.delenv("CITEPLUS_KAFKA_CONTROLLER_PORT")
        with pytest.raises(InfrastructureError, match=rf"port {busy}\b"):
            start_broker()
        with pytest.raises(InfrastructureError, match=rf"port {busy}\b") as caught:
            start_registry(port=busy)
        assert "CITEPLUS_REGISTRY_PORT" in str(caught.value)
    assert not broker_status()["running"]
    assert not (Path(own["CITEPLUS_STATE"]) / "kafka" / "broker.pid").exists()


def test_stale_pid_files_are_replaced(own: dict[str, str]) -> None:
    state = Path(own["CITEPLUS_STATE"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    bystander = subprocess.Popen(["sleep", "120"])  # alive, but not our broker
    try:
        for stale in (dead.pid, bystander.pid):
            write_pid(state / "kafka" / "broker.pid", stale)
            status = broker_status()
            assert not status["running"] and status["stale_pid"] == stale

        bootstrap = start_broker()
        assert bystander.poll() is None, "a stale pid must never be signalled"
        status = broker_status()
        assert bootstrap == f"127.0.0.1:{own['CITEPLUS_KAFKA_PORT']}"
        assert status["running"] and status["pid"] not in (dead.pid, bystander.pid)
        assert start_broker() == bootstrap
        assert broker_status()["pid"] == status["pid"]

        write_pid(state / "registry" / "registry.pid", bystander.pid)
        assert registry_status()["stale_pid"] == bystander.pid
        stop_registry()
        assert bystander.poll() is None
        assert not (state / "registry" / "registry.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_kafkasql_registry_keeps_schemas_across_restarts(own: dict[str, str]) -> None:
    bootstrap = start_broker()
    url = start_registry("kafkasql")
    assert url == f"http://127.0.0.1:{own['CITEPLUS_REGISTRY_PORT']}/apis/ccompat/v7"
    assert registry_status()["storage"] == "kafkasql"
    schema_id = _register(url, "kept-value")
    with pytest.raises(InfrastructureError, match="kafkasql storage"):
        start_registry("memory")

    stop_registry()
    assert not registry_status()["running"]
    assert start_registry("kafkasql", bootstrap=bootstrap) == url
    fetched = SchemaRegistryClient({"url": url}).get_schema(schema_id)
    assert json.loads(fetched.schema_str) == SCHEMA

    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert len(topics["kafkasql-journal"].partitions) == 1


def test_stop_is_clean_and_idempotent(own: dict[str, str]) -> None:
    state = Path(own["CITEPLUS_STATE"])
    start_broker()
    stop_registry()
    stop_broker()
    assert not broker_status()["running"] and not registry_status()["running"]
    assert not (state / "kafka" / "broker.pid").exists()
    assert not port_in_use(int(own["CITEPLUS_KAFKA_PORT"]))
    stop_broker()  # nothing to stop: still fine
