"""The workers side of `citeplus status`: per stage, the members of its consumer
group (each worker's client.id carries its index: ``citeplus.<node>.<stage>.<i>``) and
the partitions each one holds, from the brokers' own description of the group.

The supervisor's table says which processes run; this says which of them the group
counts and what each one reads: a worker that runs but holds nothing (more workers
than partitions, or a rebalance in progress) shows as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.runtime.config import NodeConfig

# Services without a consumer group: ingest (an HTTP edge) and the api.
UNGROUPED = ("ingest", "api")
# Services whose groups are not citeplus.<service>: publish has two, the warehouse
# sink's and the republisher's (what goes to the public and partner topics).
GROUPS = {
    "publish": {
        "publish sink": "citeplus.publish.sink",
        "publish-public": "citeplus.publish-public",
    }
}


@dataclass
class GroupWorkers:
    """One stage's group at one instant: member client id -> {topic: partitions}."""

    stage: str
    state: str = "unknown"
    assignor: str = ""
    members: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    error: str | None = None


def describe_workers(
    node: NodeConfig, stages: list[str], timeout_s: float = 5.0
) -> list[GroupWorkers]:
    """Ask the group coordinators about each stage's group (one request for all)."""
    groups = {
        group: label
        for stage in stages
        if stage not in UNGROUPED
        for label, group in GROUPS.get(stage, {stage: f"citeplus.{stage}"}).items()
    }
    if not groups:
        return []
    wanted = list(groups.values())
    admin = AdminClient(
        {"bootstrap.servers": node.kafka.bootstrap, "log_level": 0, "socket.timeout.ms": 3000}
    )
    futures = admin.describe_consumer_groups(list(groups), request_timeout=timeout_s)
    found = []
    for group, future in futures.items():
        workers = GroupWorkers(groups[group])
        try:
            description = future.result()
        except KafkaException as exc:
            workers.error = str(exc.args[0]) if exc.args else str(exc)
        else:
            workers.state = description.state.name.lower()
            workers.assignor = description.partition_assignor
            for member in description.members:
                held: dict[str, list[int]] = {}
                for tp in member.assignment.topic_partitions:
                    held.setdefault(tp.topic, []).append(tp.partition)
                workers.members[member.client_id] = {t: sorted(p) for t, p in held.items()}
        found.append(workers)
    return sorted(found, key=lambda w: wanted.index(w.stage))


def render_workers(groups: list[GroupWorkers]) -> str:
    """A line per stage (workers, group state, assignor), then a line per worker."""
    lines = []
    for group in groups:
        if group.error:
            lines.append(f"workers: {group.stage}: group not described ({group.error})")
            continue
        assignor = f", {group.assignor}" if group.assignor else ""
        count = len(group.members)
        lines.append(
            f"workers: {group.stage} {count} in its group ({group.state}{assignor})"
            if count
            else f"workers: {group.stage} none in its group ({group.state})"
        )
        for client, held in sorted(group.members.items()):
            shown = "; ".join(f"{topic} {_spans(parts)}" for topic, parts in sorted(held.items()))
            lines.append(f"  {client}: {shown or 'no partitions'}")
    return "\n".join(lines)


def _spans(parts: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    runs: list[list[int]] = []
    for part in parts:
        if runs and runs[-1][1] == part - 1:
            runs[-1][1] = part
        else:
            runs.append([part, part])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
