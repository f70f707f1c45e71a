"""Where a single reading's latency goes, hop by hop, for bench/pipeline.py's latency
runs: the figure alone (scheduled send -> `landed_at`) says how long, not where.

Each request's batch keeps its lineage id on its way (raw.v2, anonymised.v2,
observations.v2, then the `observations` table), and each Kafka message carries the
time its producer created it. So, per request, four hops:

- ``ingest``: scheduled send -> its raw.v2 message created (HTTP, parsing, the
  group-commit producer's wait);
- ``anonymise``: raw.v2 created -> anonymised.v2 created (ingest's transaction
  commit, anonymise's fetch, linger and work);
- ``normalise``: anonymised.v2 created -> observations.v2 created (likewise);
- ``publish``: observations.v2 created -> `landed_at` (normalise's commit, the
  sink's fetch, its flush wait and the insert).

A message's create time is set when the producer is handed the message, inside the
stage's transaction: a hop therefore holds the previous stage's commit. Clocks: all
on this machine (Kafka's create time and ClickHouse's `now64` read the same clock).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from itertools import pairwise

from bench import bare
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from testkit.kafka import read_to_end

TOPICS = ("raw.v2", "anonymised.v2", "observations.v2")
HOPS = ("ingest", "anonymise", "normalise", "publish")


@dataclass(frozen=True)
class Hops:
    """Per hop, the seconds each request spent in it (requests seen on every topic)."""

    seconds: dict[str, list[float]]

    def line(self) -> str:
        """``hop p50/p99`` for each hop, in ms, on one line."""
        parts = []
        for hop in HOPS:
            ranked = sorted(self.seconds.get(hop) or [float("nan")])
            p50 = statistics.median(ranked)
            p99 = ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))]
            parts.append(f"{hop} {p50 * 1000:,.0f}/{p99 * 1000:,.0f}")
        return "p50/p99 ms per hop: " + ", ".join(parts)


def created_times(
    node: NodeConfig, contracts: Contracts, topic: str, lineages: set[str]
) -> dict[str, float]:
    """{lineage id: create time (epoch s) of the last committed message on ``topic``
    that carries it (a request is through a hop when all its parts are)}, reading the
    whole topic once, from its beginning."""
    decode = bare.decoder(contracts.codec(topic))
    found: dict[str, float] = {}
    for message in read_to_end(node, topic, timeout_s=120):
        lineage = decode(message.value())["lineage_id"]
        if lineage in lineages:  # a request split over partitions: its last part
            at = message.timestamp()[1] / 1000
            found[lineage] = max(at, found.get(lineage, at))
    return found


def hops(
    node: NodeConfig,
    contracts: Contracts,
    sent: dict[str, float],
    landed: dict[str, float],
) -> Hops:
    """Each landed request's four hops (``sent``: lineage -> scheduled send time;
    ``landed``: lineage -> its last reading's `landed_at`)."""
    wanted = set(landed)
    created = [created_times(node, contracts, topic, wanted) for topic in TOPICS]
    seconds: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for lineage in wanted:
        if not all(lineage in times for times in created):
            continue
        points = [sent[lineage], *(times[lineage] for times in created), landed[lineage]]
        for hop, (a, b) in zip(HOPS, pairwise(points), strict=True):
            seconds[hop].append(b - a)
    return Hops(seconds)
