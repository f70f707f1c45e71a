"""Avro bytes of batch records for tests of how batch messages are built and joined:
the topic's encoding without its registry header (what the outbox's encoder is given)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import fastavro

from services.runtime.codec import parse_plain
from services.runtime.schemas import load_schemas

__all__ = ["batch_decoder", "batch_encoder"]


def batch_encoder(record_name: str) -> Callable[[dict[str, Any]], bytes]:
    """Writes a ``record_name`` (e.g. "ObservationBatch") record schemalessly."""
    parsed = parse_plain(load_schemas()[record_name].expanded)

    def encode(batch: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, batch)
        return out.getvalue()

    return encode


def batch_decoder(record_name: str) -> Callable[[bytes], dict[str, Any]]:
    """Reads what :func:`batch_encoder` wrote."""
    parsed = parse_plain(load_schemas()[record_name].expanded)
    return lambda value: fastavro.schemaless_reader(io.BytesIO(value), parsed)
