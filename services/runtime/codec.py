"""Binds each declared topic to its Avro contract and registry id, and turns
records into wire-format bytes and back.

Times stay integers (epoch microseconds) inside the services: converting every
timestamp to a ``datetime`` would cost more than decoding the message. The
schemas keep their ``timestamp-micros`` logical type for other readers (the stock
``AvroDeserializer``, ClickHouse), we only strip it from what fastavro uses here;
the bytes are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fastavro

from services.runtime import wire
from services.runtime.batches import Batching, batching, spec_for_batch
from services.runtime.errors import SchemaError
from services.runtime.registry import SchemaRegistry
from services.runtime.schemas import RecordSchema, load_schemas
from services.runtime.topics import TopicSpec, member_sibling


def without_logical_types(schema: Any) -> Any:
    """The same schema with ``logicalType`` annotations removed (same binary encoding)."""
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(v) for v in schema]
    return schema


def parse_plain(schema: dict[str, Any]) -> Any:
    """Parse a schema for fastavro with logical types left as plain numbers."""
    return fastavro.parse_schema(without_logical_types(schema), _force=True)


class TopicCodec:
    """Encodes records for one topic and decodes whatever schema version wrote them."""

    def __init__(
        self, spec: TopicSpec, schema: RecordSchema, schema_id: int, registry: SchemaRegistry
    ):
        self.spec = spec
        self.schema = schema
        self.schema_id = schema_id
        self._registry = registry
        self._reader = parse_plain(schema.expanded)
        self._writers: dict[int, Any] = {schema_id: self._reader}
        spec_of_batch = spec_for_batch(schema.name)
        self._batching = batching(spec_of_batch.member) if spec_of_batch is not None else None

    @property
    def topic(self) -> str:
        return self.spec.name

    @property
    def batching(self) -> Batching | None:
        """How this topic's values carry v1 records many to a message (a v2 batch
        topic such as observations.v2), or None for a topic of single records."""
        return self._batching

    def encode(self, record: dict[str, Any]) -> bytes:
        try:
            return wire.encode(self.schema_id, self._reader, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(
                f"record does not fit {self.schema.name} for topic {self.topic}: {exc!r}"
            ) from exc

    def decode(self, message: bytes) -> dict[str, Any]:
        schema_id = wire.read_header(message)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = parse_plain(self._registry.schema_json(schema_id))
            self._writers[schema_id] = writer
        if schema_id == self.schema_id:
            return wire.decode(message, writer)
        return wire.decode(message, writer, self._reader)


class Contracts:
    """Every declared topic with its codec; built once per process at start-up."""

    def __init__(self, codecs: dict[str, TopicCodec]):
        self._codecs = codecs
        self._siblings: dict[str, str | None] = {}

    @classmethod
    def register(cls, registry: SchemaRegistry, specs: Iterable[TopicSpec]) -> Contracts:
        """Register each topic's value schema under ``<topic>-value`` and bind codecs.

        Each subject is set to refuse incompatible schemas first (see
        ``SchemaRegistry.enforce_compatibility``), so that neither a later release
        nor anyone else reaching the registry can break what partners decode.
        """
        schemas = load_schemas()
        codecs: dict[str, TopicCodec] = {}
        ids_by_text: dict[tuple[str, str], int] = {}
        for spec in specs:
            schema = schemas[spec.value]
            key = (spec.subject, schema.text)
            if key not in ids_by_text:
                registry.enforce_compatibility(spec.subject)
                ids_by_text[key] = registry.register(spec.subject, schema.text)
            codecs[spec.name] = TopicCodec(spec, schema, ids_by_text[key], registry)
        return cls(codecs)

    def codec(self, topic: str) -> TopicCodec:
        try:
            return self._codecs[topic]
        except KeyError:
            raise SchemaError(
                f"topic {topic!r} is not declared in deploy/topics.yaml "
                f"(declared: {', '.join(sorted(self._codecs))})"
            ) from None

    def batching(self, topic: str) -> Batching | None:
        """See :attr:`TopicCodec.batching`."""
        return self.codec(topic).batching

    def member_topic(self, topic: str) -> str | None:
        """The v1 sibling of batch topic ``topic`` (``raw.v2`` -> ``raw.v1``, prefixed
        copies alike) when it is declared with the batch's member contract: where a
        member's dead letter is replayed. None otherwise."""
        if topic not in self._siblings:
            self._siblings[topic] = self._member_topic(topic)
        return self._siblings[topic]

    def _member_topic(self, topic: str) -> str | None:
        found = self.batching(topic)
        sibling = member_sibling(topic) if found is not None else None
        if found is None or sibling is None or sibling not in self:
            return None
        return sibling if self.codec(sibling).schema.name == found.spec.member else None

    def __contains__(self, topic: str) -> bool:
        return topic in self._codecs

    def topics(self) -> list[str]:
        return list(self._codecs)


def schema_summary(codec: TopicCodec) -> str:
    """One line for logs and `citeplus schemas`."""
    return f"{codec.topic}: {codec.schema.fullname} (id {codec.schema_id})"


__all__ = ["Contracts", "TopicCodec", "parse_plain", "schema_summary", "without_logical_types"]
