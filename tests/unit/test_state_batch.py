"""The state layers a stage writes through, without a broker: what a batch sees,
what a rejected record leaves behind, what the changelog receives."""

from __future__ import annotations

from services.runtime.state import BatchState, ChangelogStore

TOPIC = "stage.state.v1"


def changelog(emits) -> list[tuple[str, str | None]]:
    """(key, value text) of each record; a deletion is a Kafka tombstone (no value),
    keyed ``store|key``."""
    return [
        (e.key.split("|", 1)[1], None) if e.value is None else (e.value["key"], e.value["value"])
        for e in emits
    ]


def test_a_batch_writes_each_key_once_with_its_last_value() -> None:
    store = ChangelogStore("s", TOPIC)
    batch = BatchState(store)
    for n in range(500):
        batch.set("day|lyon", {"n": n}, partition=2)
    batch.set("day|nice", {"n": 1}, partition=0)
    batch.delete("day|nice", partition=0)
    batch.flush()
    emits = store.changelog_emits()
    assert changelog(emits) == [("day|lyon", '{"n":499}'), ("day|nice", None)]
    assert [e.partition for e in emits] == [2, 0]
    assert store.get("day|lyon") == {"n": 499} and store.get("day|nice") is None
    store.commit()
    assert store.live_keys() == ["day|lyon"] and len(store) == 1


def test_a_rejected_record_leaves_no_change_behind() -> None:
    store = ChangelogStore("s", TOPIC)
    batch = BatchState(store)
    batch.begin_record()
    batch.set("a", 1, 0)
    batch.begin_record()
    batch.set("a", 2, 0)
    batch.set("b", 3, 0)
    batch.rollback_record()
    assert batch.get("a") == 1 and batch.get("b") is None
    batch.flush()
    assert changelog(store.changelog_emits()) == [("a", "1")]


def test_live_keys_see_the_batch_and_forget_what_it_deletes() -> None:
    store = ChangelogStore("s", TOPIC)
    store.put("kept", 1, 0)
    store.put("gone", 2, 1)
    store.commit()
    store.delete("gone", 1)
    store.put("new", 3, 0)
    assert sorted(store.live_keys()) == ["kept", "new"]
    store.abort()
    assert sorted(store.live_keys()) == ["gone", "kept"]
    store.forget([1])
    assert store.live_keys() == ["kept"]
