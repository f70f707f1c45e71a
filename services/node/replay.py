"""`citeplus replay`: move a stage's consumer groups back in time, or re-send the
raw dead letters of a source once its configuration is fixed.

Kafka only lets a group's offsets move while the group has no member, so the
stage is held stopped (a hold file the supervisor honours) while its offsets
are reset, then released.

`citeplus replay dead-letters --city C --source S` reads the restricted
``raw.dlq.v1`` (ingest's and anonymise's rejects, whole) and sends each letter of
that source through again: ingest's are parsed anew with today's city file,
anonymise's go back on ``raw.v1``. A marker per letter, committed with what it
replayed, makes each letter replay once.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from services.ingest.core import IngestCore, IngestTopics
from services.ingest.pseudonyms import LetterPseudonyms
from services.ingest.service import reference_attributes
from services.node import control
from services.runtime import dlq
from services.runtime.cities import CityConfig
from services.runtime.codec import Contracts
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError
from services.runtime.kafka import make_consumer, make_producer, produce_bytes


def stage_groups(admin: AdminClient, service: str) -> list[str]:
    """Consumer groups of a service: `citeplus.<service>` and `citeplus.<service>.*`."""
    listing = admin.list_consumer_groups(request_timeout=15).result()
    names = [g.group_id for g in listing.valid]
    prefix = f"citeplus.{service}"
    return sorted(
        n for n in names if n == prefix or n.startswith(prefix + ".") or n.startswith(prefix + "-")
    )


def _wait_empty(admin: AdminClient, groups: list[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_consumer_groups(groups, request_timeout=15)
        if all(not future.result().members for future in described.values()):
            return
        time.sleep(1.0)
    raise CiteplusError(f"groups {groups} still have members; is another instance running?")


def replay(
    node: NodeConfig,
    service: str,
    *,
    from_time: dt.datetime | None = None,
    from_offset: int | None = None,
) -> list[str]:
    admin = AdminClient({"bootstrap.servers": node.kafka.bootstrap})
    groups = stage_groups(admin, service)
    if not groups:
        raise CiteplusError(f"no consumer group for {service!r} yet: has it ever run?")
    hold = control.hold_dir(node) / service
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.touch()
    moved: list[str] = []
    try:
        _wait_empty(admin, groups)
        for group in groups:
            committed = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=15
            )[group].result()
            partitions = [
                TopicPartition(tp.topic, tp.partition) for tp in committed.topic_partitions
            ]
            if not partitions:
                continue
            targets = _targets(node, partitions, from_time, from_offset)
            admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, targets)], request_timeout=15
            )[group].result()
            moved += [f"{group}: {tp.topic}[{tp.partition}] -> {tp.offset}" for tp in targets]
    finally:
        hold.unlink(missing_ok=True)
    return moved


def _targets(
    node: NodeConfig,
    partitions: list[TopicPartition],
    from_time: dt.datetime | None,
    from_offset: int | None,
) -> list[TopicPartition]:
    consumer = make_consumer(node, group_id="citeplus.replay-lookup")
    try:
        if from_time is not None:
            ms = int(from_time.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, ms) for tp in partitions], timeout=15
            )
            targets = []
            for tp in found:
                if tp.offset < 0:  # nothing at or after that time: the end
                    _, high = consumer.get_watermark_offsets(tp, timeout=15)
                    tp = TopicPartition(tp.topic, tp.partition, high)
                targets.append(tp)
            return targets
        targets = []
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=15)
            targets.append(
                TopicPartition(tp.topic, tp.partition, min(max(from_offset or 0, low), high))
            )
        return targets
    finally:
        consumer.close()


# -- raw dead letters ------------------------------------------------------------------


@dataclass
class DeadLetterReplay:
    """What `citeplus replay dead-letters` did: letters replayed, and for ingest's
    the rows the fixed parser now accepted or rejected again (new letters)."""

    letters: int = 0
    accepted: int = 0
    rejected: int = 0
    requeued: int = 0  # anonymise's: RawRecords put back on raw
    skipped: list[str] = field(default_factory=list)


def read_raw_letters(
    node: NodeConfig, contracts: Contracts, topic: str, timeout_s: float = 30.0
) -> dict[str, list[dict[str, Any]]]:
    """Every committed letter of the raw dead-letter topic, grouped by letter id."""
    consumer = make_consumer(node, group_id=f"citeplus.replay-dead-letters.{uuid.uuid4().hex}")
    codec = contracts.codec(topic)
    letters: dict[str, list[dict[str, Any]]] = defaultdict(list)
    try:
        metadata = consumer.list_topics(topic, timeout=15).topics[topic]
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=15)[1] for tp in partitions
        }
        consumer.assign(partitions)
        pending = {p for p, high in ends.items() if high > 0}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is not None:
                    continue
                letter = codec.decode(message.value())
                letters[letter["letter_id"] or f"offset-{message.offset()}"].append(letter)
            for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
        if pending:
            raise CiteplusError(f"{topic}: partitions {sorted(pending)} not read to their end")
    finally:
        consumer.close()
    return letters


def replay_dead_letters(
    node: NodeConfig,
    contracts: Contracts,
    cities: dict[str, CityConfig],
    *,
    city: str,
    source: str,
    topics: IngestTopics | None = None,
    letter_ids: set[str] | None = None,
) -> DeadLetterReplay:
    """Re-send the raw dead letters of one city source once its config is fixed.

    ingest's letters are parsed again from their original bytes with the city
    file as it is now (what was rejected for a wrong decimal mark, encoding or
    column name now passes, or is rejected again with a new letter); anonymise's
    are RawRecords put back on ``raw.v1`` as they were. Each replayed letter gets
    a ``replayed`` marker (stage ``replay``, same letter id) on the raw and the
    shared dead-letter topics, produced in the same transaction as what it
    replays: a letter is replayed exactly once, however often the command runs.
    """

    topics = topics or IngestTopics()
    config = cities[city].source(source) if city in cities else None
    if config is None:
        raise CiteplusError(f"unknown city {city!r}; known: {', '.join(sorted(cities))}")
    core = IngestCore(
        contracts,
        None,
        topics=topics,
        attributes=reference_attributes(cities),
        pseudonyms=LetterPseudonyms.of_state_dir(
            node.state_dir, {code: c.timezone for code, c in cities.items()}
        ),
    )
    letters = read_raw_letters(node, contracts, topics.raw_dead_letters)
    done = {lid for lid, parts in letters.items() if any(p["stage"] == "replay" for p in parts)}
    summary = DeadLetterReplay()
    producer = make_producer(
        node, transactional_id=f"citeplus.{node.node.id}.replay-dead-letters.{city}.{source}"
    )
    producer.init_transactions(30)
    raw_codec = contracts.codec(topics.raw_dead_letters)
    shared_codec = contracts.codec(topics.dead_letters)
    for letter_id, parts in letters.items():
        first = parts[0]
        if (first["city"], first["source"]) != (city, source) or letter_id in done:
            continue
        if letter_ids is not None and letter_id not in letter_ids:
            continue
        try:
            original = dlq.reassemble(parts)
        except ValueError as exc:
            summary.skipped.append(f"{letter_id}: {exc}")
            continue
        producer.begin_transaction()
        if first["stage"] == "ingest":
            result = core.prepare(config, original or b"")
            outgoing = result.messages
            summary.accepted += result.accepted
            summary.rejected += len(result.rejected)
            note = f"{result.accepted} rows accepted, {len(result.rejected)} rejected again"
        else:  # a stage reading raw.v1: its input, back where it was
            outgoing = [(topics.raw, first["original_key"], original or b"")]
            summary.requeued += 1
            note = f"the record is back on {topics.raw}"
        for topic, key, value in outgoing:
            produce_bytes(producer, topic, key, value)
        marker = dlq.replayed_marker(first, f"replayed by citeplus replay dead-letters: {note}")
        produce_bytes(
            producer,
            topics.raw_dead_letters,
            dlq.raw_dead_letter_key(city, source, letter_id),
            raw_codec.encode(marker),
        )
        produce_bytes(
            producer,
            topics.dead_letters,
            dlq.dead_letter_key("replay", city),
            shared_codec.encode({**marker, "redacted": True}),
        )
        producer.commit_transaction(60)
        summary.letters += 1
    return summary
