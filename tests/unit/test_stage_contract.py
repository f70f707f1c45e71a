"""The stage contract written once: stages declare their stores and the runtime
drives them; a dead letter's reason comes from one table; counts count only what
committed."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.runtime import batch_messages, processor
from services.runtime.errors import CiteplusError, RejectedInput, SchemaError, WireFormatError
from services.runtime.processor import REASONS, reason_of
from services.runtime.stage import BaseStage, Emit, InputMeta, Stage, StageStore, Tally
from services.runtime.state import BatchState, ChangelogStore


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RejectedInput("too-late", "x"), "too-late"),
        (WireFormatError("x"), "undecodable"),
        (SchemaError("x"), "unencodable-output"),
        (CiteplusError("x"), "rejected"),
        (KeyError("x"), "stage-error"),
    ],
)
def test_each_exception_has_the_reason_it_had(error: Exception, reason: str) -> None:
    assert reason_of(error) == reason


def test_the_table_ends_with_the_catch_all_and_no_row_hides_a_later_one() -> None:
    kinds = [kind for kind, _ in REASONS]
    assert kinds[-1] is Exception
    for i, kind in enumerate(kinds):
        assert not any(issubclass(kind, earlier) for earlier in kinds[:i])


def test_the_runner_probes_no_optional_member() -> None:
    assert "getattr(" not in inspect.getsource(processor.StageRunner)
    assert "getattr(" not in inspect.getsource(batch_messages)
    members = {"end_batch", "on_tick", "redact_key", "sensitive", "stores", "on_record_failed"}
    declared = set(Stage.__annotations__) | {n for n in dir(Stage) if not n.startswith("_")}
    assert members <= declared


class Totals(BaseStage):
    """A stateful stage as a newcomer writes one: stores declared, no hook forwarded."""

    def __init__(self, registry: CollectorRegistry):
        self.store = ChangelogStore("totals", "t.changelog")
        self.state = BatchState(self.store)
        counter = Counter("t_readings", "readings", ["service"], registry=registry)
        self.readings = Tally(counter, label="totals")
        self.stores = (self.store, self.state, self.readings)

    def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
        self.state.set(record["k"], (self.state.get(record["k"]) or 0) + record["n"], 0)
        self.readings.add("readings", record["n"])
        if record.get("poison"):
            raise RejectedInput("poison", "poisoned")
        return []

    def end_batch(self) -> Iterable[Emit]:
        self.state.flush()
        return []


def _run(stage: Totals, *records: dict[str, Any]) -> None:
    for record in records:
        try:
            list(stage.process(record, InputMeta("t", 0, 0, None, 0)))
        except RejectedInput:
            stage.on_record_failed()
    list(stage.end_batch())


def test_declared_stores_commit_abort_and_roll_back_without_a_hook_in_the_stage() -> None:
    registry = CollectorRegistry()
    stage = Totals(registry)
    _run(stage, {"k": "a", "n": 1}, {"k": "a", "n": 5, "poison": True}, {"k": "b", "n": 2})
    assert stage.readings.total("readings") == 0  # nothing counted before the commit
    stage.on_commit()
    assert (stage.store.get("a"), stage.store.get("b")) == (1, 2)  # the poisoned write undone
    assert stage.readings.total("readings") == 3  # and its readings not counted
    assert registry.get_sample_value("t_readings_total", {"service": "totals"}) == 3
    _run(stage, {"k": "a", "n": 10})
    stage.on_abort()  # the transaction failed: processed again later, counted then
    assert stage.store.get("a") == 1
    assert stage.readings.total("readings") == 3
    assert stage.readings.batch("readings") == 0


def test_a_store_gets_every_hook_in_order() -> None:
    calls: list[str] = []

    class Recording(StageStore):
        def __getattribute__(self, name: str) -> Any:
            if name in {"begin_record", "rollback_record", "commit", "abort", "forget", "restored"}:
                calls.append(name)
            return object.__getattribute__(self, name)

    class One(BaseStage):
        stores = (Recording(),)

        def transform(self, record: dict[str, Any], meta: InputMeta) -> Iterable[Emit]:
            return []

    stage = One()
    stage.on_assign([0])
    stage.process({}, InputMeta("t", 0, 0, None, 0))
    stage.on_record_failed()
    stage.on_commit()
    stage.on_abort()
    stage.on_revoke([0])
    assert calls == ["restored", "begin_record", "rollback_record", "commit", "abort", "forget"]
