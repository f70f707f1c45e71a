"""The ingest use case, independent of HTTP or files: a payload of one city
source becomes RawRecords on ``raw`` and dead letters on ``dlq``, committed
together, and a result that says what was accepted and what was not and why."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from services.ingest.batch import Rejection
from services.ingest.formats import parse_payload
from services.ingest.records import raw_key, raw_record, rejection_letter
from services.runtime import dlq
from services.runtime.cities import SourceConfig
from services.runtime.codec import Contracts
from services.runtime.errors import OversizedBatch
from services.runtime.group_commit import GroupCommitProducer, OutgoingMessage
from services.runtime.kafka import MAX_MESSAGE_BYTES
from services.runtime.metrics import ServiceMetrics

MAX_ERRORS_IN_ANSWER = 100


@dataclass(frozen=True)
class IngestTopics:
    raw: str = "raw.v1"
    dead_letters: str = dlq.DLQ_TOPIC


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

    def answer(self) -> dict[str, Any]:
        return {
            "city": self.city,
            "source": self.source,
            "lineage_id": self.lineage_id,
            "accepted": self.accepted,
            "rejected": len(self.rejected),
            "entities": self.entities,
            "skipped_partial_frames": self.skipped,
            "errors": [
                {"position": r.position, "reason": r.reason, "message": r.message}
                for r in self.rejected[:MAX_ERRORS_IN_ANSWER]
            ],
            "errors_truncated": len(self.rejected) > MAX_ERRORS_IN_ANSWER,
        }


class IngestCore:
    """Parses, encodes and hands batches to a group-commit producer."""

    def __init__(
        self,
        contracts: Contracts,
        sink: GroupCommitProducer,
        *,
        topics: IngestTopics | None = None,
        metrics: ServiceMetrics | None = None,
        attributes: dict[str, dict[str, dict[str, str]]] | None = None,
    ):
        self.contracts = contracts
        self.sink = sink
        self.topics = topics or IngestTopics()
        self.metrics = metrics or ServiceMetrics("ingest")
        self._raw = contracts.codec(self.topics.raw)
        self._dlq = contracts.codec(self.topics.dead_letters)
        # Reference data joined at the edge (e.g. meter → zone, sector), per "city/source".
        self._attributes = attributes or {}

    def prepare(self, source: SourceConfig, payload: bytes) -> IngestResult:
        """Parse and encode one payload (CPU work, no I/O)."""
        parsed = parse_payload(payload, source)
        lineage_id = uuid.uuid4().hex
        received = time.time_ns() // 1000
        reference = self._attributes.get(f"{source.city}/{source.id}", {})
        messages: list[OutgoingMessage] = []
        readings = 0
        for entity in parsed.entities:
            record = raw_record(
                entity,
                source,
                lineage_id=lineage_id,
                received_at_us=received,
                attributes=reference.get(entity.entity_id),
            )
            readings += entity.row_count
            encoded = self._raw.encode(record)
            if len(encoded) > MAX_MESSAGE_BYTES:
                raise OversizedBatch(
                    f"entity {entity.entity_id!r} has {entity.row_count:,} rows in this batch, "
                    f"{len(encoded):,} bytes once encoded: more than the {MAX_MESSAGE_BYTES:,} "
                    "one message may carry; send fewer rows per entity in a batch (e.g. a day "
                    "of readings per meter). Nothing of this batch was kept.",
                    entity=entity.entity_id,
                    rows=entity.row_count,
                    size=len(encoded),
                    limit=MAX_MESSAGE_BYTES,
                )
            messages.append((self.topics.raw, raw_key(source, entity.entity_id), encoded))
        for rejection in parsed.rejected:
            letter = rejection_letter(rejection, source, lineage_id)
            messages.append(
                (
                    self.topics.dead_letters,
                    dlq.dead_letter_key("ingest", source.city),
                    self._dlq.encode(letter),
                )
            )
        return IngestResult(
            source.city,
            source.id,
            lineage_id,
            parsed.accepted_rows,
            parsed.rejected,
            len(parsed.entities),
            readings,
            parsed.skipped,
            messages,
        )

    def record_outcome(self, result: IngestResult) -> None:
        labels = ("ingest",)
        self.metrics.records_in.labels(*labels).inc(result.accepted + len(result.rejected))
        self.metrics.records_out.labels("ingest", self.topics.raw).inc(result.entities)
        self.metrics.readings_out.labels(*labels).inc(result.readings)
        for rejection in result.rejected:
            self.metrics.dead_letters.labels("ingest", rejection.reason).inc()

    async def ingest(self, source: SourceConfig, payload: bytes) -> IngestResult:
        """Parse off the event loop, then wait until Kafka has committed it all."""
        result = await asyncio.to_thread(self.prepare, source, payload)
        await asyncio.wrap_future(self.sink.submit(result.messages))
        self.record_outcome(result)
        return result

    def ingest_blocking(self, source: SourceConfig, payload: bytes) -> IngestResult:
        """The same for command-line use (files, replays)."""
        result = self.prepare(source, payload)
        self.sink.submit(result.messages).result()
        self.record_outcome(result)
        return result
