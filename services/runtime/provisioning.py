"""Bring a node's Kafka side to its declared state: topics and registered schemas.

Every service calls this at start-up (idempotent), so a node never runs against
a topic that is missing or configured differently from ``deploy/topics.yaml``.
The topics come from the caller (:func:`services.policy.topics.declared_topics`
for a node's own), so the runtime knows no stage's configuration.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import InfrastructureError
from services.runtime.registry import SchemaRegistry
from services.runtime.topics import ProvisionReport, TopicSpec, provision


def admin_client(node: NodeConfig) -> AdminClient:
    return AdminClient({"bootstrap.servers": node.kafka.bootstrap})


SCRATCH_PREFIXES = ("test.", "bench.")


def delete_scratch_topics(
    node: NodeConfig, prefixes: tuple[str, ...] = SCRATCH_PREFIXES, timeout_s: float = 60.0
) -> list[str]:
    """Delete the topics tests and benchmarks create (``test.*``, ``bench.*``, or
    narrower prefixes inside those).

    Each test and bench run makes topics of its own under a random prefix; on a
    broker whose data directory is kept between runs they would pile up (and
    every partition slows the broker's start). Nothing else is ever touched.
    """
    if not prefixes or not all(p.startswith(SCRATCH_PREFIXES) for p in prefixes):
        raise ValueError(f"only topics under {SCRATCH_PREFIXES} are scratch, not {prefixes}")
    admin = admin_client(node)
    names = sorted(
        name for name in admin.list_topics(timeout=timeout_s).topics if name.startswith(prefixes)
    )
    if not names:
        return []
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            raise InfrastructureError(f"could not delete topic {name}: {exc}") from exc
    return names


def provision_topics(node: NodeConfig, specs: list[TopicSpec]) -> ProvisionReport:
    """Create or verify ``specs`` (the node's: :func:`services.policy.topics.declared_topics`);
    a mismatch raises with every detail."""
    report = provision(admin_client(node), specs, node.kafka.replicas)
    if not report.ok:
        details = "\n  ".join(report.mismatches)
        raise InfrastructureError(
            "existing topics differ from deploy/topics.yaml:\n  "
            f"{details}\nfix the topic (kafka-configs / kafka-topics) or the declaration"
        )
    return report


def connect_contracts(node: NodeConfig, specs: list[TopicSpec]) -> Contracts:
    """Register every topic's schema under ``<topic>-value`` and bind codecs."""
    return Contracts.register(SchemaRegistry(node.registry.url), specs)


def prepare_node(node: NodeConfig, specs: list[TopicSpec]) -> tuple[ProvisionReport, Contracts]:
    """Topics, then schemas: what a service needs before its first message.

    The caller hands the topics (partner templates already expanded): which partners
    a node shares with is the city files' and the federation file's business, read
    by :mod:`services.policy`, above this layer."""
    report = provision_topics(node, specs)
    return report, connect_contracts(node, specs)
