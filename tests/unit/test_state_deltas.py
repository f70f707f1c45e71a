"""Delta changelog records (services/runtime/changelog_deltas.py), without a broker:
the log a store writes, replayed as a new owner reads it (whole, or compacted as
far as Kafka may compact it, restarts in between), gives the committed state; a
batch of many keys is one record; a deleted value leaves the log in bounded time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime import changelog_deltas
from services.runtime.errors import RejectedInput
from services.runtime.stage import Emit
from services.runtime.state import DELTA_BUDGET, ChangelogStore

NAME, TOPIC = "s", "s.state.v1"
KEYS = [f"city|e{n}" for n in range(12)]


def partition_of(key: str) -> int:
    return int(key.rsplit("e", 1)[1]) % 2


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


Log = list[tuple[int, str, dict[str, Any] | None]]  # partition, Kafka key, record (None: tombstone)


def store_of(clock: Clock, budget: int = DELTA_BUDGET) -> ChangelogStore:
    return ChangelogStore(NAME, TOPIC, deltas=True, message_budget=budget, clock=clock)


def written(log: Log, emits: list[Emit]) -> None:
    for emit in emits:
        assert emit.topic == TOPIC and emit.partition is not None and isinstance(emit.key, str)
        log.append((emit.partition, emit.key, emit.value))


def replayed(log: Log, clock: Clock, budget: int = DELTA_BUDGET) -> ChangelogStore:
    """A new owner of both partitions: the log read from the start, in offset order."""
    store = store_of(clock, budget)
    for partition, key, record in log:
        if record is None:
            store.apply_tombstone(key.split("|", 1)[1], partition)
        else:
            store.apply(json.loads(json.dumps(record)), partition)
    store.finish_restore([0, 1])
    return store


def compacted(log: Log, cleaned: int) -> Log:
    """What Kafka may leave of ``log`` once its cleaner went up to offset ``cleaned``
    (per partition, the whole log is one list here: keys never cross partitions):
    a record there with a later record of its key there is removed, and so is every
    tombstone there (the worst case: its retention passed)."""
    head, tail = log[:cleaned], log[cleaned:]
    last = {(p, key): offset for offset, (p, key, _) in enumerate(head)}
    kept = [
        (p, key, record)
        for offset, (p, key, record) in enumerate(head)
        if last[(p, key)] == offset and record is not None
    ]
    return kept + tail


def state(store: ChangelogStore) -> dict[str, Any]:
    return {key: store.get(key) for key in KEYS if store.get(key) is not None}


op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 10**6)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("reject"), st.sampled_from(KEYS), st.integers(0, 10**6)),
)
batch = st.tuples(
    st.lists(op, max_size=8),
    st.sampled_from(["commit", "commit", "commit", "abort", "restart"]),
    st.sampled_from([0.0, 1.0, 700.0]),  # seconds before the batch (a cycle's age)
)


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(batch, min_size=1, max_size=40), budget=st.sampled_from([40, 10_000]))
def test_the_log_replayed_whole_or_compacted_gives_the_committed_state(
    batches: list[tuple[list[tuple[str, str, int]], str, float]], budget: int
) -> None:
    clock = Clock()
    store = store_of(clock, budget)
    log: Log = []
    truth: dict[str, Any] = {}
    for ops, outcome, wait in batches:
        clock.now += wait
        pending = dict(truth)
        for kind, key, value in ops:
            store.begin_record()
            if kind == "delete":
                store.delete(key, partition_of(key))
                pending.pop(key, None)
            else:
                store.put(key, {"v": value}, partition_of(key))
                if kind == "reject":
                    store.rollback_record()
                else:
                    pending[key] = {"v": value}
        emits = store.changelog_emits()
        if outcome == "abort":
            store.abort()
            continue
        written(log, emits)
        store.commit()
        truth = pending
        assert state(store) == truth
        for cleaned in {0, len(log) // 2, len(log)}:
            assert state(replayed(compacted(log, cleaned), clock, budget)) == truth
        if outcome == "restart":  # a new owner, from what compaction may have left
            log = compacted(log, len(log) // 2)
            store = replayed(log, clock, budget)


def test_a_batch_of_many_keys_is_one_record_and_the_log_stays_bounded() -> None:
    clock = Clock()
    store = store_of(clock)
    keys = [f"paris|sensor{n}|pm10" for n in range(1000)]
    for key in keys:
        store.put(key, {"t": 1}, 3)
    first = store.changelog_emits()
    store.commit()
    assert len(first) == 1 and first[0].partition == 3
    log: Log = []
    written(log, first)
    for round_ in range(2, 200):  # every key changed again in each batch
        for key in keys:
            store.put(key, {"t": round_}, 3)
        emits = store.changelog_emits()
        store.commit()
        assert len(emits) <= 3  # the delta, and the tombstones of a cycle that ended
        written(log, emits)
    survivors = compacted(log, len(log))
    assert len(survivors) <= 2 * (changelog_deltas.REWRITE_SHARE + 2)
    restored = replayed(survivors, clock)
    assert all(restored.get(key) == {"t": 199} for key in keys)


def test_a_deleted_value_leaves_the_log_within_two_cycle_ages_when_input_stops() -> None:
    """The attacker reads the whole changelog topic after compaction: a value the
    stage deleted (a meter's day once released) must be gone from it, even when no
    input follows the deletion."""
    clock = Clock()
    store = store_of(clock)
    log: Log = []
    for n in range(50):
        store.put(f"city|m{n}", {"secret": f"reading-{n}"}, 0)
    written(log, store.changelog_emits())
    store.commit()
    store.delete("city|m7", 0)
    written(log, store.changelog_emits())
    store.commit()
    for _ in range(3):  # ticks, no input: each a cycle age apart
        clock.now += changelog_deltas.CYCLE_MAX_AGE_S
        written(log, store.changelog_emits())
        store.commit()
    text = json.dumps(compacted(log, len(log)))
    assert "reading-7" not in text and "reading-8" in text
    assert replayed(compacted(log, len(log)), clock).get("city|m7") is None


def test_keys_written_before_deltas_are_deleted_by_their_own_record() -> None:
    """A changelog written one record per key (before deltas, or by a store without
    them): a key deleted later gets a per-key delete too, or compaction would keep
    its old record and bring it back."""
    clock = Clock()
    old = ChangelogStore(NAME, TOPIC, clock=clock)
    log: Log = []
    for key in KEYS[:4]:
        old.put(key, {"old": key}, partition_of(key))
    written(log, old.changelog_emits())
    old.commit()
    store = replayed(log, clock)
    store.delete(KEYS[0], partition_of(KEYS[0]))
    store.put(KEYS[1], {"new": 1}, partition_of(KEYS[1]))
    written(log, store.changelog_emits())
    store.commit()
    for _ in range(3):
        clock.now += changelog_deltas.CYCLE_MAX_AGE_S
        written(log, store.changelog_emits())
        store.commit()
    survivors = replayed(compacted(log, len(log)), clock)
    assert state(survivors) == {
        KEYS[1]: {"new": 1},
        KEYS[2]: {"old": KEYS[2]},
        KEYS[3]: {"old": KEYS[3]},
    }


def test_a_stage_key_may_not_look_like_a_delta() -> None:
    store = store_of(Clock())
    try:
        store.put(changelog_deltas.DELTA_MARK + "x", 1, 0)
    except ValueError:
        return
    raise AssertionError("a key starting with NUL was accepted")


def test_a_hostile_entity_whose_state_outgrows_a_record_is_refused_alone() -> None:
    """A client that makes one entity's state larger than a changelog record carries
    (a wide window of values) would, written at the batch's end, fail every retry of
    the batch and stop the stage for every city. Its record is refused when it writes
    the state (a dead letter), and the batch's other writes stand."""
    store = ChangelogStore(NAME, TOPIC, deltas=True, message_budget=100, clock=Clock())
    store.begin_record()
    store.put("city|kept", {"v": 1}, 0, text='{"v":1}')
    store.begin_record()
    huge = {"vals": list(range(100))}
    try:
        store.put("city|huge", huge, 0, text=json.dumps(huge, separators=(",", ":")))
    except RejectedInput as exc:
        assert exc.reason == "too-large"
    else:
        raise AssertionError("a state larger than a changelog record was accepted")
    store.rollback_record()
    (delta,) = store.changelog_emits()
    store.commit()
    assert json.loads(delta.value["value"]) == {"put": {"city|kept": {"v": 1}}, "del": []}
    assert store.get("city|huge") is None
