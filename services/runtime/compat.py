"""Avro backward compatibility: can a reader with the new schema read data that
an old schema wrote? Topics keep months of data and partner cities keep old
readers, so a contract may only change in ways Avro schema resolution allows.

This follows the resolution rules of the Avro specification; it is pure so that
the test guarding ``avro/`` needs no registry.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "double": {"double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_NAMED = ("record", "enum", "fixed", "error")


def _type_of(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema["type"]
        return kind if isinstance(kind, str) else _type_of(kind)
    return schema


def _index_named(
    schema: Any, names: dict[str, dict[str, Any]], namespace: str | None = None
) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _index_named(branch, names, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            name = schema["name"]
            namespace = schema.get("namespace", namespace)
            full = name if "." in name else f"{namespace}.{name}" if namespace else name
            names[full] = schema
            names.setdefault(name, schema)
            for f in schema.get("fields", []):
                _index_named(f["type"], names, namespace)
        elif kind == "array":
            _index_named(schema["items"], names, namespace)
        elif kind == "map":
            _index_named(schema["values"], names, namespace)
        elif isinstance(kind, (dict, list)):
            _index_named(kind, names, namespace)


def _resolve(schema: Any, names: dict[str, dict[str, Any]]) -> Any:
    if isinstance(schema, str) and schema in names:
        return names[schema]
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return _resolve(schema["type"], names)
    if isinstance(schema, dict) and isinstance(schema.get("type"), str) and schema["type"] in names:
        return names[schema["type"]]
    return schema


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty when it can)."""
    reader_names: dict[str, dict[str, Any]] = {}
    writer_names: dict[str, dict[str, Any]] = {}
    _index_named(reader, reader_names)
    _index_named(writer, writer_names)
    problems: list[str] = []
    _check(reader, writer, reader_names, writer_names, "", problems, set())
    return problems


def _check(
    reader: Any,
    writer: Any,
    rnames: dict[str, dict[str, Any]],
    wnames: dict[str, dict[str, Any]],
    path: str,
    problems: list[str],
    seen: set[tuple[int, int]],
) -> None:
    reader = _resolve(reader, rnames)
    writer = _resolve(writer, wnames)
    rtype, wtype = _type_of(reader), _type_of(writer)
    where = path or "<root>"
    if wtype == "union":
        for branch in writer:
            _check(reader, branch, rnames, wnames, path, problems, seen)
        return
    if rtype == "union":
        branch_problems = []
        for branch in reader:
            attempt: list[str] = []
            _check(branch, writer, rnames, wnames, path, attempt, set(seen))
            if not attempt:
                return
            branch_problems.append(attempt)
        problems.append(f"{where}: no branch of the reader union reads writer type {wtype}")
        return
    if rtype in _NAMED or wtype in _NAMED:
        if rtype != wtype:
            problems.append(f"{where}: writer {wtype} cannot be read as {rtype}")
            return
        rname, wname = _short(reader["name"]), _short(writer["name"])
        aliases = {_short(a) for a in reader.get("aliases", [])}
        if rname != wname and wname not in aliases:
            problems.append(f"{where}: named type {wname} was renamed to {rname} without an alias")
            return
        key = (id(reader), id(writer))
        if key in seen:
            return
        seen.add(key)
        if rtype in ("record", "error"):
            writer_fields = {f["name"]: f for f in writer["fields"]}
            for field in reader["fields"]:
                names = [field["name"], *field.get("aliases", [])]
                match = next((writer_fields[n] for n in names if n in writer_fields), None)
                field_path = f"{path}.{field['name']}" if path else field["name"]
                if match is None:
                    if "default" not in field:
                        problems.append(
                            f"{field_path}: new field without a default cannot read old data"
                        )
                    continue
                _check(field["type"], match["type"], rnames, wnames, field_path, problems, seen)
        elif rtype == "enum":
            missing = set(writer["symbols"]) - set(reader["symbols"])
            if missing and "default" not in reader:
                problems.append(
                    f"{where}: enum symbols {sorted(missing)} removed without a default"
                )
        elif rtype == "fixed" and reader.get("size") != writer.get("size"):
            problems.append(f"{where}: fixed size changed")
        return
    if rtype == "array" and wtype == "array":
        _check(reader["items"], writer["items"], rnames, wnames, f"{path}[]", problems, seen)
        return
    if rtype == "map" and wtype == "map":
        _check(reader["values"], writer["values"], rnames, wnames, f"{path}{{}}", problems, seen)
        return
    if rtype in ("array", "map") or wtype in ("array", "map"):
        problems.append(f"{where}: writer {wtype} cannot be read as {rtype}")
        return
    if rtype not in _PROMOTIONS.get(wtype, {wtype}):
        problems.append(f"{where}: writer {wtype} cannot be read as {rtype}")
