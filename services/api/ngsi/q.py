"""The NGSI-LD query language (``q``) on attribute values, turned into disjunctive
normal form: the ``any_of`` groups of ``ValueCondition`` a federation node evaluates.

Supported: ``;`` (AND, binds tighter), ``|`` (OR), parentheses, ``== != < <= > >=``
on numbers, ranges ``a..b`` and lists ``a,b`` with ``==`` / ``!=``. Refused with a
400 that names the construct: strings, dates, booleans, patterns (``~=``, ``!~=``),
attribute paths (``a.b``, ``a[b]``), bare attributes (existence). An attribute no
entity type carries matches nothing, as NGSI-LD says, so its alternative is dropped.
The expansion is bounded: a ``q`` that would exceed :data:`MAX_GROUPS` alternatives
or :data:`MAX_CONDITIONS` conditions in one is refused, never computed.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from services.api.ngsi.problems import NgsiError, bad_data, shown

MAX_Q_LENGTH = 2000
MAX_DEPTH = 16
MAX_GROUPS = 10  # the federation API takes at most 10 groups of 10 conditions
MAX_CONDITIONS = 10
OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, order=True)
class Condition:
    """``metric <op> value``; op is one of ``== != < <= > >=``."""

    metric: str
    op: str
    value: float


Dnf = tuple[tuple[Condition, ...], ...]  # OR of ANDs; () matches nothing, ((),) everything
TRUE: Dnf = ((),)
FALSE: Dnf = ()
Resolver = Callable[[str], tuple[str, ...]]


def parse_q(text: str, resolve: Resolver) -> Dnf:
    """``q`` as DNF over metrics; ``resolve`` gives the metrics an attribute names."""
    if len(text) > MAX_Q_LENGTH:
        raise bad_data(f"q is {len(text)} characters long; at most {MAX_Q_LENGTH} are accepted")
    if not text.strip():
        raise bad_data("q is empty: leave it out to match every entity")
    parser = _Parser(text, resolve)
    result = parser.disjunction(0)
    if parser.pos != len(text):
        raise parser.error("unexpected character")
    return result


def or_(left: Dnf, right: Dnf) -> Dnf:
    merged = tuple(dict.fromkeys(left + right))
    _bound(merged)
    return merged


def and_(left: Dnf, right: Dnf) -> Dnf:
    if len(left) * len(right) > MAX_GROUPS:
        raise _too_big()
    groups = tuple(tuple(sorted(set(a + b))) for a, b in itertools.product(left, right))
    merged = tuple(dict.fromkeys(groups))
    _bound(merged)
    return merged


def _bound(groups: Dnf) -> None:
    if len(groups) > MAX_GROUPS or any(len(g) > MAX_CONDITIONS for g in groups):
        raise _too_big()


def _too_big() -> NgsiError:
    return bad_data(
        f"q expands to more than {MAX_GROUPS} alternatives or {MAX_CONDITIONS} conditions "
        "in one; split the request or simplify the expression"
    )


class _Parser:
    def __init__(self, text: str, resolve: Resolver):
        self.text, self.pos, self.resolve = text, 0, resolve

    def error(self, what: str) -> NgsiError:
        near = shown(self.text[self.pos : self.pos + 20]) if self.pos < len(self.text) else "end"
        return bad_data(f"q: {what} at position {self.pos} (near {near})")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def disjunction(self, depth: int) -> Dnf:
        result = self.conjunction(depth)
        while self.peek() == "|":
            self.pos += 1
            result = or_(result, self.conjunction(depth))
        return result

    def conjunction(self, depth: int) -> Dnf:
        result = self.operand(depth)
        while self.peek() == ";":
            self.pos += 1
            result = and_(result, self.operand(depth))
        return result

    def operand(self, depth: int) -> Dnf:
        if self.peek() != "(":
            return self.term()
        if depth >= MAX_DEPTH:
            raise self.error(f"parentheses nested deeper than {MAX_DEPTH}")
        self.pos += 1
        result = self.disjunction(depth + 1)
        if self.peek() != ")":
            raise self.error("expected ')'")
        self.pos += 1
        return result

    def term(self) -> Dnf:
        match = ATTRIBUTE.match(self.text, self.pos)
        if not match:
            raise self.error("expected an attribute name")
        attribute = match.group()
        self.pos = match.end()
        if self.peek() in (".", "["):
            raise self.error(
                f"attribute paths ({attribute}{self.peek()}...) are not supported; "
                "compare the attribute's value itself"
            )
        op = self.operator(attribute)
        value = self.value_text()
        return _term(attribute, op, value, self.resolve(attribute), self)

    def operator(self, attribute: str) -> str:
        for op in ("~=", "!~="):
            if self.text.startswith(op, self.pos):
                raise self.error(f"pattern matching ({op}) is not supported")
        for op in OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        if self.peek() in ("", ";", "|", ")"):
            raise self.error(
                f"a bare attribute ({attribute}: existence) is not supported; "
                "use attrs to select entities that carry it"
            )
        raise self.error("expected one of == != < <= > >=")

    def value_text(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ";|()":
            if self.text[self.pos] in "\"'":
                raise self.error("text values are not supported; compare numbers")
            self.pos += 1
        return self.text[start : self.pos]


def _term(attribute: str, op: str, raw: str, metrics: tuple[str, ...], parser: _Parser) -> Dnf:
    """One comparison on every metric the attribute stands for (OR across them)."""
    if ".." in raw:
        low, high = (_number(part, parser) for part in _split_range(raw, parser))
        if op not in ("==", "!="):
            raise parser.error("a range a..b goes with == or != only")
        if low > high:
            raise parser.error(f"empty range {low:g}..{high:g}")
        per_metric = [_range(m, op, low, high) for m in metrics]
    elif "," in raw:
        values = [_number(part, parser) for part in raw.split(",")]
        if op not in ("==", "!="):
            raise parser.error("a list a,b goes with == or != only")
        per_metric = [_listed(m, op, values) for m in metrics]
    else:
        value = _number(raw, parser)
        per_metric = [((Condition(m, op, value),),) for m in metrics]
    result: Dnf = FALSE
    for dnf in per_metric:
        result = or_(result, dnf)
    return result


def _split_range(raw: str, parser: _Parser) -> tuple[str, str]:
    parts = raw.split("..")
    if len(parts) != 2:
        raise parser.error(f"expected a range a..b, got {shown(raw)}")
    return parts[0], parts[1]


def _range(metric: str, op: str, low: float, high: float) -> Dnf:
    if op == "==":
        return ((Condition(metric, ">=", low), Condition(metric, "<=", high)),)
    return ((Condition(metric, "<", low),), (Condition(metric, ">", high),))


def _listed(metric: str, op: str, values: list[float]) -> Dnf:
    if op == "==":
        return tuple((Condition(metric, "==", v),) for v in dict.fromkeys(values))
    return (tuple(Condition(metric, "!=", v) for v in dict.fromkeys(values)),)


def _number(raw: str, parser: _Parser) -> float:
    text = raw.strip()
    if not NUMBER.fullmatch(text):
        raise parser.error(
            f"value {shown(text)} is not a number: only numbers are compared "
            "(text, dates and booleans are not supported)"
        )
    value = float(text)
    if not math.isfinite(value):
        raise parser.error(f"value {shown(text)} is out of range")
    return value
