"""`citeplus replay`: move a stage's consumer groups back in time.

Kafka only lets a group's offsets move while the group has no member, so the
stage is held stopped (a hold file the supervisor honours) while its offsets
are reset, then released.
"""

from __future__ import annotations

import datetime as dt
import time

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from services.node import control
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import make_consumer


def stage_groups(admin: AdminClient, service: str) -> list[str]:
    """Consumer groups of a service: `citeplus.<service>` and `citeplus.<service>.*`."""
    listing = admin.list_consumer_groups(request_timeout=15).result()
    names = [g.group_id for g in listing.valid]
    prefix = f"citeplus.{service}"
    return sorted(
        n for n in names if n == prefix or n.startswith(prefix + ".") or n.startswith(prefix + "-")
    )


def _wait_empty(admin: AdminClient, groups: list[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_consumer_groups(groups, request_timeout=15)
        if all(not future.result().members for future in described.values()):
            return
        time.sleep(1.0)
    raise CiteplusError(f"groups {groups} still have members; is another instance running?")


def replay(
    node: NodeConfig,
    service: str,
    *,
    from_time: dt.datetime | None = None,
    from_offset: int | None = None,
) -> list[str]:
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    groups = stage_groups(admin, service)
    if not groups:
        raise CiteplusError(f"no consumer group for {service!r} yet: has it ever run?")
    hold = control.hold_dir(node) / service
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.touch()
    moved: list[str] = []
    try:
        _wait_empty(admin, groups)
        for group in groups:
            committed = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=15
            )[group].result()
            partitions = [
                TopicPartition(tp.topic, tp.partition) for tp in committed.topic_partitions
            ]
            if not partitions:
                continue
            targets = _targets(node, partitions, from_time, from_offset)
            admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, targets)], request_timeout=15
            )[group].result()
            moved += [f"{group}: {tp.topic}[{tp.partition}] -> {tp.offset}" for tp in targets]
    finally:
        hold.unlink(missing_ok=True)
    return moved


def _targets(
    node: NodeConfig,
    partitions: list[TopicPartition],
    from_time: dt.datetime | None,
    from_offset: int | None,
) -> list[TopicPartition]:
    consumer = make_consumer(node, group_id="citeplus.replay-lookup")
    try:
        if from_time is not None:
            ms = int(from_time.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, ms) for tp in partitions], timeout=15
            )
            targets = []
            for tp in found:
                if tp.offset < 0:  # nothing at or after that time: the end
                    _, high = consumer.get_watermark_offsets(tp, timeout=15)
                    tp = TopicPartition(tp.topic, tp.partition, high)
                targets.append(tp)
            return targets
        targets = []
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=15)
            targets.append(
                TopicPartition(tp.topic, tp.partition, min(max(from_offset or 0, low), high))
            )
        return targets
    finally:
        consumer.close()
