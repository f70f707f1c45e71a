"""When a runner told to stop after some idle seconds may stop: never before its group
join has assigned partitions (the CI flake where a slow join looked like no input);
and how long it keeps retrying a transaction commit."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.runtime.config import load_node_config
from services.runtime.processor import (
    COMMIT_ATTEMPT_S,
    FIRST_ASSIGNMENT_WAIT_S,
    BaseStage,
    StageRunner,
    commit_within,
    idle_exit_due,
)


def test_no_exit_while_the_group_join_is_slow() -> None:
    assert not idle_exit_due(now=10.0, idle_since=0.0, started=0.0, assigned_at=None, idle_s=3)
    assert idle_exit_due(
        now=FIRST_ASSIGNMENT_WAIT_S, idle_since=0.0, started=0.0, assigned_at=None, idle_s=3
    )


def test_idle_counts_from_the_assignment_then_from_the_last_input() -> None:
    assert not idle_exit_due(now=12.0, idle_since=0.0, started=0.0, assigned_at=10.0, idle_s=3)
    assert idle_exit_due(now=13.0, idle_since=0.0, started=0.0, assigned_at=10.0, idle_s=3)
    assert not idle_exit_due(now=16.0, idle_since=14.0, started=0.0, assigned_at=10.0, idle_s=3)
    assert idle_exit_due(now=17.0, idle_since=14.0, started=0.0, assigned_at=10.0, idle_s=3)


def test_a_commit_that_keeps_timing_out_becomes_fatal_within_the_transaction_timeout() -> None:
    """A wedged producer used to be retried ten times a minute each, holding its
    partitions; past the transaction timeout the error is fatal (the process restarts)."""
    tries: list[float] = []

    def never(wait: float) -> None:
        tries.append(wait)
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))

    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        commit_within(never, budget_s=0.5, stage="test")
    assert raised.value.args[0].fatal() and "transaction timeout" in str(raised.value)
    assert len(tries) >= 2 and all(wait <= COMMIT_ATTEMPT_S for wait in tries)
    assert time.monotonic() - started < 30  # bounded, not ten minutes


def test_a_commit_that_succeeds_on_retry_and_a_non_retriable_error_pass_through() -> None:
    calls: list[float] = []

    def once_then_ok(wait: float) -> None:
        calls.append(wait)
        if len(calls) == 1:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True))

    commit_within(once_then_ok, budget_s=60, stage="test")
    assert len(calls) == 2

    def fenced(wait: float) -> None:
        raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    with pytest.raises(KafkaException) as raised:
        commit_within(fenced, budget_s=60, stage="test")
    assert raised.value.args[0].code() == KafkaError._FENCED


class _Message:
    def __init__(self, offset: int):
        self._offset = offset

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return 0

    def topic(self) -> str:
        return "in"

    def error(self) -> None:
        return None


class _RebalancingConsumer:
    """A consumer whose second fetch of a cycle serves an eager rebalance (what
    librdkafka does inside ``consume``): the fetch position goes back to the commit."""

    def __init__(self) -> None:
        self.runner: StageRunner | None = None
        self.at, self.committed_offset, self.calls, self.seeks = 100, 100, 0, []

    def consume(self, at_most: int, timeout: float) -> list[_Message]:
        self.calls += 1
        if self.calls == 2 and self.runner is not None:
            self.runner._revoked(self, [TopicPartition("in", 0)])
            self.at = self.committed_offset
        out = [_Message(o) for o in range(self.at, min(self.at + at_most, 150))]
        self.at += len(out)
        return out

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", 0)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition("in", 0, self.committed_offset)]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp.offset)
        self.at = tp.offset


class _NoTransactions:
    def begin_transaction(self) -> None:
        raise AssertionError("a cycle that spanned a rebalance was processed")


def test_a_cycle_spanning_a_rebalance_is_dropped_and_read_again_from_the_commit() -> None:
    """A cycle is several fetches now; a rebalance served by the second one sent the
    fetch back to the committed offset, so the first fetch's messages came again in the
    same cycle and were processed twice (found by review: the cycle held offset 100 twice)."""
    consumer = _RebalancingConsumer()
    node = load_node_config(env={})
    node = replace(node, processing=replace(node.processing, linger_ms=50, batch_size=40))
    runner = StageRunner(
        BaseStage(),
        node,
        None,
        consumer=consumer,
        producer=_NoTransactions(),  # type: ignore[arg-type]
    )
    consumer.runner = runner
    assert runner.run_once() == 0
    assert consumer.seeks == [100] and consumer.at == 100


class _OneMessageConsumer(_RebalancingConsumer):
    """Serves one message once, then nothing; no rebalance."""

    def consume(self, at_most: int, timeout: float) -> list[_Message]:
        self.calls += 1
        return [_Message(100)] if self.calls == 1 else []

    def consumer_group_metadata(self) -> object:
        return object()


class _WedgedProducer:
    """A transactional producer whose send_offsets_to_transaction never returns, as
    librdkafka's does when the group coordinator moves (it does not keep its timeout)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets: object, group: object, timeout: float) -> None:
        self.calls.append("send_offsets")
        self.released.wait(10)

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


def test_a_wedged_send_offsets_stops_the_worker_before_any_commit_or_abort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker gives the call up and leaves with a fatal error (the supervisor
    restarts it and its new producer fences the open transaction); neither a commit nor
    an abort is attempted on the wedged producer, where either would block too."""
    from services.runtime import bounded, processor

    monkeypatch.setattr(processor, "SEND_OFFSETS_S", 0.2)
    monkeypatch.setattr(bounded, "GRACE_S", 0.2)
    node = load_node_config(env={})
    node = replace(node, processing=replace(node.processing, linger_ms=0, batch_size=10))
    producer = _WedgedProducer()
    runner = StageRunner(
        BaseStage(),
        node,
        None,
        consumer=_OneMessageConsumer(),
        producer=producer,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(runner, "_process_batch", lambda good: processor._BatchTally())
    try:
        with pytest.raises(KafkaException) as raised:
            runner.run_once()
    finally:
        producer.released.set()
    error = raised.value.args[0]
    assert error.fatal() and "send_offsets_to_transaction did not return" in error.str()
    assert producer.calls == ["begin", "send_offsets"]
