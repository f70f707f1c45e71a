"""Delta records: a batch's state changes of one partition in one changelog record.

Why: a compacted changelog keeps one record per key, so a stage whose batch changed
1,000 entities wrote 1,000 records (normalise and energy-analytics wrote one per
single reading: the largest per-reading cost left, in the broker and the stages).
A delta record holds the whole batch's changes of a partition.

A delta's key is its own (never a stage's key), so compaction never drops it by
itself. Deltas are carried forward in rolling *cycles* and then tombstoned:

- a cycle writes deltas: the batch's changes, plus *rewrites* (the current value of
  keys that the previous cycle's deltas set; one per ``REWRITE_SHARE`` changes);
- once every such key has been rewritten (or is absent), the previous cycle's
  deltas are tombstoned, so compaction removes them.

A record may go once each key it mentions has a later record, or is absent by then
with no older record left to bring it back: a rewrite carries a present key past
its older deltas, and an absent key needs none. Replayed in offset order, the log
gives the same state before and after compaction (a key with a per-key record of
its own, written before deltas existed, is deleted with a per-key record too).

Time bound: a cycle that holds changes ends at most ``CYCLE_MAX_AGE_S`` after it
started (what is left is rewritten at once, on a batch or a tick), so a deleted
value is tombstoned within about two such ages even when input stops. Ages are on
the wall clock that also stamps each delta (``updated_at``): a new owner's cycle is
as old as the oldest delta it restored, however often the partition moves.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# A record key of a delta: a stage's keys never start with NUL (ChangelogStore refuses them).
DELTA_MARK = "\x00delta\x00"
REWRITE_SHARE = 4
CYCLE_MAX_AGE_S = 600.0

# The changelog's JSON text (json.dumps builds this encoder at every call).
JSON_TEXT = json.JSONEncoder(separators=(",", ":"))


def is_delta(record_key: str) -> bool:
    """Whether a changelog record key names a delta (not one of the stage's keys)."""
    return record_key.startswith(DELTA_MARK)


def delta_texts(puts: list[tuple[str, str]], deletes: list[str], budget: int) -> list[str]:
    """The JSON texts of one partition's changes (``puts``: key and value text),
    cut so that each text stays under ``budget`` characters where an entry allows."""
    texts: list[str] = []
    entries: list[str] = []
    dels: list[str] = []
    size = 0

    def cut() -> None:
        nonlocal size
        if entries or dels:
            texts.append('{"put":{' + ",".join(entries) + '},"del":' + JSON_TEXT.encode(dels) + "}")
        entries.clear()
        dels.clear()
        size = 0

    for key, text in puts:
        entry = JSON_TEXT.encode(key) + ":" + text
        if size and size + len(entry) > budget:
            cut()
        entries.append(entry)
        size += len(entry) + 1
    for key in deletes:
        entry_size = len(JSON_TEXT.encode(key)) + 1
        if size and size + entry_size > budget:
            cut()
        dels.append(key)
        size += entry_size
    cut()
    return texts


def read_delta(text: str) -> tuple[dict[str, Any], list[str]]:
    """A delta's values by key, and its deleted keys."""
    document = json.loads(text)
    return document["put"], document["del"]


@dataclass
class Cycle:
    """One partition's rolling cycle (see the module)."""

    started: float
    previous: list[str] = field(default_factory=list)  # delta keys tombstoned at its end
    to_rewrite: list[str] = field(default_factory=list)  # keys the previous deltas set
    position: int = 0  # to_rewrite[:position] are carried forward
    current: list[str] = field(default_factory=list)  # this cycle's delta keys
    mentioned: set[str] = field(default_factory=set)  # keys this cycle's deltas set
    fresh: bool = False  # this cycle holds changes, not only rewrites
    previous_fresh: bool = True  # unknown after a restore: assume so

    def due(self, now: float) -> bool:
        """Whether the cycle must end now, whatever is left to rewrite: it is old and
        a value changed in it or in the previous one (once only rewrites are left,
        nothing deleted can be held any more and the cycles rest)."""
        return now - self.started >= CYCLE_MAX_AGE_S and (self.fresh or self.previous_fresh)


@dataclass
class Step:
    """What one batch (or tick) does to a partition's cycle, applied once it commits."""

    partition: int
    position: int
    deltas: list[str]
    set_keys: list[str]
    fresh: bool
    ends: bool
    tombstones: list[str]

    def apply(self, cycle: Cycle, now: float) -> Cycle:
        """The cycle after this step's transaction committed."""
        if not self.ends:
            cycle.position = self.position
            cycle.current.extend(self.deltas)
            cycle.mentioned.update(self.set_keys)
            cycle.fresh = cycle.fresh or self.fresh
            return cycle
        mentioned = cycle.mentioned
        mentioned.update(self.set_keys)
        return Cycle(
            started=now,
            previous=cycle.current + self.deltas,
            to_rewrite=list(mentioned),
            previous_fresh=cycle.fresh or self.fresh,
        )


class DeltaKeys:
    """Delta record keys unique across instances and restarts of a stage."""

    def __init__(self) -> None:
        self._instance = uuid.uuid4().hex[:16]
        self._sequence = 0

    def next(self, partition: int) -> str:
        self._sequence += 1
        return f"{DELTA_MARK}{partition}\x00{self._instance}\x00{self._sequence}"


def plan_step(
    cycle: Cycle,
    partition: int,
    changes: int,
    changed: set[str],
    rewrite_text: Callable[[str], str | None],
    now: float,
) -> tuple[Step, list[tuple[str, str]]]:
    """The step of a batch with ``changes`` changes (keys ``changed``) in
    ``partition``, and the rewrites it carries (key, current value text).

    ``rewrite_text``: a key's current value text in this partition, or None (absent,
    or now kept in another partition): such a key needs no rewrite."""
    remaining = len(cycle.to_rewrite) - cycle.position
    quota = remaining if cycle.due(now) else math.ceil(changes / REWRITE_SHARE)
    rewrites: list[tuple[str, str]] = []
    position = cycle.position
    while len(rewrites) < quota and position < len(cycle.to_rewrite):
        key = cycle.to_rewrite[position]
        position += 1
        if key in changed:  # this batch's own change carries it forward
            continue
        text = rewrite_text(key)
        if text is not None:
            rewrites.append((key, text))
    ends = position >= len(cycle.to_rewrite)
    step = Step(
        partition=partition,
        position=position,
        deltas=[],
        set_keys=[key for key, _ in rewrites],
        fresh=changes > 0,
        ends=ends,
        tombstones=list(cycle.previous) if ends else [],
    )
    return step, rewrites


def restored_cycle(deltas: Iterable[tuple[str, tuple[list[str], float]]], now: float) -> Cycle:
    """The cycle of a partition just restored: every delta still on the topic (with
    the keys it sets and when it was written) becomes the previous cycle, to carry
    forward and tombstone; the cycle counts as started when the oldest was written."""
    previous: list[str] = []
    keys: set[str] = set()
    started = now
    for record_key, (set_keys, written) in deltas:
        previous.append(record_key)
        keys.update(set_keys)
        started = min(started, written)
    return Cycle(started=started, previous=previous, to_rewrite=list(keys))
