"""energy.regrouped.v2 messages: the readings of many meters in one message.

Observations are keyed by meter and a city's table needs all its meters, so every
energy reading first goes to its city and carrier's partition of the regrouped topic
and is aggregated when it comes back from there. One message per meter
(``energy.regrouped.v1``) cost an Avro encode, a broker write, a decode and a runner
pass per single reading: measured on the whole node, the regrouped topic was one of
the three and a half messages the broker took per single reading. A v2 message
carries, column-wise (``ObservationBatch``), the parts of one input message bound for
one group and source partition, in their order.

The message's key stays ``city|carrier|source partition``: the aggregate follows each
observations partition's event time (its watermark), and a member's own key names
only its meter, so the runner hands a member the key of the message it came in
(``InputMeta.batch_key``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, NamedTuple

from services.runtime.batches import Batching, batching
from services.runtime.kafka import MAX_MESSAGE_BYTES
from services.runtime.stage import Emit

# A message's encoded size stays under this (the broker takes MAX_MESSAGE_BYTES), from
# an upper bound of each part's share (:func:`part_bytes`); a single part past it goes
# alone, as in v1. A record split into many small parts (its unknown intervals) is
# many members, each with fields of its own: the bound counts them, not only readings.
MESSAGE_BUDGET = MAX_MESSAGE_BYTES * 3 // 4
# Upper bounds, bytes: a reading (value and replaced value 8 each, time up to 10,
# quality and version up to 5 each) and a member's own fields (start, step, position,
# dictionary codes, array counts), its strings counted apart at 4 bytes a character.
READING_BYTES = 36
MEMBER_BYTES = 160


class RegroupedPart(NamedTuple):
    """One energy series bound for the regrouped topic: the message key (its city,
    carrier and source partition), the group's regrouped partition, the Observation."""

    key: str
    partition: int
    record: dict[str, Any]


def part_bytes(record: dict[str, Any]) -> int:
    """An upper bound of what one part adds to an ObservationBatch's encoding."""
    strings = sum(
        len(record.get(name) or "")
        for name in ("entity_pseudonym", "entity_type", "zone", "sector", "key_epoch")
    )
    return MEMBER_BYTES + 4 * strings + READING_BYTES * len(record["values"])


@cache
def observation_batching() -> Batching:
    """How Observations travel many to a message (services/runtime/batches.py)."""
    return batching("ObservationBatch")


def regrouped_messages(parts: Iterable[RegroupedPart], topic: str) -> list[Emit]:
    """Ready ObservationBatch emits for ``parts``: one message per key as long as its
    members share their batch fields and stay under MESSAGE_BUDGET bytes; each key's
    parts keep their order (a meter's readings replace one another in the order they
    came)."""
    found = observation_batching()
    runs: dict[tuple[str, int], list[list[dict[str, Any]]]] = {}
    sizes: dict[tuple[str, int], int] = {}
    for part in parts:
        lane = (part.key, part.partition)
        chunks = runs.setdefault(lane, [[]])
        size = part_bytes(part.record)
        last = chunks[-1]
        if last and (
            sizes[lane] + size > MESSAGE_BUDGET
            or found.group_key(last[-1]) != found.group_key(part.record)
        ):
            chunks.append(last := [])
            sizes[lane] = 0
        last.append(part.record)
        sizes[lane] = sizes.get(lane, 0) + size
    return [
        Emit(
            topic,
            key,
            found.batch_of(chunk),
            readings=sum(len(record["values"]) for record in chunk),
            partition=partition,
            batched=True,
        )
        for (key, partition), chunks in runs.items()
        for chunk in chunks
    ]
