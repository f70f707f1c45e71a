"""`citeplus replay`: move a stage's consumer groups back in time, or re-send the
raw dead letters of a source once its configuration is fixed.

Kafka only lets a group's offsets move while the group has no member, so the
stage is held stopped (a hold file the supervisor honours) while its offsets
are reset, then released.

`citeplus replay dead-letters --city C --source S` reads the restricted
``raw.dlq.v1`` (ingest's and anonymise's rejects, whole) and sends each letter of
that source through again: ingest's are parsed anew with today's city file (and
land on the raw topic ingest writes, ``raw.v2`` by default), anonymise's go back
where their bytes belong: a RawRecord (a v1 record, or one member of a ``raw.v2``
batch) on ``raw.v1``, a whole RawBatch on ``raw.v2`` at its partition. A marker per
letter, committed with what it replayed, makes each letter replay once.

Replaying a stage (moving its groups back) covers every topic the group has read,
``raw.v1`` and ``raw.v2`` alike.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.ingest.core import IngestCore, IngestTopics
from services.ingest.pseudonyms import LetterPseudonyms
from services.ingest.service import reference_attributes
from services.node import control
from services.runtime import dlq, wire
from services.runtime.batches import spec_for_batch
from services.runtime.cities import CityConfig, SourceConfig
from services.runtime.codec import Contracts, TopicCodec
from services.runtime.config import NodeConfig
from services.runtime.errors import CiteplusError, WireFormatError
from services.runtime.group_commit import OutgoingMessage, produce_outgoing
from services.runtime.kafka import make_consumer, make_producer, produce_bytes
from services.runtime.log_ends import committed_ends, read_to_ends
from services.runtime.topics import TopicName, companion


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
        partitions = consumer.list_topics(topic, timeout=15).topics[topic].partitions
        # The log's end once committed: a replay right after another one must see
        # that one's markers, or it would replay the same letters again.
        marks = committed_ends(node, consumer, topic, partitions)
        for message in read_to_ends(consumer, topic, marks, timeout_s=timeout_s, poll_s=0.5):
            letter = codec.decode(message.value())
            letters[letter["letter_id"] or f"offset-{message.offset()}"].append(letter)
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
    are put back on the raw topic they came from, as they were (see
    :func:`requeue_target`). Each replayed letter gets
    a ``replayed`` marker (stage ``replay``, same letter id) on the raw and the
    shared dead-letter topics, produced in the same transaction as what it
    replays: a letter is replayed exactly once, however often the command runs.
    """
    topics = topics or IngestTopics()
    config = cities[city].source(source) if city in cities else None
    if config is None:
        raise CiteplusError(f"unknown city {city!r}; known: {', '.join(sorted(cities))}")
    core = _replay_core(node, contracts, cities, topics)
    # The producer starts first: a replay of this source killed inside its transaction
    # left it open, holding back what a committed reader gets of the letters until
    # the transaction timeout; starting the producer fences and aborts it.
    producer = make_producer(
        node, transactional_id=f"citeplus.{node.node.id}.replay-dead-letters.{city}.{source}"
    )
    producer.init_transactions(30)
    letters = read_raw_letters(node, contracts, topics.raw_dead_letters)
    replayer = _LetterReplayer(
        producer,
        core,
        config,
        city,
        source,
        topics,
        contracts.codec(topics.raw_dead_letters),
        contracts.codec(topics.dead_letters),
        _batch_schema_id(contracts, topics.raw),
    )
    summary = DeadLetterReplay()
    for letter_id, parts in _letters_to_replay(letters, city, source, letter_ids):
        try:
            original = dlq.reassemble(parts)
        except ValueError as exc:
            summary.skipped.append(f"{letter_id}: {exc}")
            continue
        sent = replayer.replay(letter_id, parts[0], original)
        summary.accepted += sent.accepted
        summary.rejected += sent.rejected
        summary.requeued += sent.requeued
        summary.letters += 1
    return summary


def _replay_core(
    node: NodeConfig, contracts: Contracts, cities: dict[str, CityConfig], topics: IngestTopics
) -> IngestCore:
    """An ingest core that prepares messages (no sink: the replay produces them in
    its own transactions), with the city files as they are now."""

    return IngestCore(
        contracts,
        None,
        topics=topics,
        attributes=reference_attributes(cities),
        pseudonyms=LetterPseudonyms.of_state_dir(
            node.state_dir, {code: c.timezone for code, c in cities.items()}
        ),
    )


def _letters_to_replay(
    letters: dict[str, list[dict[str, Any]]],
    city: str,
    source: str,
    letter_ids: set[str] | None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The letters of this city source that have no ``replayed`` marker yet (and
    are among ``letter_ids`` when given), in the order they were read."""
    done = {lid for lid, parts in letters.items() if any(p["stage"] == "replay" for p in parts)}
    for letter_id, parts in letters.items():
        first = parts[0]
        if (first["city"], first["source"]) != (city, source) or letter_id in done:
            continue
        if letter_ids is not None and letter_id not in letter_ids:
            continue
        yield letter_id, parts


@dataclass(frozen=True)
class _Sent:
    """What one replayed letter sent again, as the summary counts it."""

    outgoing: list[OutgoingMessage]
    note: str
    accepted: int = 0
    rejected: int = 0
    requeued: int = 0


@dataclass(frozen=True)
class _LetterReplayer:
    """Sends one letter again with its markers, in a transaction of its own."""

    producer: Producer
    core: IngestCore
    config: SourceConfig
    city: str
    source: str
    topics: IngestTopics
    raw_codec: TopicCodec
    shared_codec: TopicCodec
    batch_schema_id: int | None  # of the raw topic's RawBatch contract, when it has one

    def replay(self, letter_id: str, first: dict[str, Any], original: bytes | None) -> _Sent:
        """What the letter becomes, and its ``replayed`` markers on the raw and the
        shared dead-letter topics, committed together."""
        self.producer.begin_transaction()
        sent = self._resend(first, original)
        for message in sent.outgoing:
            produce_outgoing(self.producer, message)
        marker = dlq.replayed_marker(
            first, f"replayed by citeplus replay dead-letters: {sent.note}"
        )
        city, source = self.city, self.source
        produce_bytes(
            self.producer,
            self.topics.raw_dead_letters,
            dlq.raw_dead_letter_key(city, source, letter_id),
            self.raw_codec.encode(marker),
        )
        produce_bytes(
            self.producer,
            self.topics.dead_letters,
            dlq.dead_letter_key("replay", city),
            self.shared_codec.encode({**marker, "redacted": True}),
        )
        self.producer.commit_transaction(60)
        return sent

    def _resend(self, first: dict[str, Any], original: bytes | None) -> _Sent:
        """ingest's letters are parsed anew with today's city file; a later stage's
        input goes back where it was."""
        if first["stage"] == "ingest":
            result = self.core.prepare(self.config, original or b"")
            return _Sent(
                result.messages,
                f"{result.accepted} rows accepted, {len(result.rejected)} rejected again",
                accepted=result.accepted,
                rejected=len(result.rejected),
            )
        value = original or b""
        message = requeue_target(first, value, self.topics.raw, self.batch_schema_id)
        return _Sent([message], f"the record is back on {message[0]}", requeued=1)


def _batch_schema_id(contracts: Contracts, raw_topic: str) -> int | None:
    """The schema id of ``raw_topic``'s values when they are RawBatch (raw.v2)."""
    codec = contracts.codec(raw_topic)
    return codec.schema_id if spec_for_batch(codec.spec.value) is not None else None


def requeue_target(
    letter: dict[str, Any], original: bytes, raw_topic: str, batch_schema_id: int | None
) -> OutgoingMessage:
    """Where a later stage's raw letter goes back, decided by what its bytes are:
    a whole RawBatch (its wire header names the raw.v2 contract) goes back on
    ``raw_topic`` at the partition it was read from, which keeps its entities where
    their raw.v1 keys put them; a RawRecord -- read from raw.v1, or one member of a
    batch, dead-lettered on its own -- goes on raw.v1, keyed by its entity."""
    key = letter["original_key"]
    if batch_schema_id is not None and _schema_id(original) == batch_schema_id:
        partition = letter.get("source_partition")
        if partition is None:  # the key says it too: city|source|partition
            partition = _partition_in_key(key)
        return (raw_topic, key, original, partition)
    return (companion(raw_topic, TopicName.RAW_V2, TopicName.RAW, fallback=""), key, original)


def _schema_id(value: bytes) -> int | None:
    try:
        return wire.read_header(value)
    except WireFormatError:
        return None


def _partition_in_key(key: bytes | None) -> int:
    tail = (key or b"").rsplit(b"|", 1)[-1]
    return int(tail) if tail.isdigit() else 0
