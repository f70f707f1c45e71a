"""Column records (avro/Column.avsc) as anonymise reads and writes them.

A column holds one typed array (named by ``kind``) and the positions that have
no value; the placeholder at those positions is meaningless. Helpers here work
on whole arrays so that no per-reading object is ever built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.privacy.pseudonym import Pseudonymiser

Cell = str | float | int | bool | None

ARRAY_OF = {"string": "strings", "double": "doubles", "long": "longs", "boolean": "booleans"}
PLACEHOLDER: dict[str, Any] = {"string": "", "double": 0.0, "long": 0, "boolean": False}


def typed(column: dict[str, Any]) -> list[Any]:
    """The column's value array (placeholders at missing positions)."""
    return column[ARRAY_OF[column["kind"]]]


def present(column: dict[str, Any]) -> int:
    """How many positions hold a value."""
    return len(typed(column)) - len(column["missing"])


def make(name: str, kind: str, values: list[Any], missing: Sequence[int] = ()) -> dict[str, Any]:
    """A Column record whose ``kind`` array is ``values`` (placeholders already in place)."""
    column: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "strings": [],
        "doubles": [],
        "longs": [],
        "booleans": [],
        "missing": sorted(missing),
    }
    column[ARRAY_OF[kind]] = values
    return column


def renamed(column: dict[str, Any], name: str) -> dict[str, Any]:
    return {**column, "name": name}


def with_removed(column: dict[str, Any], positions: Sequence[int]) -> dict[str, Any]:
    """The same column with the values at ``positions`` removed (made missing)."""
    if not positions:
        return column
    kind = column["kind"]
    values = list(typed(column))
    placeholder = PLACEHOLDER[kind]
    for i in positions:
        values[i] = placeholder
    return make(column["name"], kind, values, set(column["missing"]).union(positions))


def cleaned(column: dict[str, Any]) -> dict[str, Any]:
    """The column as a reader sees it, and nothing else: its own array (the one its
    kind names) with the placeholder at every missing position, the other arrays
    empty. No rule and no safety net looks at a missing position or at another
    kind's array, so whatever a raw record carried there would otherwise go on
    untouched (to anonymised, and to the redacted dead letter)."""
    kind = column["kind"]
    own = ARRAY_OF[kind]
    missing = column["missing"]
    values = typed(column)
    placeholder = PLACEHOLDER[kind]
    foreign = any(column.get(array) for array in ARRAY_OF.values() if array != own)
    hidden = any(
        values[i] != placeholder or type(values[i]) is not type(placeholder) for i in missing
    )
    if not foreign and not hidden:
        return column
    values = list(values)
    for i in missing:
        values[i] = placeholder
    return make(column["name"], kind, values, missing)


def cells(column: dict[str, Any]) -> list[Cell]:
    """The values with ``None`` at missing positions."""
    values: list[Cell] = list(typed(column))
    for i in column["missing"]:
        values[i] = None
    return values


def as_text(column: dict[str, Any]) -> list[str]:
    """The values as text (placeholders stay in place), as identifiers are hashed."""
    kind = column["kind"]
    values = typed(column)
    if kind == "string":
        return values
    if kind == "boolean":
        return ["true" if v else "false" for v in values]
    if kind == "long":
        return [str(v) for v in values]
    return [repr(v) for v in values]


def pseudonymised(column: dict[str, Any], pseudonymise: Pseudonymiser) -> dict[str, Any]:
    """An identifier column pseudonymised, one HMAC per distinct value."""
    texts = as_text(column)
    missing = column["missing"]
    mapping = {text: pseudonymise(text) for text in set(texts)}
    out = [mapping[text] for text in texts]
    for i in missing:
        out[i] = ""
    return make(column["name"], "string", out, missing)


def take(column: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The column restricted to ``rows`` (positions, in the order given), as a new column.

    Used to split one entity's message by key epoch: one pass over the array, the
    missing positions renumbered.
    """
    values = typed(column)
    missing = column["missing"]
    if missing:
        position = {old: new for new, old in enumerate(rows)}
        kept_missing = [position[i] for i in missing if i in position]
    else:
        kept_missing = []
    return make(column["name"], column["kind"], [values[i] for i in rows], kept_missing)
