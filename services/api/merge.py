"""Merging the answers of several nodes into one page (pure).

Each node returns its first ``offset + limit`` entities in the agreed order (city,
entity type, entity key); sorted together and cut at ``offset`` they give the same
page whatever the number of nodes or the speed of each, so paging across a federation
is stable. The count is the sum of the nodes' totals: cities never overlap between
nodes (an entity seen twice, should a city be misconfigured on two nodes, is kept once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

ANSWERED = "answered"
OUTCOMES = ("answered", "timed-out", "refused", "unreachable", "failed")


@dataclass(frozen=True)
class NodeStatus:
    """How one node fared: an outcome of :data:`OUTCOMES` (PeerOutcome of the proto),
    and the gRPC status name and message when it did not answer in full."""

    node: str
    outcome: str
    status: str = ""
    message: str = ""


@dataclass(frozen=True)
class NodeAnswer:
    status: NodeStatus
    items: Sequence[Any] = ()  # Entity or TemporalEntity messages
    total: int = 0


@dataclass(frozen=True)
class Merged:
    items: tuple[Any, ...] = ()
    total: int = 0
    nodes: tuple[NodeStatus, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return all(n.outcome == ANSWERED for n in self.nodes)

    @property
    def answered(self) -> bool:
        return any(n.outcome == ANSWERED for n in self.nodes)


def sort_key(item: Any) -> tuple[str, str, str]:
    """(city, entity type, entity key) of an Entity or of a TemporalEntity's entity."""
    entity = item if isinstance(item.entity, str) else item.entity
    return (entity.city, entity.entity_type, entity.entity)


def merge(answers: Iterable[NodeAnswer], offset: int, limit: int, key=sort_key) -> Merged:
    """One page of ``limit`` items after ``offset`` over every node's answer."""
    answers = list(answers)
    seen: dict[tuple[str, str, str], Any] = {}
    for answer in answers:
        for item in answer.items:
            seen.setdefault(key(item), item)
    ordered = [seen[k] for k in sorted(seen)]
    return Merged(
        items=tuple(ordered[offset : offset + limit]),
        total=sum(a.total for a in answers if a.status.outcome == ANSWERED),
        nodes=tuple(sorted((a.status for a in answers), key=lambda s: s.node)),
    )


def peers_header(nodes: Iterable[NodeStatus]) -> str:
    """``Citeplus-Peers: lyon=answered, paris=timed-out`` (every node asked, in order)."""
    return ", ".join(f"{n.node}={n.outcome}" for n in nodes)
