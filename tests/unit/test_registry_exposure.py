"""The schema registry has no authentication of its own (Apicurio's needs an OIDC
server), so only the node may reach it: it listens on loopback in development and
is published on the host's loopback only in docker-compose.yml. Partners read
schemas through the federation API's GetSchema."""

from __future__ import annotations

import yaml

from services.infra.registry_server import registry_properties
from services.runtime.paths import REPO_ROOT


def test_the_development_registry_listens_on_loopback_only() -> None:
    for storage, bootstrap in (("memory", None), ("kafkasql", "127.0.0.1:9092")):
        props = registry_properties(storage, 18081, bootstrap)
        assert props["quarkus.http.host"] == "127.0.0.1"
        assert props["quarkus.management.host"] == "127.0.0.1"


def test_compose_publishes_the_registry_on_the_hosts_loopback_only() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    ports = compose["services"]["registry"].get("ports", [])
    assert ports, "the registry's port mapping moved: check it stays on loopback"
    assert all(str(mapping).startswith("127.0.0.1:") for mapping in ports), ports
