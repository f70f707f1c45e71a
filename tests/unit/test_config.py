"""Node configuration: every bad value stops with the file or variable and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.config import load_local_infra, load_node_config
from services.runtime.errors import ConfigError, InfrastructureError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_node_file_loads() -> None:
    config = load_node_config(env={})
    assert config.kafka.bootstrap == "127.0.0.1:9092"
    assert config.processing.batch_size == 500
    assert config.metrics_port("anonymise") == config.metrics.base_port + 2


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap: a:1\n")
    config = load_node_config(path, env={"CITEPLUS_KAFKA_BOOTSTRAP": "b:2"})
    assert config.kafka.bootstrap == "b:2"


def test_bad_type_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "processing:\n  batch_size: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_node_config(path, env={})
    assert str(path) in str(caught.value)
    assert "processing.batch_size" in str(caught.value)
    assert "expected int" in str(caught.value)


def test_bad_environment_value_names_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "{}\n")
    with pytest.raises(ConfigError, match="CITEPLUS_PROCESSING_BATCH_TIMEOUT_S: expected float"):
        load_node_config(path, env={"CITEPLUS_PROCESSING_BATCH_TIMEOUT_S": "soon"})


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap: a:1\n  bootstrapp: b:2\n")
    with pytest.raises(ConfigError, match=r"kafka: unknown keys \['bootstrapp'\]"):
        load_node_config(path, env={})


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "kafak: {}\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_node_config(path, env={})


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node file not found"):
        load_node_config(tmp_path / "absent.yaml", env={})


def test_invalid_values_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "registry:\n  url: localhost:8081\n")
    with pytest.raises(ConfigError, match=r"registry\.url"):
        load_node_config(path, env={})
    path = write(tmp_path, "processing:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"processing\.batch_size: must be at least 1"):
        load_node_config(path, env={})


def test_commit_cycle_knobs_load_and_are_checked(tmp_path: Path) -> None:
    config = load_node_config(env={})
    assert (config.processing.linger_ms, config.publish.flush_ms) == (20, 200)
    path = write(tmp_path, "processing:\n  linger_ms: 5\npublish:\n  flush_rows: 10\n")
    loaded = load_node_config(path, env={"CITEPLUS_PUBLISH_FLUSH_MS": "1000"})
    assert (loaded.processing.linger_ms, loaded.publish.flush_rows) == (5, 10)
    assert loaded.publish.flush_ms == 1000
    for text, key in (
        ("processing:\n  linger_ms: -1\n", r"processing\.linger_ms: must be between 0 and"),
        ("publish:\n  flush_ms: 600000\n", r"publish\.flush_ms: must be between 0 and"),
        ("publish:\n  flush_rows: 0\n", r"publish\.flush_rows: must be at least 1"),
        (
            "publish:\n  busy_flush_ms: -5\n",
            r"publish\.busy_flush_ms: .*spacing of inserts while busy",
        ),
        ("publish:\n  busy_rows_per_s: 0\n", r"publish\.busy_rows_per_s: must be at least 1"),
        ("processing:\n  linger_ms: soon\n", r"processing\.linger_ms: expected int"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_node_config(write(tmp_path, text), env={})


def test_local_infrastructure_variables_place_the_node(tmp_path: Path) -> None:
    path = write(tmp_path, "{}\n")
    env = {
        "CITEPLUS_KAFKA_PORT": "19092",
        "CITEPLUS_REGISTRY_PORT": "18081",
        "CITEPLUS_STATE": "/x",
    }
    config = load_node_config(path, env=env)
    assert config.kafka.bootstrap == "127.0.0.1:19092"
    assert config.registry.url == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert config.state_dir == Path("/x")
    explicit = load_node_config(path, env={**env, "CITEPLUS_KAFKA_BOOTSTRAP": "k:1"})
    assert explicit.kafka.bootstrap == "k:1"


def test_ingest_bounds_are_read_and_checked(tmp_path: Path) -> None:
    from services.ingest.limits import HttpLimits

    path = write(tmp_path, "ingest:\n  header_timeout_s: 2.5\n  body_memory_mb: 8\n")
    bounds = HttpLimits.of(load_node_config(path, env={}).ingest, max_body=1024)
    assert (bounds.header_timeout_s, bounds.body_memory, bounds.max_body) == (2.5, 8 << 20, 1024)
    assert bounds.public_catalogue is False  # the catalogue needs a token unless said
    for text, key in (
        ("body_window_s: 0", "ingest.body_window_s"),
        ("max_connections: 0", "ingest.max_connections"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_node_config(write(tmp_path, f"ingest:\n  {text}\n"), env={})
    # A body above the memory bound of all bodies could never be held: said at start.
    with pytest.raises(ConfigError, match=r"ingest\.body_memory_mb"):
        HttpLimits(max_body=200 << 20)


def test_the_warehouse_server_is_a_setting_of_the_typed_config(tmp_path: Path) -> None:
    """CLICKHOUSE_URL (the name deployments use) is read once, by the config, and its
    password never shows in the configuration's repr (which logs may print)."""
    from services.warehouse.port import warehouse_url

    path = write(tmp_path, "{}\n")
    url = "http://citeplus:s3cret-writer@clickhouse:8123/default"
    config = load_node_config(path, env={"CLICKHOUSE_URL": url})
    assert config.warehouse.url == url and warehouse_url(config) == url
    assert "s3cret-writer" not in repr(config)
    assert warehouse_url(load_node_config(path, env={})) is None
    own = load_node_config(path, env={"CLICKHOUSE_URL": url, "CITEPLUS_WAREHOUSE_URL": "http://x"})
    assert own.warehouse.url == "http://x"


def test_a_bad_local_port_is_refused_once_with_its_variable(tmp_path: Path) -> None:
    """The node and `citeplus infra` read the local port variables in one place: a
    value that is not a port stops both with the variable's name (the node used to
    build the address 127.0.0.1:nine and fail later, in a Kafka callback)."""
    from services.runtime.config import load_local_infra
    from services.runtime.errors import InfrastructureError

    path = write(tmp_path, "{}\n")
    for variable in ("CITEPLUS_KAFKA_PORT", "CITEPLUS_REGISTRY_PORT"):
        with pytest.raises(InfrastructureError, match=f"{variable}='nine' is not a TCP port"):
            load_node_config(path, env={variable: "nine"})
    local = load_local_infra({"CITEPLUS_KAFKA_PORT": "19092", "CITEPLUS_REGISTRY_PORT": "18081"})
    config = load_node_config(
        path, env={"CITEPLUS_KAFKA_PORT": "19092", "CITEPLUS_REGISTRY_PORT": "18081"}
    )
    assert (config.kafka.bootstrap, config.registry.url) == (
        local.kafka_bootstrap,
        local.registry_url,
    )


def test_the_api_section_defaults_overrides_and_mistakes(tmp_path: Path) -> None:
    config = load_node_config(env={})
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8010)
    assert config.metrics_port("api") == config.metrics.base_port + 6
    path = write(tmp_path, "api:\n  port: 8011\n  key_rate: 5\n")
    config = load_node_config(path, env={"CITEPLUS_API_ANONYMOUS_RATE": "0.5"})
    assert (config.api.port, config.api.key_rate, config.api.anonymous_rate) == (8011, 5.0, 0.5)
    for text, key in (
        ("api:\n  anonymous_rate: 0\n", "api.anonymous_rate"),
        ("api:\n  key_burst: 0\n", "api.key_burst"),
        ("api:\n  port: 70000\n", "api.port"),
        ("api:\n  max_url_bytes: 10\n", "api"),
    ):
        with pytest.raises(ConfigError) as error:
            load_node_config(write(tmp_path, text), env={})
        assert error.value.key == key, text


def test_one_node_file_drives_one_broker_or_three(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap: 127.0.0.1:9092\n")
    one = load_node_config(path, env={})
    assert (one.kafka.bootstrap, one.kafka.replicas, one.kafka.min_insync) == (
        "127.0.0.1:9092",
        1,
        1,
    )
    three = load_node_config(path, env={"CITEPLUS_KAFKA_BROKERS": "3"})
    assert three.kafka.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert (three.kafka.replicas, three.kafka.min_insync) == (3, 2)
    placed = load_node_config(
        path, env={"CITEPLUS_KAFKA_BROKERS": "3", "CITEPLUS_KAFKA_PORT": "19092"}
    )
    assert placed.kafka.bootstrap.split(",")[2] == "127.0.0.1:19094"
    # A list, or brokers on other machines, is kept as written.
    remote = write(tmp_path, "kafka:\n  bootstrap: k1:9092,k2:9092\n  brokers: 3\n")
    assert load_node_config(remote, env={}).kafka.bootstrap == "k1:9092,k2:9092"
    pinned = write(tmp_path, "kafka:\n  brokers: 3\n  replication_factor: 2\n")
    assert load_node_config(pinned, env={}).kafka.replicas == 2


def test_bad_broker_counts_say_what_is_possible(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  brokers: 0\n")
    with pytest.raises(ConfigError, match=r"kafka\.brokers"):
        load_node_config(path, env={})
    negative = write(tmp_path, "kafka:\n  replication_factor: -1\n")
    with pytest.raises(ConfigError, match="as many as brokers"):
        load_node_config(negative, env={})
    # `citeplus infra` runs one broker or three on this machine, nothing else.
    with pytest.raises(InfrastructureError, match="1 broker or a cluster of 3"):
        assert load_local_infra({"CITEPLUS_KAFKA_BROKERS": "2"}).kafka_brokers
