"""What a group has left to read, from the brokers' side (the check that tells a
settled pipeline from one whose restarted worker holds no partition yet, and so shows
no lag of its own): on the real broker, with transactional writes whose commit
markers sit after the committed offsets."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.node.unread import unread_input
from services.runtime.config import NodeConfig
from services.runtime.kafka import make_consumer, make_producer

pytestmark = pytest.mark.integration


def _topic(node: NodeConfig, partitions: int) -> str:
    name = f"test.{uuid.uuid4().hex[:8]}.unread"
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _write(
    node: NodeConfig, topic: str, partition: int, count: int, *, abort: bool = False
) -> None:
    producer = make_producer(node, transactional_id=f"test-unread-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(count):
        producer.produce(topic, f"v{i}".encode(), partition=partition)
    if abort:
        producer.abort_transaction(30)
    else:
        producer.commit_transaction(30)


def _commit(node: NodeConfig, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = make_consumer(node, group_id=group)
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def test_a_group_that_read_everything_has_nothing_unread_despite_commit_markers(node) -> None:
    topic, group = _topic(node, 2), f"test.unread.{uuid.uuid4().hex[:8]}"
    _write(node, topic, 0, 3)
    _write(node, topic, 1, 2)
    _write(node, topic, 1, 4, abort=True)  # aborted records are never input
    # As a stage commits: one past the last record read, before the commit marker.
    _commit(node, group, {(topic, 0): 3, (topic, 1): 2})

    other = f"test.unread.{uuid.uuid4().hex[:8]}"  # several groups asked at once
    _commit(node, other, {(topic, 0): 1, (topic, 1): 2})
    assert [(u.group, u.partition) for u in unread_input(node, [group, other])] == [(other, 0)]


def test_records_after_the_committed_offset_and_on_a_never_committed_partition_are_unread(
    node,
) -> None:
    topic, group = _topic(node, 3), f"test.unread.{uuid.uuid4().hex[:8]}"
    _write(node, topic, 0, 3)
    _commit(node, group, {(topic, 0): 3})
    _write(node, topic, 0, 2)  # arrived after the group's last commit
    _write(node, topic, 2, 1)  # a partition the group never committed on

    unread = unread_input(node, [group])

    assert [(u.group, u.topic, u.partition) for u in unread] == [
        (group, topic, 0),
        (group, topic, 2),
    ]
    assert unread[0].committed == 3 and unread[0].first_unread == 4  # 3 is the marker
    assert "has not read" in str(unread[0])


def test_a_topic_a_member_holds_but_never_committed_on_is_looked_at(node) -> None:
    """A worker killed before its first commit on one of its inputs, while its group
    still lists it: that input is unread even though the group has no offset there."""
    topic, group = _topic(node, 1), f"test.unread.{uuid.uuid4().hex[:8]}"
    _write(node, topic, 0, 2)
    member = make_consumer(node, group_id=group)
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 60
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), "the member never got its partition"
        unread = unread_input(node, [group])
    finally:
        member.close()
    assert [(u.topic, u.partition, u.first_unread) for u in unread] == [(topic, 0, 0)]


def test_a_group_with_neither_commits_nor_members_has_nothing_to_say(node) -> None:
    assert unread_input(node, [f"test.unread.{uuid.uuid4().hex[:8]}"]) == []
