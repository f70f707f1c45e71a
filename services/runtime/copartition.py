"""Co-partitioning: a stage that joins several topics by partition number (energy-
analytics: observations, its regrouped topic and its state changelog) needs every
topic's partition ``n`` on the same worker.

That holds only under the classic protocol's ``range`` assignor and only when the
topics have the same partition count: ``range`` hands each member the same span of
partition numbers of every topic it subscribes to. librdkafka's default
(``range,roundrobin``) happens to pick range, but nothing pinned it; ``roundrobin``
and ``cooperative-sticky`` spread each topic on its own, and the new consumer protocol
(KIP-848, ``group.protocol=consumer``) lets the broker assign and ignores client-side
assignors. So a co-partitioned stage pins ``range``, refuses the new protocol, and
checks every assignment it receives: a wrong one stops the worker with an error that
names the topics, rather than aggregating a city's records on two workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError, ConfigError


class CoPartitionError(CiteplusError):
    """An assignment (or topic layout) under which co-partitioning does not hold."""


def group_settings(node: NodeConfig, *, co_partitioned: bool, client_id: str) -> dict[str, Any]:
    """Consumer settings of a stage's group member: its ``client.id`` (the worker,
    shown by ``citeplus status``) and the assignment protocol."""
    settings: dict[str, Any] = {"client.id": client_id}
    protocol = node.processing.group_protocol
    if protocol == "consumer":
        if co_partitioned:
            raise ConfigError(
                "group_protocol: consumer lets the broker assign partitions and ignores the "
                "range assignor this stage's co-partitioned inputs need; set "
                "processing.group_protocol: classic (or CITEPLUS_PROCESSING_GROUP_PROTOCOL="
                "classic) for the node",
                source=node.source,
                key="processing.group_protocol",
            )
        # KIP-848 members have no client-side session or heartbeat settings.
        return {**settings, "group.protocol": "consumer"}
    if co_partitioned:
        settings["partition.assignment.strategy"] = "range"
    return settings


def check_co_partitioned(
    assigned: Iterable[tuple[str, int]],
    counts: Mapping[str, int | None],
    topics: Sequence[str],
) -> None:
    """Raise :class:`CoPartitionError` unless every topic of ``counts`` (the inputs
    ``topics`` and the stage's changelogs; None: missing) has the same partition count
    and ``assigned`` ((topic, partition) pairs) holds, for every partition number it
    holds of one of the inputs ``topics``, that number of every one of them."""
    sizes = {**{topic: None for topic in topics}, **counts}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        shown = ", ".join(f"{t}: {n if n is not None else 'missing'}" for t, n in sizes.items())
        raise CoPartitionError(
            f"co-partitioned topics must have the same number of partitions ({shown}); "
            "add partitions to the smaller ones (kafka-topics --alter --partitions) before "
            "the stage runs, then replay it (citeplus replay)"
        )
    held: dict[str, set[int]] = {topic: set() for topic in topics}
    for topic, partition in assigned:
        if topic in held:
            held[topic].add(partition)
    every = set().union(*held.values())
    missing = {topic: sorted(every - numbers) for topic, numbers in held.items()}
    missing = {topic: numbers for topic, numbers in missing.items() if numbers}
    if missing:
        shown = "; ".join(f"{t} lacks {numbers}" for t, numbers in missing.items())
        raise CoPartitionError(
            f"assignment breaks co-partitioning: this worker got partitions {sorted(every)} "
            f"of some of {', '.join(topics)} but not of all ({shown}); every worker of the "
            "group must use partition.assignment.strategy=range with the classic protocol"
        )
