"""Loading the contracts of avro/: references resolved, one file per record type."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest

from services.runtime.errors import SchemaError
from services.runtime.schemas import load_schemas, read_schema_files, schema_for
from services.runtime.topics import load_topics

RECORD_TYPES = {"RawRecord", "AnonymisedRecord", "Observation", "EnergyAggregate", "DeadLetter"}


def test_every_record_type_has_a_contract() -> None:
    assert set(load_schemas()) >= RECORD_TYPES


def test_expanded_schema_is_self_contained() -> None:
    raw = schema_for("RawRecord")
    text = raw.text
    assert '"name":"Column"' in text  # the referenced type is inlined for the registry
    fastavro.parse_schema(json.loads(text))  # parses alone, without other files


def test_column_defined_once_per_schema() -> None:
    assert schema_for("AnonymisedRecord").text.count('"name":"Column"') == 1


def test_readings_are_carried_as_arrays() -> None:
    fields = {f["name"]: f for f in schema_for("Observation").expanded["fields"]}
    assert fields["values"]["type"] == {"type": "array", "items": "double"}
    raw_fields = {f["name"] for f in schema_for("RawRecord").expanded["fields"]}
    assert {"columns", "row_count", "lineage_id", "received_at"} <= raw_fields


def test_every_declared_topic_names_a_contract() -> None:
    for spec in load_topics().values():
        assert spec.value in load_schemas()


def test_unknown_reference_is_reported(tmp_path: Path) -> None:
    (tmp_path / "Thing.avsc").write_text(
        json.dumps({"type": "record", "name": "Thing", "fields": [{"name": "x", "type": "Nope"}]})
    )
    load_schemas.cache_clear()
    try:
        with pytest.raises(SchemaError, match="unknown Avro type 'Nope'"):
            load_schemas(tmp_path)
    finally:
        load_schemas.cache_clear()


def test_file_name_must_match_record(tmp_path: Path) -> None:
    (tmp_path / "Other.avsc").write_text(
        json.dumps({"type": "record", "name": "Thing", "fields": []})
    )
    with pytest.raises(SchemaError, match="file name must be the record name"):
        read_schema_files(tmp_path)
