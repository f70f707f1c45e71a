"""Read a few top-level string fields of an Avro binary record without decoding the rest.

Subscribe only needs a record's city (and source) to tell which dataset it belongs
to, but those sit before and after arrays of many doubles. fastavro, even with a
reader schema of two fields, still walks every array item (~50 µs for a series of
144 readings); this walker skips fixed-size items by arithmetic, so a record costs
a few microseconds. It follows the writer schema (resolved by id, like any reader)
and stops after the last wanted field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Skip = Callable[[bytes, int], int]

_FIXED_SIZES = {"null": 0, "boolean": 1, "float": 4, "double": 8}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _skip_varint(data: bytes, pos: int) -> int:
    while data[pos] >= 0x80:
        pos += 1
    return pos + 1


def _skip_sized(data: bytes, pos: int) -> int:
    size, pos = _varint(data, pos)
    return pos + size


class _Compiler:
    """Builds skip functions from a writer schema, remembering named types (records,
    enums, fixed) so that later references, recursive ones included, resolve."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self._by_kind: dict[
            str, Callable[[dict[str, Any], str | None], tuple[Skip, int | None]]
        ] = {
            "record": self._record,
            "error": self._record,
            "enum": self._enum,
            "fixed": self._fixed,
            "array": self._container,
            "map": self._container,
        }

    def skipper(self, schema: Any, namespace: str | None) -> tuple[Skip, int | None]:
        """A function skipping one value, and its size when it is fixed."""
        if isinstance(schema, str):
            return self._named(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema.get("type")
        if isinstance(kind, (list, dict)) or (isinstance(kind, str) and kind not in self._by_kind):
            return self.skipper(kind, namespace)
        build = self._by_kind.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise ValueError(f"unsupported Avro type {kind!r}")
        return build(schema, namespace)

    def _named(self, schema: str, namespace: str | None) -> tuple[Skip, int | None]:
        """A primitive type, or a reference to a named type defined before."""
        if schema in _FIXED_SIZES:
            size = _FIXED_SIZES[schema]
            return (lambda data, pos: pos + size), size
        if schema in ("int", "long"):
            return _skip_varint, None
        if schema in ("string", "bytes"):
            return _skip_sized, None
        name = schema if "." in schema or not namespace else f"{namespace}.{schema}"
        target = self.named.get(name) or self.named.get(schema)
        if target is None:
            raise ValueError(f"unknown type {schema!r}")
        return target

    def _union(self, schema: list[Any], namespace: str | None) -> tuple[Skip, int | None]:
        branches = [self.skipper(branch, namespace)[0] for branch in schema]

        def union(data: bytes, pos: int) -> int:
            index, pos = _varint(data, pos)
            return branches[index](data, pos)

        return union, None

    def _record(self, schema: dict[str, Any], namespace: str | None) -> tuple[Skip, int | None]:
        """A record's fields in order; one jump when every field has a fixed size. The
        name is known (through a slot filled last) before its fields are compiled, so a
        field may refer to the record itself."""
        namespace = schema.get("namespace", namespace)
        fullname = schema["name"] if "." in schema["name"] else f"{namespace}.{schema['name']}"
        slot: list[Skip] = []

        def record(data: bytes, pos: int) -> int:
            return slot[0](data, pos)

        self.named[fullname] = self.named[schema["name"]] = (record, None)
        fields = [self.skipper(f["type"], namespace) for f in schema["fields"]]
        sizes = [size for _, size in fields]
        if all(size is not None for size in sizes):
            total = sum(s for s in sizes if s is not None)
            slot.append(lambda data, pos: pos + total)
            self.named[fullname] = self.named[schema["name"]] = (slot[0], total)
            return slot[0], total
        steps = [skip for skip, _ in fields]

        def walk(data: bytes, pos: int) -> int:
            for step in steps:
                pos = step(data, pos)
            return pos

        slot.append(walk)
        return record, None

    def _enum(self, schema: dict[str, Any], namespace: str | None) -> tuple[Skip, int | None]:
        self.named[schema["name"]] = (_skip_varint, None)
        return _skip_varint, None

    def _fixed(self, schema: dict[str, Any], namespace: str | None) -> tuple[Skip, int | None]:
        size = int(schema["size"])
        skip: Skip = lambda data, pos: pos + size  # noqa: E731
        self.named[schema["name"]] = (skip, size)
        return skip, size

    def _container(self, schema: dict[str, Any], namespace: str | None) -> tuple[Skip, int | None]:
        """Arrays and maps: blocks of items, fixed-size items skipped by arithmetic."""
        kind = schema["type"]
        item, item_size = self.skipper(
            schema["items"] if kind == "array" else schema["values"], namespace
        )
        key = _skip_sized if kind == "map" else None

        def blocks(data: bytes, pos: int) -> int:
            while True:
                count, pos = _varint(data, pos)
                if count == 0:
                    return pos
                if count < 0:  # a block that says its size in bytes
                    size, pos = _varint(data, pos)
                    pos += size
                    continue
                if key is None and item_size is not None:
                    pos += count * item_size
                    continue
                for _ in range(count):
                    if key is not None:
                        pos = key(data, pos)
                    pos = item(data, pos)

        return blocks, None


def compile_peek(writer: dict[str, Any], wanted: tuple[str, ...]) -> Callable[[bytes, int], dict]:
    """A function reading the string fields ``wanted`` of a record written with ``writer``
    (JSON form), from ``pos`` in ``data``."""
    compiler = _Compiler()
    namespace = writer.get("namespace")
    plan: list[tuple[str | None, Skip]] = []
    remaining = set(wanted)
    for field in writer["fields"]:
        if not remaining:
            break
        if field["name"] in remaining:
            if field["type"] != "string":
                raise ValueError(f"field {field['name']!r} is not a plain string")
            plan.append((field["name"], _skip_sized))
            remaining.discard(field["name"])
        else:
            plan.append((None, compiler.skipper(field["type"], namespace)[0]))
    if remaining:
        raise ValueError(f"the writer schema has no field {sorted(remaining)}")

    def peek(data: bytes, pos: int) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, skip in plan:
            if name is None:
                pos = skip(data, pos)
            else:
                size, start = _varint(data, pos)
                pos = start + size
                found[name] = data[start:pos].decode("utf-8")
        return found

    return peek
