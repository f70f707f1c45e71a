"""docker-compose.yml, the Dockerfile and the monitoring files, checked without Docker.

There is no Docker engine on these machines, so what can be checked by reading is
checked here: every container runs a command the package has, waits for what it
needs and says when it is healthy; images are pinned; no secret is written in
any file; ports, topics, replication and versions agree with deploy/; Prometheus
scrapes every service; the dashboard's queries run on the warehouse's DDL (chDB)
and name metrics the services export.
"""

from __future__ import annotations

import base64
import json
import math
import re
import stat
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import SERVICE_MODULES, build_parser
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.metrics import ServiceMetrics
from services.runtime.paths import CITIES_DIR, DEPLOY_DIR, REPO_ROOT
from services.runtime.topics import load_topics
from services.warehouse.chdb_embedded import ChdbWarehouse
from services.warehouse.migrations import migrate

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_DIR = DEPLOY_DIR / "compose"
PROMETHEUS_FILE = COMPOSE_DIR / "prometheus" / "prometheus.yml"
DATASOURCES_FILE = COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "citeplus.yaml"
DASHBOARDS_DIR = COMPOSE_DIR / "grafana" / "dashboards"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"

STAGES = ("ingest", "anonymise", "normalise", "energy-analytics", "publish", "api")
# The package that registers `citeplus service <name>` (services/cli.py SERVICE_MODULES).
STAGE_MODULES = {
    "ingest": "services.ingest.main",
    "anonymise": "services.anonymise.main",
    "normalise": "services.normalise.main",
    "energy-analytics": "services.energy.main",
    "publish": "services.node.publish_process",
    "api": "services.api.main",
}
PINNED_TAG = re.compile(r"^[\w.\-/]+:v?\d+(\.\d+){1,3}(-[\w.\-]+)?(@sha256:[0-9a-f]{64})?$")
SUBSTITUTION = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|CLICKHOUSE_URL", re.I)


# -- reading the files --------------------------------------------------------------


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == "-":
            return arg
        if op == "?":
            return f"<{name}>"
        return ""

    return SUBSTITUTION.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and document.get("services")
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def is_citeplus(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("citeplus:")


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "")) == "no"


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def stage_containers(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Container name -> the stage it runs (`citeplus service <stage> ...`)."""
    return {
        name: service["command"][1]
        for name, service in services.items()
        if is_citeplus(service) and service["command"][0] == "service"
    }


def node_config_of(service: dict[str, Any]) -> NodeConfig:
    """The node configuration a container gets: the image's node.yaml + its environment."""
    return load_node_config(env=environment(service))


def metrics_port(service: dict[str, Any], stage: str) -> int:
    node = node_config_of(service)
    return node.ingest.port if stage == "ingest" else node.metrics_port(stage)


def healthcheck_test(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    if not test or test == ["NONE"]:
        return ""
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerfile_lines() -> list[str]:
    """Instructions of the Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            joined.append(" ".join(current.split()))
            current = ""
    return joined


def pom_property(path: Path, name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", path.read_text())
    assert match, f"{path}: no <{name}>"
    return match.group(1)


# -- commands and start-up order ---------------------------------------------------------


def test_every_stage_is_deployed_under_its_fixed_command(services: dict) -> None:
    deployed = set(stage_containers(services).values())
    assert deployed == set(STAGES)


@pytest.mark.parametrize(
    "name", [n for n, s in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items()]
)
def test_every_citeplus_command_exists_in_the_package(services: dict, name: str) -> None:
    service = services[name]
    if not is_citeplus(service):
        return
    command = [str(part) for part in service["command"]]
    parser = build_parser()
    try:
        args = parser.parse_args(command)
    except SystemExit:
        stage = command[1] if command[0] == "service" else None
        module = STAGE_MODULES.get(stage or "")
        if module and _missing(module):
            pytest.skip(f"{module} is not in this build yet (another issue writes it)")
        raise AssertionError(
            f"{name}: `citeplus {' '.join(command)}` is not a valid command"
        ) from None
    assert callable(getattr(args, "handler", None) or getattr(args, "func", None))


def _missing(module: str) -> bool:
    import importlib.util

    assert module in SERVICE_MODULES, f"{module} is not listed in services/cli.py"
    return importlib.util.find_spec(module) is None


def test_replicas_of_a_stage_have_distinct_instance_ids(services: dict) -> None:
    by_stage: dict[str, list[str]] = {}
    for name, stage in stage_containers(services).items():
        command = [str(p) for p in services[name]["command"]]
        instance = command[command.index("--instance") + 1] if "--instance" in command else "0"
        by_stage.setdefault(stage, []).append(instance)
        if "--instance" in command:
            assert name == f"{stage}-{instance}", "name a replica <stage>-<instance>"
    for stage, instances in by_stage.items():
        assert len(set(instances)) == len(instances), f"{stage}: transactional ids collide"
    # Every consuming stage runs more than one process; ingest waits for --instance.
    for stage in ("anonymise", "normalise", "energy-analytics", "publish"):
        assert len(by_stage[stage]) >= 2, stage


def test_every_container_has_a_health_check_or_is_a_one_shot_job(services: dict) -> None:
    awaited = {
        target
        for service in services.values()
        for target, rule in (service.get("depends_on") or {}).items()
        if rule.get("condition") == "service_completed_successfully"
    }
    for name, service in services.items():
        if is_one_shot(service):
            assert name in awaited, f"{name}: a one-shot job nobody waits for"
            assert not healthcheck_test(service), f"{name}: a job that exits has no health"
        else:
            assert healthcheck_test(service), f"{name}: no health check"
            health = service["healthcheck"]
            for key in ("interval", "timeout", "retries", "start_period"):
                assert key in health, f"{name}: healthcheck.{key}"


def test_start_up_order_uses_conditions_and_has_no_cycle(services: dict) -> None:
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must name its conditions"
        graph[name] = set(depends)
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule.get("condition")
            if condition == "service_healthy":
                assert healthcheck_test(services[target]), f"{target} has no health check"
            elif condition == "service_completed_successfully":
                assert is_one_shot(services[target]), f"{target} is not a one-shot job"
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"

    def upstream(name: str, seen: tuple[str, ...] = ()) -> set[str]:
        assert name not in seen, f"dependency cycle: {' -> '.join((*seen, name))}"
        out: set[str] = set()
        for target in graph[name]:
            out |= {target} | upstream(target, (*seen, name))
        return out

    brokers = {n for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")}
    for name, service in services.items():
        before = upstream(name)
        if is_citeplus(service) and service["command"][0] == "service":
            assert {"topics-init", "schemas-init"} <= before, name
            assert brokers <= before and "registry" in before, name
        if name.startswith("publish") or name == "grafana":
            assert {"warehouse-migrate", "clickhouse"} <= before, name
        if name == "api":  # it reads through publish's federation API
            assert services[name]["depends_on"]["publish-1"]["condition"] == "service_healthy"
    assert brokers <= upstream("topics-init")
    assert "topics-init" in upstream("registry")  # the registry's journal needs the brokers


def test_warehouse_ddl_is_applied_by_a_job_before_publish(services: dict) -> None:
    job = services["warehouse-migrate"]
    assert [str(p) for p in job["command"][:2]] == ["warehouse", "migrate"]
    assert job["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    targets = {s["target"] for s in job["secrets"]}
    assert "/var/lib/citeplus/secrets/dev.env" in targets  # CLICKHOUSE_URL, never in the file


# -- images --------------------------------------------------------------------------


def test_images_are_pinned(services: dict) -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in services.items():
        image = interpolate(str(service.get("image", "")))
        assert image, f"{name}: no image"
        assert not image.endswith(":latest") and ":" in image, f"{name}: {image} is not pinned"
        if is_citeplus(service):
            assert image == f"citeplus:{version}", f"{name}: tag the project image {version}"
        else:
            assert PINNED_TAG.match(image), f"{name}: {image} is not an exact version"


def test_engine_versions_agree_with_deploy(services: dict) -> None:
    kafka_version = pom_property(DEPLOY_DIR / "kafka" / "pom.xml", "kafka.version")
    registry_version = pom_property(DEPLOY_DIR / "registry" / "pom.xml", "apicurio.version")
    assert kafka_version.startswith("4.1.")
    brokers = [s for s in services.values() if str(s.get("image", "")).startswith("apache/kafka:")]
    assert {s["image"] for s in brokers} == {f"apache/kafka:{kafka_version}"}
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{registry_version}"
    assert registry_version.startswith("3.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


# -- Kafka cluster, replication, ports --------------------------------------------------


def test_three_kraft_brokers_with_replication_three(services: dict) -> None:
    brokers = {n: s for n, s in services.items() if str(s["image"]).startswith("apache/kafka:")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    ids, cluster_ids = set(), set()
    for name, service in brokers.items():
        env = environment(service)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {"1": "kafka-1:9093", "2": "kafka-2:9093", "3": "kafka-3:9093"}
        ids.add(env["KAFKA_NODE_ID"])
        assert voters[env["KAFKA_NODE_ID"]].split(":")[0] == name
        assert f"INTERNAL://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        ):
            assert env[key] == "3", key
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        cluster_ids.add(env["CLUSTER_ID"])
        assert any("kafka" in str(v) for v in service["volumes"]), f"{name}: no data volume"
    assert ids == {"1", "2", "3"}
    [cluster_id] = cluster_ids  # one cluster
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


# What the local 3-broker cluster (services/infra/kafka_cluster.py, the one the
# cluster tests kill brokers of) and the compose brokers must agree on.
CLUSTER_KEYS = (
    "process.roles",
    "default.replication.factor",
    "min.insync.replicas",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "unclean.leader.election.enable",
    "auto.create.topics.enable",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
)


def test_compose_brokers_run_the_settings_of_the_tested_local_cluster(services: dict) -> None:
    from services.infra import kafka_broker, kafka_cluster

    ports = kafka_cluster.cluster_ports(9092)
    rendered = kafka_broker.render_server_properties(
        kafka_broker.TEMPLATE.read_text(),
        *ports[0],
        Path("/data"),
        node_id=1,
        voters=kafka_cluster.quorum_voters(ports),
        replication=kafka_cluster.SIZE,
    )
    local = dict(
        line.split("=", 1) for line in rendered.splitlines() if line and not line.startswith("#")
    )
    assert local["min.insync.replicas"] == "2" and local["default.replication.factor"] == "3"
    assert local["controller.quorum.voters"].count("@") == 3
    brokers = [s for s in services.values() if str(s["image"]).startswith("apache/kafka:")]
    assert len(brokers) == kafka_cluster.SIZE
    for service in brokers:
        env = environment(service)
        for key in CLUSTER_KEYS:
            variable = "KAFKA_" + key.upper().replace(".", "_")
            assert env.get(variable) == local[key], f"{variable}: compose vs local cluster"


def test_services_reach_the_cluster_with_replication_three(services: dict) -> None:
    brokers = {n for n, s in services.items() if str(s["image"]).startswith("apache/kafka:")}
    registry_port = environment(services["registry"])["QUARKUS_HTTP_PORT"]
    for name, service in services.items():
        if not is_citeplus(service):
            continue
        node = node_config_of(service)
        assert node.kafka.replication_factor == 3, name
        hosts = {h.split(":")[0]: h.split(":")[1] for h in node.kafka.bootstrap.split(",")}
        assert set(hosts) == brokers and set(hosts.values()) == {"9092"}, name
        assert node.registry.url == f"http://registry:{registry_port}/apis/ccompat/v7", name
    assert [str(p) for p in services["topics-init"]["command"]] == ["topics", "apply"]
    assert [str(p) for p in services["schemas-init"]["command"]] == ["schemas", "register"]
    registry_env = environment(services["registry"])
    assert registry_env["APICURIO_STORAGE_KIND"] == "kafkasql"
    assert set(registry_env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"].split(",")) == {
        f"{b}:9092" for b in brokers
    }
    assert "-Dapicurio.kafkasql.topic.replication.factor=3" in registry_env["JAVA_OPTS_APPEND"]


def test_node_settings_in_the_environment_are_real_keys(services: dict) -> None:
    known = {
        f"CITEPLUS_{section.name}_{key.name}".upper()
        for section in fields(NodeConfig)
        if section.name != "source"
        for key in fields(section.default)  # type: ignore[arg-type]
    }
    for name, service in services.items():
        for variable in environment(service):
            if variable.startswith("CITEPLUS_"):
                assert variable in known, f"{name}: {variable} is not a node setting"
        if is_citeplus(service):
            node_config_of(service)  # every value has the right type


def test_ports_agree_with_the_node_configuration(services: dict) -> None:
    for name, stage in stage_containers(services).items():
        service = services[name]
        port = metrics_port(service, stage)
        assert f"http://127.0.0.1:{port}/healthz" in healthcheck_test(service), name
        node = node_config_of(service)
        if stage == "ingest":
            assert node.ingest.host == "0.0.0.0"
            assert any(str(p).endswith(f":{port}") for p in service["ports"]), name
        elif stage == "api":
            assert node.api.host == "0.0.0.0", "the api unreachable from outside its container"
            assert f"{node.api.port}:{node.api.port}" in [str(p) for p in service["ports"]]
            assert node.metrics.host == "0.0.0.0", f"{name}: /metrics unreachable from Prometheus"
        else:
            assert node.metrics.host == "0.0.0.0", f"{name}: /metrics unreachable from Prometheus"
    publish = services["publish-1"]
    listen = node_config_of(publish).federation.listen
    assert listen.startswith("0.0.0.0:")
    assert f"{listen.split(':')[1]}:{listen.split(':')[1]}" in [str(p) for p in publish["ports"]]


def test_prometheus_scrapes_every_service_on_its_port(services: dict) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for sc in jobs["citeplus"]["static_configs"] for t in sc["targets"]}
    wanted = {
        f"{name}:{metrics_port(services[name], stage)}"
        for name, stage in stage_containers(services).items()
    }
    assert targets == wanted
    assert jobs["citeplus"].get("metrics_path", "/metrics") == "/metrics"
    mounted = [str(v) for v in services["prometheus"]["volumes"]]
    assert any(v.startswith("./deploy/compose/prometheus/prometheus.yml:") for v in mounted)


# -- topics ----------------------------------------------------------------------------


def declared_topic_names() -> list[str]:
    """Names in deploy/topics.yaml, templates (`{partner}`) included."""
    document = yaml.safe_load((DEPLOY_DIR / "topics.yaml").read_text(encoding="utf-8"))
    names = [str(topic["name"]) for topic in document["topics"]]
    assert set(load_topics()) <= set(names)
    return names


def _topic_pattern() -> re.Pattern[str]:
    names = [
        re.escape(name).replace(r"\{partner\}", r"([a-z0-9-]+|\{partner\})")
        for name in declared_topic_names()
    ]
    return re.compile("^(" + "|".join(names) + ")$")


def test_topic_names_in_the_deployment_files_are_declared() -> None:
    declared = _topic_pattern()
    texts = [COMPOSE_FILE, PROMETHEUS_FILE, *DASHBOARDS_DIR.glob("*.json")]
    for path in texts:
        for name in re.findall(r"\b[a-z][a-z0-9_-]*(?:\.[a-z0-9_{}-]+)*\.v\d+\b", path.read_text()):
            assert declared.match(name), f"{path.name}: {name} is not in deploy/topics.yaml"
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for name in re.findall(r"`([a-z0-9_.{}-]+\.v\d+)`", runbook):
        if not name.startswith("citeplus."):  # proto packages (citeplus.federation.v1)
            assert declared.match(name), f"runbook: {name} is not in deploy/topics.yaml"


def test_runbook_sizes_every_declared_topic() -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z0-9_.{}-]+\.v\d+)` \|", runbook, re.M))
    assert rows == set(declared_topic_names())


# -- secrets ---------------------------------------------------------------------------


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def deployment_texts() -> list[Path]:
    files = [COMPOSE_FILE, DOCKERFILE, DOCKERIGNORE, RUNBOOK]
    files += [p for p in COMPOSE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def secret_findings(text: str, *, settings: bool = True) -> list[str]:
    """What in ``text`` looks like a secret: PEM blocks, credentials in URLs, random-looking
    strings, and (in configuration files, ``settings``) literal values of secret-named keys."""
    found = []
    if "-----BEGIN" in text:
        found.append("a PEM block")
    for user, password in re.findall(r"\w+://([^/\s:@]+):([^@\s/]+)@", text):
        if not password.startswith(("<", "$", "{")):
            found.append(f"credentials in a URL (user {user})")
    for word in re.findall(r"[A-Za-z0-9+_\-]{24,}", text):
        mixed = all(re.search(kind, word) for kind in (r"\d", "[A-Z]", "[a-z]"))
        if mixed and _entropy(word) > 4.0:
            found.append(f"a random-looking string {word[:4]}…")
    if settings:
        for key, value in re.findall(
            r"(?im)^[ \t]*-?[ \t]*([\w.]*(?:password|secret|token|api_?key)[\w.]*)[ \t]*[:=]"
            r"[ \t]*(\S+)",
            text,
        ):
            if key == "secrets" or value.startswith(("*", "&")):
                continue  # compose's secrets section, YAML aliases
            if not value.startswith(("${", "$__file{", "/run/secrets/", "file:", "env:")):
                found.append(f"{key} given a literal value")
    return found


def test_secret_scanner_finds_what_it_should() -> None:
    import secrets

    assert secret_findings(f"TOKEN={secrets.token_urlsafe(32)}\n", settings=False)
    assert secret_findings("-----BEGIN PRIVATE KEY-----\n")
    assert secret_findings("url: http://citeplus:hunter2@clickhouse:8123/\n")
    assert secret_findings("    GF_SECURITY_ADMIN_PASSWORD: hunter2\n")
    assert not secret_findings("    GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/admin\n")
    assert not secret_findings("url: http://citeplus:<password>@clickhouse:8123/\n")


def test_no_secret_is_written_in_the_deployment_files() -> None:
    for path in deployment_texts():
        findings = secret_findings(
            path.read_text(encoding="utf-8"), settings=path.suffix not in (".py", ".md")
        )
        assert not findings, f"{path}: {findings}"


def test_secrets_are_mounted_files_outside_the_repository(compose: dict, services: dict) -> None:
    declared = compose["secrets"]
    for name, spec in declared.items():
        assert spec["file"].startswith("${CITEPLUS_SECRETS_DIR:?"), (
            f"{name}: outside the secrets dir"
        )
    used = set()
    for name, service in services.items():
        for variable in environment(service):
            if SECRET_NAMES.search(variable):
                assert variable.endswith("__FILE"), f"{name}: {variable} in the environment"
        for entry in service.get("secrets") or []:
            assert isinstance(entry, dict) and entry["source"] in declared, name
            used.add(entry["source"])
    assert used == set(declared)


def test_secrets_match_what_the_services_read(services: dict) -> None:
    from services.runtime.cities import load_cities

    cities = load_cities(CITIES_DIR)
    ingest = {s["target"] for s in services["ingest"]["secrets"]}
    for city in cities.values():
        for source in city.sources:
            if source.token.startswith("file:"):
                assert source.token[len("file:") :] in ingest, f"{city.code}/{source.id}"
    assert "/var/lib/citeplus/secrets/dev.env" in ingest  # the env: tokens
    for name, stage in stage_containers(services).items():
        if stage != "anonymise":
            continue
        command = [str(p) for p in services[name]["command"]]
        keys_dir = command[command.index("--keys-dir") + 1]
        targets = {s["target"] for s in services[name]["secrets"]}
        assert targets == {f"{keys_dir}/{code}.json" for code in cities}, name
    for name, stage in stage_containers(services).items():
        if stage in ("publish", "api"):  # the api dials with the node's certificate
            env = environment(services[name])
            node_id = env["CITEPLUS_NODE_ID"]
            certs = env["CITEPLUS_FEDERATION_CERTS_DIR"]
            targets = {interpolate(s["target"]) for s in services[name]["secrets"]}
            for file in ("ca.pem", f"{node_id}.pem", f"{node_id}.key"):
                assert f"{certs}/{file}" in targets, name
    grafana = environment(services["grafana"])
    grafana_targets = {s["target"] for s in services["grafana"]["secrets"]}
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] in grafana_targets
    datasources = DATASOURCES_FILE.read_text(encoding="utf-8")
    for path in re.findall(r"\$__file\{([^}]+)\}", datasources):
        assert path in grafana_targets


def _make_secrets_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_secrets", COMPOSE_DIR / "make_secrets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_make_secrets_writes_every_file_compose_mounts(compose: dict, tmp_path: Path) -> None:
    make_secrets = _make_secrets_module()
    node_id = "metropole"
    expected = {f.secret: f.path for f in make_secrets.expected_files(node_id)}
    declared = {
        name: interpolate(spec["file"], {"CITEPLUS_NODE_ID": node_id}).split("/", 1)[1]
        for name, spec in compose["secrets"].items()
    }
    assert declared == expected
    if importlib_missing("services.federation.certs"):
        pytest.skip("no federation package in this build: certificates cannot be generated")
    directory = tmp_path / "secrets"
    make_secrets.make_secrets(directory, node_id)
    for relative in expected.values():
        path = directory / relative
        assert path.is_file(), relative
        if not relative.endswith(".pem"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, relative
    assert make_secrets.make_secrets(directory, node_id) == []  # idempotent
    from services.privacy.keys import KeyStore  # its keyrings pass the entropy guard

    cities = sorted(p.stem for p in (directory / "keys").glob("*.json"))
    assert cities and KeyStore(directory / "keys", environ={}).check(cities)
    env = (directory / "warehouse.env").read_text()
    assert re.fullmatch(r"CLICKHOUSE_URL=http://citeplus:[\w-]+@clickhouse:8123/default\n", env)
    users = (directory / "clickhouse-users.xml").read_text()
    assert "<grafana>" in users and "<readonly>2</readonly>" in users
    with pytest.raises(SystemExit, match="inside the repository"):
        make_secrets.make_secrets(REPO_ROOT / "var" / "secrets-test", node_id)


def importlib_missing(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


# -- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_non_root_and_frozen() -> None:
    lines = dockerfile_lines()
    args = dict(
        re.match(r"ARG (\w+)=(\S+)", line).groups() for line in lines if re.match(r"ARG \w+=", line)
    )
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 3, "uv, build and runtime stages"
    for line in stages:
        image = line.split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert PINNED_TAG.match(image), f"base image {image} is not an exact version"
    python = args["PYTHON_IMAGE"]
    assert python.startswith("python:3.11.") and "slim" in python
    makefile = (REPO_ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)", makefile, re.M).group(1)
    assert args["UV_IMAGE"] == f"ghcr.io/astral-sh/uv:{uv_version}"
    syncs = [line for line in lines if "uv sync" in line]
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    runtime_start = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    runtime = lines[runtime_start:]
    assert runtime[0].endswith(" AS runtime")
    assert not any("uv " in line or "pip install" in line for line in runtime)
    copies = [line for line in runtime if line.startswith("COPY")]
    assert copies and all(line.startswith("COPY --from=build ") for line in copies)
    users = [line for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    assert runtime[-2:] == ['ENTRYPOINT ["citeplus"]', 'CMD ["--help"]'] or (
        'ENTRYPOINT ["citeplus"]' in runtime
    )
    for line in lines:
        if line.startswith(("COPY ", "ADD ")) and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
                assert "secret" not in source and not source.startswith(".")
        if line.startswith(("ENV ", "ARG ")):
            assert not SECRET_NAMES.search(line), f"secret-like setting in the image: {line}"


def test_dockerfile_exposes_the_http_ports_of_the_node(services: dict) -> None:
    exposed = {
        int(port.split("/")[0])
        for line in dockerfile_lines()
        if line.startswith("EXPOSE ")
        for port in line.split()[1:]
    }
    node = load_node_config(env={})
    assert {node.ingest.port, node.api.port} <= exposed
    assert int(node.federation.listen.rpartition(":")[2]) in exposed


def test_api_keys_outlive_the_container(services: dict) -> None:
    """The keys file is in the api's state directory: a volume there, not the tmpfs."""
    api = services["api"]
    state = environment(api)["CITEPLUS_NODE_STATE_DIR"]
    assert any(str(v).split(":")[1] == state for v in api["volumes"] if ":" in str(v))
    assert not any(str(t).split(":")[0] == state for t in api.get("tmpfs") or [])


def test_dockerignore_keeps_state_and_secrets_out_of_the_build_context() -> None:
    entries = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", "var", "**/secrets", "**/*.key", "**/*.pem", "**/*.env"):
        assert required in entries, required


# -- Grafana -----------------------------------------------------------------------------


def dashboards() -> list[dict[str, Any]]:
    found = [json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS_DIR.glob("*.json")]
    assert found
    return found


def panel_targets(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == kind:
                    yield panel["title"], target


def test_dashboard_uses_the_provisioned_data_sources() -> None:
    provisioned = yaml.safe_load(DATASOURCES_FILE.read_text(encoding="utf-8"))["datasources"]
    uids = {(d["type"], d["uid"]) for d in provisioned}
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            source = panel["datasource"]
            assert (source["type"], source["uid"]) in uids, panel["title"]
    clickhouse = next(d for d in provisioned if d["type"] == "grafana-clickhouse-datasource")
    assert clickhouse["jsonData"]["host"] == "clickhouse"
    assert clickhouse["jsonData"]["username"] == "grafana"
    prometheus = next(d for d in provisioned if d["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"


def test_dashboard_covers_what_operators_watch() -> None:
    titles = " ".join(p["title"].lower() for d in dashboards() for p in d["panels"])
    for topic in ("per second", "lag", "dead letters", "suppressed", "kwh"):
        assert topic in titles, topic


def test_dashboard_metrics_are_exported_by_the_services() -> None:
    from prometheus_client import CollectorRegistry

    from services.api.usage import Usage

    exported: set[str] = set()
    families = [*ServiceMetrics("probe").registry.collect()]
    families += [*Usage(CollectorRegistry()).registry.collect()]  # the common API's usage
    for family in families:
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    used = set()
    for title, target in panel_targets("prometheus"):
        for metric in re.findall(r"\bciteplus_\w+", target["expr"]):
            assert metric in exported, f"{title}: {metric} is not exported"
            used.add(metric)
    assert "citeplus_consumer_lag" in used and "citeplus_dead_letters_total" in used
    assert "citeplus_api_requests_total" in used


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbWarehouse]:
    """chDB with the single-node DDL (what the compose ClickHouse gets); closed at the end."""
    store = ChdbWarehouse(tmp_path_factory.mktemp("chdb") / "warehouse")
    try:
        migrate(store)
        yield store
    finally:
        store.close()


def grafana_macros(sql: str) -> str:
    """The ClickHouse plugin's macros, as it expands them for a 7-day range."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"(\1 >= now() - INTERVAL 7 DAY AND \1 <= now())", sql)
    return sql.replace("$__fromTime", "(now() - INTERVAL 7 DAY)").replace("$__toTime", "now()")


def test_dashboard_clickhouse_queries_run_on_the_warehouse(warehouse: ChdbWarehouse) -> None:
    queries = list(panel_targets("grafana-clickhouse-datasource"))
    assert len(queries) >= 4
    for title, target in queries:
        sql = grafana_macros(target["rawSql"])
        assert "$__" not in sql, f"{title}: a macro the test does not expand"
        warehouse.query_arrow(sql)  # raises with ClickHouse's message if a name is wrong
