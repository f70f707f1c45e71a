"""The ingest use case, independent of HTTP or files: a payload of one city
source becomes RawRecords on ``raw`` and dead letters on ``dlq``, committed
together, and a result that says what was accepted and what was not and why."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.ingest.batch import EntityRows, Rejection
from services.ingest.formats import parse_payload
from services.ingest.formats.csv_format import read_csv
from services.ingest.formats.csv_singles import SingleReadings, singles_of
from services.ingest.letter_cap import MAX_LETTERS_PER_BATCH, summary_letter
from services.ingest.limits import excerpt
from services.ingest.pseudonyms import LetterPseudonyms
from services.ingest.raw_batches import raw_batches
from services.ingest.raw_columns import single_reading_batches
from services.ingest.records import declared_fields, raw_key, raw_record, rejection_letters
from services.ingest.shards import batch_messages, is_batch_topic, raw_record_messages
from services.runtime import dlq
from services.runtime.cities import SourceConfig
from services.runtime.codec import Contracts
from services.runtime.group_commit import GroupCommitProducer, OutgoingMessage
from services.runtime.metrics import ServiceMetrics
from services.runtime.topics import TopicName

if TYPE_CHECKING:
    from services.ingest.idempotency import IdempotencyStore

log = logging.getLogger(__name__)

MAX_ERRORS_IN_ANSWER = 100


@dataclass(frozen=True)
class IngestTopics:
    """``raw`` gets the accepted RawRecords: many entities per message when its
    contract is RawBatch (``raw.v2``, the default), one per message when it is
    RawRecord (``raw.v1``). ``raw_dead_letters`` (restricted, like ``raw``) gets
    rejects whole; ``dead_letters`` (shared, landed in the warehouse) their
    redacted letters. Left empty, it is the raw dead-letter topic beside
    ``dead_letters``."""

    raw: str = TopicName.RAW_V2
    dead_letters: str = dlq.DLQ_TOPIC
    raw_dead_letters: str = ""

    def __post_init__(self) -> None:
        if not self.raw_dead_letters:
            object.__setattr__(self, "raw_dead_letters", dlq.raw_topic_beside(self.dead_letters))


@dataclass
class IngestResult:
    """What a city system is told about its batch."""

    city: str
    source: str
    lineage_id: str
    accepted: int
    rejected: list[Rejection]
    entities: int
    readings: int
    skipped: int = 0
    messages: list[OutgoingMessage] = field(default_factory=list, repr=False)
    declared: frozenset[str] = frozenset()
    letters: list[dict[str, Any]] = field(default_factory=list, repr=False)
    raw_messages: int = 0  # messages on the raw topic: one per entity on v1, a few on v2

    @property
    def status(self) -> int:
        """200 when something was accepted (or nothing was sent), 422 when all was refused."""
        return 200 if self.accepted or not self.rejected else 422

    def answer(self) -> dict[str, Any]:
        """What the sender reads: positions, reasons, declared field names and
        messages that quote no value (its own or, worse, another row's)."""
        return {
            "city": self.city,
            "source": self.source,
            "lineage_id": self.lineage_id,
            "accepted": self.accepted,
            "rejected": len(self.rejected),
            "entities": self.entities,
            "skipped_partial_frames": self.skipped,
            "errors": [
                {
                    "position": r.position,
                    "reason": r.reason,
                    "message": excerpt(r.message, 500),
                    "fields": [f for f in dict.fromkeys(r.fields) if f in self.declared],
                }
                for r in self.rejected[:MAX_ERRORS_IN_ANSWER]
            ],
            "errors_truncated": len(self.rejected) > MAX_ERRORS_IN_ANSWER,
        }


WithBatch = Callable[["IngestResult"], list[OutgoingMessage]]


class IngestCore:
    """Parses, encodes and hands batches to a group-commit producer."""

    def __init__(
        self,
        contracts: Contracts,
        sink: GroupCommitProducer | None,
        *,
        topics: IngestTopics | None = None,
        metrics: ServiceMetrics | None = None,
        attributes: dict[str, dict[str, dict[str, str]]] | None = None,
        pseudonyms: LetterPseudonyms | None = None,
        columnar: bool = True,
    ):
        """``columnar`` lets a CSV request of single readings take the column by column
        path (services/ingest/raw_columns.py) when the raw topic carries batches;
        False keeps every request on the general path, the reference that path is
        held to (tests, benches)."""
        self.contracts = contracts
        self.sink = sink
        self.topics = topics or IngestTopics()
        self.metrics = metrics or ServiceMetrics("ingest")
        self._raw = contracts.codec(self.topics.raw)
        self._dlq = contracts.codec(self.topics.dead_letters)
        self._raw_dlq = contracts.codec(self.topics.raw_dead_letters)
        self._columnar = columnar and is_batch_topic(self._raw)
        self._pseudonyms = pseudonyms or LetterPseudonyms(None)
        # Reference data joined at the edge (e.g. meter → zone, sector), per "city/source".
        self._attributes = attributes or {}
        # First answers of keyed pushes (services.ingest.idempotency), set by the service.
        self.keys: IdempotencyStore | None = None

    def prepare(
        self,
        source: SourceConfig,
        payload: bytes,
        *,
        lineage_id: str | None = None,
        received_at_us: int | None = None,
    ) -> IngestResult:
        """Parse and encode one payload (CPU work, no I/O). ``lineage_id`` and
        ``received_at_us`` are drawn here unless given (to compare two runs)."""
        read = read_csv(payload, source) if self._columnar and source.format == "csv" else None
        singles = singles_of(read, source) if read is not None else None
        parsed = parse_payload(payload, source, read) if singles is None else None
        lineage_id = lineage_id or uuid.uuid4().hex
        received = time.time_ns() // 1000 if received_at_us is None else received_at_us
        if singles is not None:
            return self._single_readings(source, singles, lineage_id, received)
        assert parsed is not None
        messages = self._raw_messages(source, parsed.entities, lineage_id, received)
        raw_count = len(messages)
        letter_messages, letters = self._dead_letters(source, parsed.rejected, lineage_id, received)
        messages.extend(letter_messages)
        return IngestResult(
            source.city,
            source.id,
            lineage_id,
            parsed.accepted_rows,
            parsed.rejected,
            len(parsed.entities),
            sum(entity.row_count for entity in parsed.entities),
            parsed.skipped,
            messages,
            declared_fields(source),
            letters,
            raw_count,
        )

    def _single_readings(
        self, source: SourceConfig, singles: SingleReadings, lineage_id: str, received: int
    ) -> IngestResult:
        """The result of a request of single readings, built column by column: every
        line accepted, so no dead letter."""
        batches = single_reading_batches(
            singles,
            source,
            lineage_id=lineage_id,
            received_at_us=received,
            reference=self._attributes.get(f"{source.city}/{source.id}", {}),
            partitions=self._raw.spec.partitions,
        )
        messages = batch_messages(batches, self._raw)
        rows = len(singles.entities)
        return IngestResult(
            source.city,
            source.id,
            lineage_id,
            rows,
            [],
            rows,
            rows,
            0,
            messages,
            declared_fields(source),
            [],
            len(messages),
        )

    def _raw_messages(
        self, source: SourceConfig, entities: list[EntityRows], lineage_id: str, received: int
    ) -> list[OutgoingMessage]:
        """The accepted entities as raw messages: RawBatch messages, a few per request
        (raw.v2), or one RawRecord message per entity (raw.v1)."""
        reference = self._attributes.get(f"{source.city}/{source.id}", {})
        if is_batch_topic(self._raw):
            batches = raw_batches(
                entities,
                source,
                lineage_id=lineage_id,
                received_at_us=received,
                reference=reference,
                partitions=self._raw.spec.partitions,
            )
            return batch_messages(batches, self._raw)
        keyed = [
            (
                raw_key(source, entity.entity_id),
                raw_record(
                    entity,
                    source,
                    lineage_id=lineage_id,
                    received_at_us=received,
                    attributes=reference.get(entity.entity_id),
                ),
            )
            for entity in entities
        ]
        return raw_record_messages(keyed, self._raw)

    def _dead_letters(
        self, source: SourceConfig, rejected: list[Rejection], lineage_id: str, received: int
    ) -> tuple[list[OutgoingMessage], list[dict[str, Any]]]:
        """(messages, redacted letters) of a batch's rejects: every one whole on the raw
        dead-letter topic; on the shared one the first ``MAX_LETTERS_PER_BATCH`` and
        one summary of the rest (letter_cap.py)."""
        pseudonymise = self._pseudonyms.for_city(source.city, received) if rejected else None
        messages: list[OutgoingMessage] = []
        letters: list[dict[str, Any]] = []
        for index, rejection in enumerate(rejected):
            raw_letters, letter = rejection_letters(
                rejection, source, lineage_id, pseudonymise, self.topics.raw_dead_letters
            )
            messages.extend(
                (
                    self.topics.raw_dead_letters,
                    dlq.raw_dead_letter_key(source.city, source.id, raw_letter["letter_id"]),
                    self._raw_dlq.encode(raw_letter),
                )
                for raw_letter in raw_letters
            )
            if index < MAX_LETTERS_PER_BATCH:
                letters.append(letter)
        summary = summary_letter(
            source, lineage_id, rejected[MAX_LETTERS_PER_BATCH:], self.topics.raw_dead_letters
        )
        if summary is not None:
            letters.append(summary)
        key = dlq.dead_letter_key("ingest", source.city)
        messages.extend((self.topics.dead_letters, key, self._dlq.encode(x)) for x in letters)
        return messages, letters

    def record_outcome(self, result: IngestResult) -> None:
        labels = ("ingest",)
        self.metrics.records_in.labels(*labels).inc(result.accepted + len(result.rejected))
        self.metrics.records_out.labels("ingest", self.topics.raw).inc(result.raw_messages)
        self.metrics.readings_out.labels(*labels).inc(result.readings)
        for rejection in result.rejected:
            self.metrics.dead_letters.labels("ingest", rejection.reason).inc()
        for letter in result.letters:  # redacted: what any log reader may see
            log.info(
                "dead letter",
                extra={
                    "stage": "ingest",
                    "city": letter["city"],
                    "source": letter["source"],
                    "reason": letter["reason"],
                    "position": letter["position"],
                    "letter_id": letter["letter_id"],
                    "detail": letter["message"][:300],
                },
            )

    async def ingest(
        self, source: SourceConfig, payload: bytes, *, with_batch: WithBatch | None = None
    ) -> IngestResult:
        """Parse off the event loop, then wait until Kafka has committed it all.

        ``with_batch`` gives records that must commit in the batch's transaction
        (an idempotency key's answer), from the prepared result."""
        result = await asyncio.to_thread(self.prepare, source, payload)
        assert self.sink is not None, "an IngestCore without a sink only prepares"
        extra = with_batch(result) if with_batch else []
        await asyncio.wrap_future(self.sink.submit(result.messages + extra))
        self.record_outcome(result)
        return result

    def ingest_blocking(
        self, source: SourceConfig, payload: bytes, *, with_batch: WithBatch | None = None
    ) -> IngestResult:
        """The same for command-line use (files, replays)."""
        result = self.prepare(source, payload)
        assert self.sink is not None, "an IngestCore without a sink only prepares"
        extra = with_batch(result) if with_batch else []
        self.sink.submit(result.messages + extra).result()
        self.record_outcome(result)
        return result
