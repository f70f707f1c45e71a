"""Confluent wire-format framing (magic byte + schema id) around fastavro bodies."""

from __future__ import annotations

import struct

import pytest

from services.runtime import wire
from services.runtime.codec import parse_plain
from services.runtime.errors import WireFormatError
from services.runtime.schemas import schema_for


def observation(values: list[float]) -> dict:
    return {
        "city": "lyon",
        "domain": "energy",
        "metric": "electricity.active_energy",
        "unit": "kWh",
        "entity_pseudonym": "p1",
        "start": 1_700_000_000_000_000,
        "step_seconds": 600,
        "values": values,
        "source": "linky",
        "dataset": "load-curves",
        "lineage_id": "l1",
    }


def test_header_is_magic_byte_and_big_endian_id() -> None:
    framed = wire.frame(258, b"body")
    assert framed[:5] == b"\x00\x00\x00\x01\x02"
    assert wire.read_header(framed) == 258


def test_encode_decode_round_trip() -> None:
    schema = parse_plain(schema_for("Observation").expanded)
    record = observation([0.25 * i for i in range(144)])
    message = wire.encode(7, schema, record)
    assert struct.unpack(">bI", message[:5]) == (0, 7)
    decoded = wire.decode(message, schema)
    assert decoded["values"] == record["values"]
    assert decoded["start"] == record["start"]  # times stay integers (microseconds)
    assert decoded["zone"] is None and decoded["times"] == []


@pytest.mark.parametrize("message", [b"", b"\x00\x00", None])
def test_short_message_is_refused(message: bytes | None) -> None:
    with pytest.raises(WireFormatError, match="too short"):
        wire.read_header(message)  # type: ignore[arg-type]


def test_wrong_magic_byte_is_refused() -> None:
    with pytest.raises(WireFormatError, match="magic byte 1"):
        wire.read_header(b"\x01\x00\x00\x00\x01rest")


def test_body_that_does_not_match_schema_is_refused() -> None:
    schema = parse_plain(schema_for("Observation").expanded)
    with pytest.raises(WireFormatError, match="does not match"):
        wire.decode(wire.frame(1, b"\x02"), schema)


def test_trailing_bytes_are_refused() -> None:
    schema = parse_plain(schema_for("Observation").expanded)
    message = wire.encode(1, schema, observation([1.0])) + b"\x00\x00"
    with pytest.raises(WireFormatError, match="trailing bytes"):
        wire.decode(message, schema)
