"""The group commit outlives a producer fenced by another instance of its transactional
id: the batch in flight is answered (503, nothing of it visible) and the next lands.

A fenced producer's abort fails, so the group commit closes it; ``Producer.close()``
then raises the fatal error it still holds. Raised inside the commit thread, that
error ended the thread: the batch's future was never answered (its HTTP request hung)
and no later batch was committed.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from services.runtime.errors import BrokerUnavailable
from services.runtime.group_commit import GroupCommitProducer
from services.runtime.kafka import make_producer
from services.runtime.provisioning import provision_topics
from services.runtime.topics import load_topics
from testkit.kafka import read_all

pytestmark = pytest.mark.integration

FENCED_BATCH = 20_000


def test_a_fenced_producer_is_answered_503_and_the_next_batch_lands(node) -> None:
    topic = f"test.{uuid.uuid4().hex[:8]}.fenced.raw.v1"
    provision_topics(node, [replace(load_topics()["raw.v1"], name=topic, partitions=1)])
    transactional_id = f"citeplus.test.fenced.{uuid.uuid4().hex[:8]}"
    sink = GroupCommitProducer(node, transactional_id, timeout_s=4).start()
    try:
        assert sink.submit([(topic, "before", b"1")]).result(30) == 1
        # Another instance with the same id (a restarted worker whose predecessor
        # still runs) fences the sink's producer.
        other = make_producer(node, transactional_id=transactional_id)
        other.init_transactions(30)
        other.close()

        # Large enough that the fence is found while the batch is still being produced:
        # the client then holds the fatal error until something serves its events.
        fenced = [(topic, f"fenced-{i}", b"x" * 100) for i in range(FENCED_BATCH)]
        with pytest.raises(BrokerUnavailable):
            sink.submit(fenced).result(30)
        assert sink.submit([(topic, "after", b"3")]).result(30) == 1
    finally:
        sink.close(10)

    keys = sorted(m.key() for m in read_all(node, topic, expected=2))
    assert keys == [b"after", b"before"]


def test_an_unforeseen_error_in_a_batch_is_answered_and_the_next_batch_lands(node) -> None:
    """Whatever a batch raises, its caller is answered and the commit thread goes on:
    a thread ended by an error leaves every later request waiting for ever."""
    topic = f"test.{uuid.uuid4().hex[:8]}.unforeseen.raw.v1"
    provision_topics(node, [replace(load_topics()["raw.v1"], name=topic, partitions=1)])
    sink = GroupCommitProducer(node, f"citeplus.test.unforeseen.{uuid.uuid4().hex[:8]}").start()
    try:
        broken = [(topic, "broken", 12345)]  # a value that is not bytes: the client refuses it
        with pytest.raises(BrokerUnavailable):
            sink.submit(broken).result(30)  # type: ignore[arg-type]
        assert sink.submit([(topic, "after", b"1")]).result(30) == 1
    finally:
        sink.close(10)

    assert [m.key() for m in read_all(node, topic, expected=1)] == [b"after"]
