"""Positions of a subscription in its feeds, as DeliveryState keeps them.

A feed is one federation Subscribe stream: a node and a topic. A position is the
next offset of every partition of that topic (what a RecordBatch carries). In
``DeliveryState.positions`` it is ``{node: {topic: {"partitions": {"<p>": offset}}}}``
(the dataset level of the shared layout is the topic: one stream carries every
dataset of it). ``pending`` beside it remembers the notification in flight: its id
and the offsets it ends at, so that after a restart the same records go out again
under the same id.

Pure functions: the delivery worker and its tests use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FeedKey = tuple[str, str]  # (node, topic)
Offsets = dict[int, int]  # partition -> next offset
Positions = dict[FeedKey, Offsets]


def from_state(raw: Mapping[str, Any]) -> Positions:
    """DeliveryState.positions as offsets per feed (unknown shapes are left out)."""
    found: Positions = {}
    for node, topics in (raw or {}).items():
        for topic, position in (topics or {}).items():
            partitions = (position or {}).get("partitions") or {}
            found[(node, topic)] = {int(p): int(o) for p, o in partitions.items()}
    return found


def to_state(positions: Positions) -> dict[str, dict[str, dict[str, Any]]]:
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for (node, topic), offsets in sorted(positions.items()):
        partitions = {str(p): o for p, o in sorted(offsets.items())}
        state.setdefault(node, {})[topic] = {"topic": topic, "partitions": partitions}
    return state


def of_message(position: Any) -> Offsets:
    """A federation Position message as offsets."""
    return {e.partition: e.next_offset for e in position.partitions}


def advance(current: Offsets, seen: Offsets) -> Offsets:
    """Never backwards: the larger offset of each partition."""
    merged = dict(current)
    for p, o in seen.items():
        merged[p] = max(o, merged.get(p, o))
    return merged


def lowest(positions: Iterable[Offsets]) -> Offsets | None:
    """Where a shared feed must start so that every subscription gets what it lacks:
    per partition the lowest offset (a partition one does not know: from its start,
    which the node does when the position leaves it out)."""
    listed = list(positions)
    if not listed:
        return None
    partitions = set().union(*listed)
    low: Offsets = {}
    for p in partitions:
        if all(p in offsets for offsets in listed):
            low[p] = min(offsets[p] for offsets in listed)
    return low


def after_delivery(seen: Offsets, remaining: Iterable[tuple[int, int]]) -> Offsets:
    """The position once a notification succeeded: what the feed had offered (``seen``),
    but in each partition no further than the first record not yet delivered."""
    position = dict(seen)
    for p, o in remaining:
        if o < position.get(p, o + 1):
            position[p] = o
    return position


def reached(seen: Offsets, end: Offsets) -> bool:
    """Has the feed offered everything before ``end`` (a pending notification's end)?"""
    return all(seen.get(p, -1) >= o for p, o in end.items())
