"""A request's RawRecords as raw messages: one per entity on raw.v1, many entities
per message on raw.v2 (the version is the configured raw topic's contract).

On raw.v1 a request of 1,000 single readings from 1,000 sensors is 1,000 messages,
and every later stage pays a decode, its bookkeeping and an encode per message. On
raw.v2 the same RawRecords travel many to a message (services/runtime/batches.py),
one message per partition and shared fields: at most a handful per request.

Where a member goes must not depend on the contract version: an entity's data
stays on one partition and in order, and anonymise's per-partition state
(``anonymise.state.v1``) follows the raw partition of the entity. So a member is
placed by :func:`entity_partition` of its raw.v1 key -- the partition librdkafka
gives that key on raw.v1 -- and every member of one message shares it; the
message carries that partition explicitly (its own key, ``city|source|partition``,
only documents it).

Pure: records in, encoded messages out; the caller commits them with the rest of
the request in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from services.runtime.batches import batching, entity_partition, spec_for_batch
from services.runtime.codec import TopicCodec
from services.runtime.errors import OversizedBatch
from services.runtime.group_commit import OutgoingMessage
from services.runtime.kafka import MAX_MESSAGE_BYTES

MEMBER = "RawRecord"
# A split aims under the limit with room to spare: members differ in size.
_SPLIT_MARGIN = 0.8


def raw_messages(
    keyed: Sequence[tuple[str, dict[str, Any]]],
    codec: TopicCodec,
    *,
    limit: int = MAX_MESSAGE_BYTES,
) -> list[OutgoingMessage]:
    """The messages carrying ``keyed`` ((raw.v1 key, RawRecord) pairs of one request)
    on ``codec``'s topic: RawBatch messages when its contract is the batch form,
    one RawRecord message per entity otherwise (a caller configured with raw.v1
    keeps getting raw.v1)."""
    if spec_for_batch(codec.spec.value) is not None:
        return raw_batch_messages(keyed, codec, limit=limit)
    return raw_record_messages(keyed, codec, limit=limit)


def raw_record_messages(
    keyed: Sequence[tuple[str, dict[str, Any]]],
    codec: TopicCodec,
    *,
    limit: int = MAX_MESSAGE_BYTES,
) -> list[OutgoingMessage]:
    """One raw.v1 message per entity, keyed by it (the partitioner places it)."""
    messages: list[OutgoingMessage] = []
    for key, record in keyed:
        encoded = codec.encode(record)
        if len(encoded) > limit:
            raise _oversized(record, len(encoded), limit)
        messages.append((codec.topic, key, encoded))
    return messages


def batch_key(city: str, source: str, partition: int) -> str:
    """What a raw.v2 message is keyed by (deploy/topics.yaml): it documents the
    partition; the partition itself is given explicitly when producing."""
    return f"{city}|{source}|{partition}"


def by_partition(
    keyed: Sequence[tuple[str, dict[str, Any]]], partitions: int
) -> dict[int, list[dict[str, Any]]]:
    """Records grouped by the partition of their raw.v1 key, in first-seen order of
    the partitions and, within one, in the request's order."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for key, record in keyed:
        groups.setdefault(entity_partition(key, partitions), []).append(record)
    return groups


def raw_batch_messages(
    keyed: Sequence[tuple[str, dict[str, Any]]],
    codec: TopicCodec,
    *,
    limit: int = MAX_MESSAGE_BYTES,
) -> list[OutgoingMessage]:
    """The raw.v2 messages carrying ``keyed`` ((raw.v1 key, RawRecord) pairs of one
    request): one per (partition, shared fields, column signature), each split
    further into parts of at most ``limit`` bytes. One entity whose rows alone
    exceed ``limit`` refuses the whole request (OversizedBatch), as on raw.v1."""
    messages: list[OutgoingMessage] = []
    for partition, records in by_partition(keyed, codec.spec.partitions).items():
        for batch in batching(MEMBER).implode(records):
            for encoded in _fitted(batch, codec, limit):
                key = batch_key(batch["city"], batch["source"], partition)
                messages.append((codec.topic, key, encoded, partition))
    return messages


def _fitted(batch: dict[str, Any], codec: TopicCodec, limit: int) -> list[bytes]:
    """``batch`` encoded, cut into consecutive runs of members that each fit in
    ``limit`` bytes (member order kept, so one entity's order is kept)."""
    encoded = codec.encode(batch)
    if len(encoded) <= limit:
        return [encoded]
    members = batching(MEMBER).explode(batch)
    if len(members) == 1:
        raise _oversized(members[0], len(encoded), limit)
    parts = max(2, math.ceil(len(encoded) / (limit * _SPLIT_MARGIN)))
    size = math.ceil(len(members) / parts)
    out: list[bytes] = []
    for start in range(0, len(members), size):
        (piece,) = batching(MEMBER).implode(members[start : start + size])
        out.extend(_fitted(piece, codec, limit))
    return out


def _oversized(member: dict[str, Any], size: int, limit: int) -> OversizedBatch:
    # No entity id in the text (the CLI prints it, logs may keep it); the sender
    # reads its own entity in the 413 answer's `entity`.
    return OversizedBatch(
        f"an entity has {member['row_count']:,} rows in this batch, {size:,} bytes once "
        f"encoded: more than the {limit:,} one message may carry; send fewer rows per "
        "entity in a batch (e.g. a day of readings per meter). Nothing of this batch was kept.",
        entity=member["entity_id"],
        rows=member["row_count"],
        size=size,
        limit=limit,
    )
