"""Strict reading of the YAML files people write by hand (city files and their sections).

These files are edited by city teams, not generated, so a slip must stop the
service with a message that names the file, the dotted key and what to write
instead. Plain YAML is too forgiving for that: a repeated key silently keeps
the last value, so :func:`parse_strict` refuses it. :class:`ConfigReader` holds
the checks every such reader needs, so that the city file and the sections
other stages own (``privacy``, ...) phrase the same mistake the same way.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from services.runtime.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses duplicate keys (YAML would keep the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_strict(text: str, source: str) -> Any:
    """Parse YAML safely, refusing repeated keys, which would otherwise override silently.

    Raises :class:`ConfigError` naming ``source``; YAML's own message gives the
    line and column.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from exc


def describe(value: Any) -> str:
    """How a wrong value reads in an error, in the words of the file's author, not Python's."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


class ConfigReader:
    """Checks shared by the validators of one parsed file.

    Subclasses add the checks of their own section and track the dotted key
    themselves; every error goes through :meth:`fail` so it names ``where``.
    """

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str | None, message: str) -> ConfigError:
        """The error to raise: the caller raises it so control flow stays visible."""
        return ConfigError(message, source=self.where, key=key)

    def mapping(self, value: Any, key: str | None, allowed: tuple[str, ...]) -> dict[str, Any]:
        """``value`` as a mapping, refusing unknown keys so a typo never turns a setting off."""
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {describe(value)}")
        for name in value:
            if name not in allowed:
                prefix = f"{key}." if key else ""
                raise self.fail(
                    f"{prefix}{name}",
                    f"unknown key {name!r}; allowed keys: {', '.join(allowed)}",
                )
        return value

    def string_list(self, value: Any, key: str, *, item: str = "string") -> tuple[str, ...]:
        """A non-empty list of distinct non-empty strings (``item`` names them in errors).

        Repeats are refused because the lists read here are sets of names, where
        a repeat is a copy-paste slip rather than a wish.
        """
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list of {item}s, got {describe(value)}")
        for i, entry in enumerate(value):
            if not isinstance(entry, str) or not entry:
                raise self.fail(
                    f"{key}[{i}]", f"expected a non-empty {item}, got {describe(entry)}"
                )
        if len(set(value)) != len(value):
            raise self.fail(key, "names must not repeat")
        return tuple(value)
