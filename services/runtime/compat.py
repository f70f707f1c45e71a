"""Avro backward compatibility: can a reader with the new schema read data that
an old schema wrote? Topics keep months of data and partner cities keep old
readers, so a contract may only change in ways Avro schema resolution allows.

This follows the resolution rules of the Avro specification; it is pure so that
the test guarding ``avro/`` needs no registry.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    return _Resolution(reader_names, writer_names).check(reader, writer, "", set())


# Containers whose element schemas must resolve: the member holding them and the
# path suffix a problem inside them is reported under.
_CONTAINERS = {"array": ("items", "[]"), "map": ("values", "{}")}


@dataclass(frozen=True)
class _Resolution:
    """The named types of both sides, so that each step of the walk below takes only
    the two schemas it compares, their path and the pairs of named types already
    compared (a recursive record compared once)."""

    rnames: dict[str, dict[str, Any]]
    wnames: dict[str, dict[str, Any]]

    def check(self, reader: Any, writer: Any, path: str, seen: set[tuple[int, int]]) -> list[str]:
        """Problems of reading ``writer`` data with ``reader``, in the order found."""
        reader = _resolve(reader, self.rnames)
        writer = _resolve(writer, self.wnames)
        rtype, wtype = _type_of(reader), _type_of(writer)
        if wtype == "union":  # every branch the writer may have used must be readable
            return [p for branch in writer for p in self.check(reader, branch, path, seen)]
        if rtype == "union":
            return self._reader_union(reader, writer, wtype, path, seen)
        if rtype in _NAMED or wtype in _NAMED:
            return self._named(reader, writer, (rtype, wtype), path, seen)
        if rtype == wtype and rtype in _CONTAINERS:
            member, suffix = _CONTAINERS[rtype]
            return self.check(reader[member], writer[member], f"{path}{suffix}", seen)
        if (
            rtype in _CONTAINERS
            or wtype in _CONTAINERS
            or rtype not in _PROMOTIONS.get(wtype, {wtype})
        ):
            return [f"{path or '<root>'}: writer {wtype} cannot be read as {rtype}"]
        return []

    def _reader_union(
        self, reader: list[Any], writer: Any, wtype: str, path: str, seen: set[tuple[int, int]]
    ) -> list[str]:
        """Readable when one branch of the reader's union reads the writer's type;
        each branch is tried on its own copy of ``seen``."""
        for branch in reader:
            if not self.check(branch, writer, path, set(seen)):
                return []
        return [f"{path or '<root>'}: no branch of the reader union reads writer type {wtype}"]

    def _named(
        self,
        reader: Any,
        writer: Any,
        types: tuple[str, str],
        path: str,
        seen: set[tuple[int, int]],
    ) -> list[str]:
        """Records, enums and fixed: same kind, same name (or an alias), then their
        own rules; a pair already being compared is not compared again."""
        rtype, wtype = types
        where = path or "<root>"
        if rtype != wtype:
            return [f"{where}: writer {wtype} cannot be read as {rtype}"]
        rname, wname = _short(reader["name"]), _short(writer["name"])
        aliases = {_short(a) for a in reader.get("aliases", [])}
        if rname != wname and wname not in aliases:
            return [f"{where}: named type {wname} was renamed to {rname} without an alias"]
        key = (id(reader), id(writer))
        if key in seen:
            return []
        seen.add(key)
        if rtype in ("record", "error"):
            return self._record(reader, writer, path, seen)
        if rtype == "enum":
            return _enum_problems(reader, writer, where)
        if rtype == "fixed" and reader.get("size") != writer.get("size"):
            return [f"{where}: fixed size changed"]
        return []

    def _record(
        self, reader: dict[str, Any], writer: dict[str, Any], path: str, seen: set[tuple[int, int]]
    ) -> list[str]:
        """Each reader field reads its writer field (by name or alias) or has a default."""
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems: list[str] = []
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            field_path = f"{path}.{field['name']}" if path else field["name"]
            if match is not None:
                problems += self.check(field["type"], match["type"], field_path, seen)
            elif "default" not in field:
                problems.append(f"{field_path}: new field without a default cannot read old data")
        return problems


def _enum_problems(reader: dict[str, Any], writer: dict[str, Any], where: str) -> list[str]:
    """An enum may lose symbols only if it has a default to read them as."""
    missing = set(writer["symbols"]) - set(reader["symbols"])
    if missing and "default" not in reader:
        return [f"{where}: enum symbols {sorted(missing)} removed without a default"]
    return []
