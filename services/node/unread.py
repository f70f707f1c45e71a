"""What a node's consumer groups have left to read, as the brokers see it.

A service's own lag gauge cannot tell everything: a worker restarted after a kill
holds no partition until its group has dropped the dead member (the session
timeout) and rebalanced, and until then it reports no lag at all, while its input
waits. The brokers know better: a group's committed offsets against what its
topics hold. The committed offset of a transactional reader stops before the
transaction's commit marker, so a gap of a few offsets is not yet input left: the
partitions with a gap are read (``read_committed``) from the committed offset, and
only a record found there counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from services.runtime.config import NodeConfig
from services.runtime.kafka import consumer_settings


@dataclass(frozen=True)
class Unread:
    """A group with a committed record after its committed offset on one partition."""

    group: str
    topic: str
    partition: int
    committed: int
    first_unread: int

    def __str__(self) -> str:
        return (
            f"group {self.group} has not read {self.topic}[{self.partition}] from offset "
            f"{self.committed} (a record at {self.first_unread})"
        )


def unread_input(node: NodeConfig, groups: list[str], timeout_s: float = 15.0) -> list[Unread]:
    """The partitions on which one of ``groups`` has committed records left to read.

    Every partition of every topic a group has committed on, or that one of its
    members holds now, is looked at (one it never committed on counts from the
    topic's start): input on a topic a killed worker never committed on, and that
    its restarted successor does not hold yet, is not missed while the group still
    lists the dead member. A group with neither commits nor members says nothing."""
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap, "log_level": 0})
    positions: dict[str, dict[tuple[str, int], int]] = {}
    topics_of: dict[str, set[str]] = {}
    described = admin.describe_consumer_groups(groups, request_timeout=timeout_s)
    for group in groups:  # the client lists one group's offsets per request
        request = [ConsumerGroupTopicPartitions(group)]
        listing = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)[group]
        positions[group] = {
            (tp.topic, tp.partition): tp.offset for tp in listing.result().topic_partitions or []
        }
        held = {
            tp.topic
            for member in described[group].result().members
            for tp in member.assignment.topic_partitions
        }
        topics_of[group] = {topic for topic, _ in positions[group]} | held
    if not any(topics_of.values()):
        return []
    metadata = admin.list_topics(timeout=timeout_s).topics
    peek = Consumer(consumer_settings(node, group_id="citeplus.unread-check", **{"log_level": 0}))
    try:
        found: list[Unread] = []
        for group, held in positions.items():
            for topic in sorted(topics_of[group] & set(metadata)):  # deleted topics: nothing
                for partition in sorted(metadata[topic].partitions):
                    committed = held.get((topic, partition), -1)
                    record = _first_record(peek, topic, partition, committed, timeout_s)
                    if record is not None:
                        found.append(Unread(group, topic, partition, max(committed, 0), record))
        return found
    finally:
        peek.close()


def _first_record(
    peek: Consumer, topic: str, partition: int, committed: int, timeout_s: float
) -> int | None:
    """The offset of the first committed record at or after ``committed`` (-1: the
    start), or None when there is none; the high watermark read first so that a
    partition with nothing after the committed offset costs no fetch."""
    low, high = peek.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
    start = low if committed < 0 else max(committed, low)
    if start >= high:
        return None
    peek.assign([TopicPartition(topic, partition, start)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = peek.poll(0.5)
            if message is None:
                position = peek.position([TopicPartition(topic, partition)])[0].offset
                if position >= high:
                    return None
                continue
            if message.error():
                raise KafkaException(message.error())
            return message.offset()
        raise TimeoutError(
            f"{topic}[{partition}] could not be read from {start} to {high} in {timeout_s} s "
            "(a transaction still open?)"
        )
    finally:
        peek.unassign()
