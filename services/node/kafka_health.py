"""The Kafka side of `citeplus status`: brokers up and down, the controller, and the
partitions that are under-replicated (fewer replicas in sync than assigned: one
more broker lost and writes stop) or offline (no leader: reads and writes stop).

A broker that is down is not in the cluster's metadata any more; it is named from
the partitions that still list it as a replica, so "broker 3 down" can be said
without knowing the cluster's size. Workers per stage and the partitions each one
holds are another table (the supervisor's; see render_status).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.runtime.config import NodeConfig


@dataclass
class KafkaHealth:
    """What the cluster's metadata says, at one instant."""

    live: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)
    controller: int | None = None
    under_replicated: dict[str, list[int]] = field(default_factory=dict)
    offline: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None

    @property
    def clean(self) -> bool:
        """Every broker up and every partition fully in sync, with a leader."""
        return not (self.error or self.down or self.under_replicated or self.offline)


def kafka_health(node: NodeConfig, timeout_s: float = 5.0) -> KafkaHealth:
    """Ask the cluster (any broker of the bootstrap list) for its brokers and partitions."""
    admin = AdminClient(
        {"bootstrap.servers": node.kafka.bootstrap, "log_level": 0, "socket.timeout.ms": 3000}
    )
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        described = admin.describe_cluster(request_timeout=timeout_s).result()
    except KafkaException as exc:
        return KafkaHealth(error=f"Kafka at {node.kafka.bootstrap} does not answer ({exc})")
    health = KafkaHealth(live=sorted(metadata.brokers))
    health.controller = described.controller.id if described.controller else None
    assigned: set[int] = set()
    for name, topic in metadata.topics.items():
        for pid, part in topic.partitions.items():
            assigned.update(part.replicas)
            if part.leader < 0:
                health.offline.setdefault(name, []).append(pid)
            elif len(part.isrs) < len(part.replicas):
                health.under_replicated.setdefault(name, []).append(pid)
    health.down = sorted(assigned - set(health.live))
    return health


def render_kafka_health(health: KafkaHealth, limit: int = 5) -> str:
    """A few lines under the services' table; the worst first, long lists cut."""
    if health.error:
        return f"kafka: {health.error}"
    brokers = ", ".join(
        f"{b}{' (controller)' if b == health.controller else ''}" for b in health.live
    )
    lines = [f"kafka: brokers up {brokers or '-'}"]
    if health.down:
        lines[0] += f"; DOWN {', '.join(map(str, health.down))}"
    for label, found in (
        ("under-replicated", health.under_replicated),
        ("OFFLINE", health.offline),
    ):
        if not found:
            continue
        count = sum(len(parts) for parts in found.values())
        shown = "; ".join(
            f"{name} {','.join(map(str, sorted(parts)))}"
            for name, parts in sorted(found.items())[:limit]
        )
        more = f" (+{len(found) - limit} topics)" if len(found) > limit else ""
        lines.append(f"kafka: {count} partitions {label}: {shown}{more}")
    if health.clean:
        lines.append("kafka: every partition in sync")
    return "\n".join(lines)
