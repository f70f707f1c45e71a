"""The Avro contracts in ``avro/``: the only source of truth for what is on a topic.

One file per record type; a file may name a type declared in another file
(``citeplus.v1.Column``). We resolve those references here, once, so that the
registry receives a self-contained schema and fastavro a parsed one, and no
second hand-written copy of a schema exists anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from services.runtime.errors import SchemaError
from services.runtime.paths import AVRO_DIR

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class RecordSchema:
    """One record type: its name, the self-contained JSON to register, the parsed form."""

    name: str
    fullname: str
    expanded: dict[str, Any]
    parsed: Any

    @property
    def text(self) -> str:
        """Schema text as sent to the registry (compact, stable key order)."""
        return json.dumps(self.expanded, separators=(",", ":"), ensure_ascii=False)


def _fullname(schema: dict[str, Any], namespace: str | None) -> str:
    name = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def read_schema_files(directory: Path = AVRO_DIR) -> dict[str, dict[str, Any]]:
    """Read every ``*.avsc`` of ``directory`` as JSON, keyed by the record's full name."""
    documents: dict[str, dict[str, Any]] = {}
    files = sorted(directory.glob("*.avsc"))
    if not files:
        raise SchemaError(f"no *.avsc file in {directory}: the Avro contracts are missing")
    for path in files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(document, dict) or document.get("type") != "record":
            raise SchemaError(f"{path}: a contract file must hold one Avro record")
        fullname = _fullname(document, None)
        if path.stem != document["name"]:
            raise SchemaError(f"{path}: file name must be the record name {document['name']!r}")
        documents[fullname] = document
    return documents


def expand(
    schema: Any, documents: dict[str, dict[str, Any]], defined: set[str], namespace: str | None
) -> Any:
    """Replace references to types declared in other files by their definition.

    Avro allows a named type to be defined once per schema, so the first
    reference is inlined and later ones stay names.
    """
    if isinstance(schema, str):
        return _expand_reference(schema, documents, defined, namespace)
    if isinstance(schema, list):
        return [expand(branch, documents, defined, namespace) for branch in schema]
    if isinstance(schema, dict):
        return _expand_definition(schema, documents, defined, namespace)
    raise SchemaError(f"not an Avro schema: {schema!r}")


def _expand_reference(
    name: str, documents: dict[str, dict[str, Any]], defined: set[str], namespace: str | None
) -> Any:
    """A type named by a string: a primitive, a type already defined in this schema
    (kept as a name), or the first use of another file's type (inlined)."""
    if name in _PRIMITIVES:
        return name
    fullname = name if "." in name else f"{namespace}.{name}" if namespace else name
    if fullname in defined:
        return name
    if fullname in documents:
        defined.add(fullname)
        target = documents[fullname]
        return expand(dict(target), documents, defined, target.get("namespace"))
    raise SchemaError(f"unknown Avro type {name!r}: declare it in avro/{name}.avsc")


def _expand_definition(
    schema: dict[str, Any],
    documents: dict[str, dict[str, Any]],
    defined: set[str],
    namespace: str | None,
) -> dict[str, Any]:
    """A type written as an object: a named type defines its name (and namespace for
    its fields); containers and wrapped types expand what they hold."""
    kind = schema.get("type")
    out = dict(schema)
    if kind in ("record", "error", "enum", "fixed"):
        defined.add(_fullname(schema, namespace))
        namespace = schema.get("namespace", namespace)
        if kind in ("record", "error"):
            out["fields"] = [
                {**field, "type": expand(field["type"], documents, defined, namespace)}
                for field in schema["fields"]
            ]
    elif kind == "array":
        out["items"] = expand(schema["items"], documents, defined, namespace)
    elif kind == "map":
        out["values"] = expand(schema["values"], documents, defined, namespace)
    elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        out["type"] = expand(kind, documents, defined, namespace)
    return out


def build_record_schema(fullname: str, documents: dict[str, dict[str, Any]]) -> RecordSchema:
    """Expand and parse one record type of ``documents``."""
    document = documents[fullname]
    expanded = expand(document, documents, set(), document.get("namespace"))
    try:
        parsed = fastavro.parse_schema(expanded, _force=True)
    except Exception as exc:  # fastavro raises several types for bad schemas
        raise SchemaError(f"avro/{document['name']}.avsc: invalid Avro schema ({exc})") from exc
    return RecordSchema(document["name"], fullname, expanded, parsed)


@cache
def load_schemas(directory: Path = AVRO_DIR) -> dict[str, RecordSchema]:
    """Every contract of ``directory``, keyed by short record name (``Observation``)."""
    documents = read_schema_files(directory)
    return {doc["name"]: build_record_schema(name, documents) for name, doc in documents.items()}


def schema_for(record_type: str) -> RecordSchema:
    """The contract named ``record_type``, with a clear error naming the known ones."""
    schemas = load_schemas()
    try:
        return schemas[record_type]
    except KeyError:
        known = ", ".join(sorted(schemas))
        raise SchemaError(f"no Avro contract named {record_type!r} (known: {known})") from None
