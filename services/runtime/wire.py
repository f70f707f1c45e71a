"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

We frame messages ourselves (fastavro schemaless encoding) rather than going
through confluent-kafka's ``AvroSerializer`` because a serializer call per
message costs more than the encoding itself; the framing is the same, so the
stock ``AvroDeserializer`` and ClickHouse's ``AvroConfluent`` read our topics.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import fastavro

from services.runtime.errors import WireFormatError

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the wire-format header."""
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


def read_header(message: bytes) -> int:
    """Schema id of a wire-format message; a clear error for anything else."""
    if message is None or len(message) < HEADER_SIZE:
        size = 0 if message is None else len(message)
        raise WireFormatError(
            f"message of {size} bytes is too short for the Confluent wire format "
            f"(needs {HEADER_SIZE}-byte header)"
        )
    magic, schema_id = HEADER.unpack_from(message)
    if magic != MAGIC_BYTE:
        raise WireFormatError(
            f"unknown magic byte {magic} (expected {MAGIC_BYTE}): "
            "not a Confluent wire-format Avro message"
        )
    return schema_id


def encode(schema_id: int, parsed_schema: Any, record: dict[str, Any]) -> bytes:
    """Encode ``record`` with its parsed schema into a framed message."""
    buffer = BytesIO()
    buffer.write(HEADER.pack(MAGIC_BYTE, schema_id))
    fastavro.schemaless_writer(buffer, parsed_schema, record)
    return buffer.getvalue()


def decode(message: bytes, writer_schema: Any, reader_schema: Any | None = None) -> dict[str, Any]:
    """Decode a framed message whose header the caller has already resolved.

    Raises WireFormatError when the body does not match the writer schema.
    """
    buffer = BytesIO(message)
    buffer.seek(HEADER_SIZE)
    try:
        record = fastavro.schemaless_reader(buffer, writer_schema, reader_schema)
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError...
        raise WireFormatError(f"Avro body does not match its schema: {exc!r}") from exc
    if buffer.tell() != len(message):
        raise WireFormatError(
            f"Avro body has {len(message) - buffer.tell()} trailing bytes: wrong schema id?"
        )
    return record
