"""Codecs of the declared topics without a registry, for unit tests of pure code
that encodes and decodes (ingest's preparation of a batch, for instance).

The bytes are the real Confluent wire format of the real contracts in ``avro/``;
only the schema ids are made up (one per contract), and a message written under
another id cannot be decoded here -- which a unit test never needs.
"""

from __future__ import annotations

from dataclasses import replace

from services.runtime.codec import Contracts, TopicCodec
from services.runtime.schemas import load_schemas
from services.runtime.topics import load_topics


class NoRegistry:
    """Stands where a registry would be: every lookup is refused loudly."""

    def schema_json(self, schema_id: int) -> str:
        raise LookupError(f"no registry in this test: schema id {schema_id} is unknown")


def offline_contracts(*declared: str, partitions: int | None = None) -> Contracts:
    """Codecs of the ``declared`` topics (all of them if none is named), each
    contract under a stable made-up schema id; ``partitions`` overrides the counts."""
    topics = load_topics()
    schemas = load_schemas()
    ids = {name: number for number, name in enumerate(sorted(schemas), start=1)}
    codecs = {}
    for name in declared or tuple(topics):
        spec = topics[name]
        if partitions is not None:
            spec = replace(spec, partitions=partitions)
        codecs[name] = TopicCodec(spec, schemas[spec.value], ids[spec.value], NoRegistry())  # type: ignore[arg-type]
    return Contracts(codecs)
