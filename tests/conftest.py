"""Shared fixtures. Integration tests run against the real Kafka broker and the
real schema registry that the project itself fetches and starts (no mocks);
starting is idempotent, so a broker already up (``make test`` starts one) is reused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig, load_node_config
from services.runtime.provisioning import connect_contracts, provision_topics
from services.runtime.topics import TopicSpec, load_topics


@pytest.fixture(scope="session")
def infrastructure() -> tuple[str, str]:
    """(bootstrap, registry URL) of the running local broker and registry."""
    from services.infra.kafka_broker import start_broker
    from services.infra.registry_server import registry_status, start_registry

    bootstrap = start_broker()
    running = registry_status()
    # Any running registry will do (memory or kafkasql): tests register their own subjects.
    registry = running["url"] if running["answering"] else start_registry(storage="memory")
    return bootstrap, registry


@pytest.fixture(scope="session")
def node(infrastructure: tuple[str, str]) -> NodeConfig:
    bootstrap, registry = infrastructure
    config = load_node_config()
    return replace(
        config,
        kafka=replace(config.kafka, bootstrap=bootstrap),
        registry=replace(config.registry, url=registry),
        processing=replace(config.processing, batch_timeout_s=0.2),
    )


@pytest.fixture()
def isolated_topics(node: NodeConfig) -> Callable[..., tuple[dict[str, TopicSpec], Contracts]]:
    """Copies of the declared topics under a unique prefix, created and with codecs.

    Each test gets topics of its own, so tests never see each other's records.
    """

    def make(*names: str, partitions: int | None = None) -> tuple[dict[str, TopicSpec], Contracts]:
        prefix = f"test.{uuid.uuid4().hex[:8]}."
        declared = load_topics()
        chosen = names or tuple(declared)
        specs = {
            name: replace(
                declared[name],
                name=prefix + name,
                partitions=partitions or declared[name].partitions,
            )
            for name in chosen
        }
        provision_topics(node, list(specs.values()))
        return specs, connect_contracts(node, list(specs.values()))

    return make
