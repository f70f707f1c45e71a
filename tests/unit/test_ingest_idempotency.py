"""The idempotency store's bounds: keys expire after their retention, memory stays
under its budget (oldest first, counted), bad keys are refused with what to do."""

from __future__ import annotations

import pytest

from services.ingest.idempotency import (
    MIN_RETENTION_S,
    Answer,
    IdempotencyStore,
    KeyRefused,
    check_key,
    scope_of,
    state_topic_beside,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_answered_for_its_retention_then_forgotten():
    clock = Clock()
    store = IdempotencyStore("t", None, retention_s=MIN_RETENTION_S, clock=clock)
    store.remember("k", "body-1", Answer(200, '{"a": 1}'), clock.now)
    clock.now += MIN_RETENTION_S - 1
    assert store.lookup("k", "body-1") == Answer(200, '{"a": 1}', replayed=True)
    with pytest.raises(KeyRefused) as refused:
        store.lookup("k", "body-2")
    assert refused.value.status == 422
    clock.now += 2
    assert store.lookup("k", "body-1") is None and len(store) == 0


def test_memory_stays_under_its_budget_oldest_keys_first():
    clock = Clock()
    store = IdempotencyStore("t", None, max_bytes=10_000, clock=clock)
    for n in range(100):
        store.remember(f"k{n}", "f", Answer(200, "x" * 100), clock.now)
    assert store.bytes <= 10_000
    assert store.lookup("k99", "f") is not None and store.lookup("k0", "f") is None
    assert store.evicted._value.get() == 100 - len(store)


def test_the_first_answer_wins_and_a_short_retention_is_refused():
    clock = Clock()
    store = IdempotencyStore("t", None, clock=clock)
    store.remember("k", "f", Answer(200, "first"), clock.now)
    store.remember("k", "f", Answer(422, "second"), clock.now)
    assert store.lookup("k", "f") == Answer(200, "first", replayed=True)
    with pytest.raises(ValueError, match="at least"):
        IdempotencyStore("t", None, retention_s=3600)


@pytest.mark.parametrize("key", ["", "a" * 256, "tab\there", "é"])
def test_keys_are_short_visible_ascii(key):
    with pytest.raises(KeyRefused) as refused:
        check_key(key)
    assert refused.value.status == 400 and "retry" in str(refused.value)


def test_keys_are_scoped_per_source_and_topics_follow_their_prefix():
    assert scope_of("paris", "a", "k") != scope_of("paris", "b", "k")
    assert state_topic_beside("test.x.raw.v1") == "test.x.ingest.state.v1"
    assert state_topic_beside("raw.v1") == "ingest.state.v1"
    assert state_topic_beside("test.x.raw.v2") == "test.x.ingest.state.v1"
    assert state_topic_beside("raw.v2") == "ingest.state.v1"
