"""The backward-compatibility checker, cross-checked against fastavro's own
schema resolution so that its verdicts are not just our opinion."""

from __future__ import annotations

import io

import fastavro
import pytest

from services.runtime.compat import incompatibilities


def record(*fields: dict) -> dict:
    return {"type": "record", "name": "R", "namespace": "t", "fields": list(fields)}


def resolves(reader: dict, writer: dict, datum: dict) -> bool:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer), datum)
    buffer.seek(0)
    try:
        fastavro.schemaless_reader(
            buffer, fastavro.parse_schema(writer), fastavro.parse_schema(reader)
        )
    except Exception:
        return False
    return True


CASES = [
    # (reader, writer, datum written by writer, compatible?)
    (record({"name": "a", "type": "int"}), record({"name": "a", "type": "int"}), {"a": 1}, True),
    (record({"name": "a", "type": "long"}), record({"name": "a", "type": "int"}), {"a": 1}, True),
    (record({"name": "a", "type": "int"}), record({"name": "a", "type": "long"}), {"a": 1}, False),
    (
        record({"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": ""}),
        record({"name": "a", "type": "int"}),
        {"a": 1},
        True,
    ),
    (
        record({"name": "a", "type": "int"}, {"name": "b", "type": "string"}),
        record({"name": "a", "type": "int"}),
        {"a": 1},
        False,
    ),
    (record(), record({"name": "a", "type": "int"}), {"a": 1}, True),  # removed field: fine
    (
        record({"name": "a", "type": ["null", "string"]}),
        record({"name": "a", "type": "string"}),
        {"a": "x"},
        True,
    ),
    (
        record({"name": "a", "type": "string"}),
        record({"name": "a", "type": ["null", "string"]}),
        {"a": None},
        False,
    ),
    (
        record({"name": "a", "type": {"type": "array", "items": "double"}}),
        record({"name": "a", "type": {"type": "array", "items": "float"}}),
        {"a": [1.0]},
        True,
    ),
    (
        record({"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}}),
        record({"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}),
        {"a": "Y"},
        False,
    ),
]


@pytest.mark.parametrize(("reader", "writer", "datum", "compatible"), CASES)
def test_checker_agrees_with_fastavro(
    reader: dict, writer: dict, datum: dict, compatible: bool
) -> None:
    assert (incompatibilities(reader, writer) == []) is compatible
    assert resolves(reader, writer, datum) is compatible


def test_problem_names_the_field() -> None:
    problems = incompatibilities(
        record({"name": "a", "type": "int"}, {"name": "zone", "type": "string"}),
        record({"name": "a", "type": "int"}),
    )
    assert problems == ["zone: new field without a default cannot read old data"]
