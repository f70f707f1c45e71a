"""Attacker's tests: a regrouped message aggregated together
(``EnergyStage._aggregate_together``) must give exactly what its members taken one by
one give (``_aggregate`` per member under the message's savepoint, or each alone
after a refusal), whatever the message's source partition, the group's watermarks
and the message's members. Messages here are written straight to the regrouped
topic, with the key and the source partition they name, as the runner reads them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.energy.many_meters import OneDayMembers, watermark_path
from services.energy.regrouped import observation_batching
from services.energy.stage import EnergyStage, EnergyTopics
from services.runtime.batch_messages import member_input
from services.runtime.config import NodeConfig
from services.runtime.errors import RejectedInput
from services.runtime.outbox import member_key
from services.runtime.processor import InputMeta
from testkit.energy import FakeContracts, energy_observation

US = 1_000_000
HOUR = 3600 * US
DAY = 24 * HOUR
START = 1_763_766_000_000_000  # 2025-11-22 00:00 in Paris
TOPICS = EnergyTopics(observation_batches="observations.v2")
FOUND = observation_batching()


def member(meter: str, start: int, values: list[float], step: int = 600) -> dict[str, Any]:
    """A regrouped member as energy-analytics writes it (carrier, zone, sector filled)."""
    return energy_observation(meter, "Z1", start, values, step_seconds=step)


class Runner:
    """One stage fed regrouped messages as the runner feeds them: ``whole`` tries
    ``process_batch`` under one savepoint first (its writes undone when it gives
    None), else every member goes through ``process`` with a savepoint of its own."""

    def __init__(self, *, whole: bool, **kwargs: Any):
        kwargs.setdefault("lateness_us", 48 * HOUR)
        kwargs.setdefault("partitions", 1)
        kwargs.setdefault("clock", lambda: 0)
        self.whole = whole
        self.stage = EnergyStage(TOPICS, node=NodeConfig(), contracts=FakeContracts(), **kwargs)
        self.offset = 0
        self.latest: dict[str, Any] = {}
        self.released: dict[str, Any] = {}
        self.dead: Counter[str] = Counter()
        self.taken_whole = 0

    def transaction(self, *messages: tuple[str, list[dict[str, Any]]], ts_ms: int = 0) -> None:
        """One transaction of regrouped messages, each (message key, members)."""
        emitted: list[Any] = []
        for key, members in messages:
            (batch,) = FOUND.implode(members)
            self.offset += 1
            meta = InputMeta(TOPICS.regrouped, 0, self.offset, key.encode(), ts_ms)
            emitted += self._message(batch, meta)
        emitted += list(self.stage.end_batch())
        self.stage.on_commit()
        self._collect(emitted)

    def tick(self) -> None:
        emitted = list(self.stage.on_tick())
        self.stage.on_commit()
        self._collect(emitted)

    def _message(self, batch: dict[str, Any], meta: InputMeta) -> list[Any]:
        if self.whole:
            for store in self.stage.stores:
                store.begin_record()
            fast = self.stage.process_batch(batch, meta)
            if fast is not None:
                self.taken_whole += 1
                return fast
            self.stage.on_record_failed()
        out: list[Any] = []
        for one in FOUND.explode(batch):
            where = member_input(meta, member_key("Observation", one).encode())
            try:
                out += list(self.stage.process(one, where))
            except RejectedInput as exc:
                self.stage.on_record_failed()
                self.dead[exc.reason] += 1
        return out

    def _collect(self, emitted: list[Any]) -> None:
        for emit in emitted:
            if emit.topic == TOPICS.released:
                self.released[emit.key] = emit.value
            elif emit.topic == TOPICS.aggregates:
                self.latest[emit.key] = emit.value
            elif emit.topic == TOPICS.dead_letters:
                self.dead[emit.value["reason"]] += 1

    def outcome(self) -> tuple[Any, ...]:
        return (
            dict(self.stage.store._committed),
            self.latest,
            self.released,
            self.dead,
            self.stage.readings_aggregated,
        )


def both(**kwargs: Any) -> tuple[Runner, Runner]:
    return Runner(whole=True, **kwargs), Runner(whole=False, **kwargs)


def test_a_lagging_partitions_first_member_sees_the_watermark_of_the_others() -> None:
    """Two source partitions; partition 1 read five days ahead while partition 0,
    never heard, holds the watermark at the group's earliest reading. Partition 0's
    first reading starts more than the skew before partition 1's latest: taken alone,
    it lowers the earliest reading first, partition 0 (still unheard) drops out of
    the skew window, and the watermark it sees is partition 1's: its day closed more
    than the lateness ago (too late, not aggregated). The message aggregated together
    must refuse it too: the watermark path holds (heard at its end, earliest at its
    start) and (unheard, the old earliest), not (unheard, its start)."""
    fast, slow = both(partitions=2)
    first = START + 12 * HOUR  # the group's earliest reading, from partition 1
    top = first + 5 * DAY + 600 * US  # partition 1's latest end
    lagging = top - 7 * DAY - HOUR  # 2025-11-20 11:10 local, one 2 h reading
    for runner in (fast, slow):
        runner.transaction(("lyon|electricity|1", [member("m1", first, [1.0])]))
        runner.transaction(("lyon|electricity|1", [member("m2", top - 600 * US, [1.0])]))
        runner.transaction(("lyon|electricity|0", [member("m3", lagging, [2.0], step=7200)]))
    assert slow.dead == Counter({"too-late": 1})  # the reference: refused
    assert fast.outcome() == slow.outcome()


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from("0123"), st.integers(0, 100), max_size=4),
    st.integers(0, 100),
    st.sampled_from("0123"),
    st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)), min_size=1, max_size=12),
)
@example({"1": 100}, 90, "0", [(70, 15)])  # unheard "0" leaves the window at 70: sees 100
def test_no_member_alone_sees_a_watermark_above_the_paths(
    partitions, earliest, source, spans
) -> None:
    """The watermark ``_aggregate`` checks a member's days against is computed after
    the member's start lowered the group's earliest reading and before its end moves
    its source partition: ``_watermark(marks before it, min(earliest, its start))``.
    ``_stays_open`` keeps every day open under the path's highest watermark, so no
    member may see a higher one. (test_energy_many_meters.py's model of the members
    in turn computes it with the earliest before the member, which the stage does not.)"""
    stage = Runner(whole=True, partitions=4, source_skew_us=20).stage
    marks = {k: max(v, earliest) for k, v in partitions.items()}  # every end >= earliest
    starts = np.array([max(s, 0) for s, _ in spans], dtype=np.int64)
    ends = np.array([s + n for s, n in spans], dtype=np.int64)
    members = OneDayMembers("electricity", [], [], [], starts, ends, [], [])
    path = watermark_path(marks, earliest, source, members, stage._watermark)
    low, alone = earliest, []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        low = min(low, start)  # as _aggregate: earliest lowered, then the watermark
        if marks:
            alone.append(stage._watermark(marks, low))
        marks = {**marks, source: max(end, marks.get(source, 0))}
    assert max(alone, default=0) <= path.highest
