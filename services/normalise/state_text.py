"""The changelog text of an entity-metric state, built from the text of the state
it replaces.

Why: a sensor sending one reading every 10 minutes keeps the ~288 values of its
48 h lateness window in its state (``vals``, versions.py), and the whole state is
rewritten to the changelog with every reading; json turned each float back into
text every time (130-258 µs a reading, almost all float-to-text). Between two
readings a segment of values only loses some at its front (the horizon moves) and
gains some at its end, so its text is the previous one cut and extended: one float
encoded, not 288.

The text must stay exactly ``json.JSONEncoder(separators=(",", ":")).encode(state)``:
the restore reads it with ``json.loads`` and compacted changelogs hold texts of
that form. So a previous segment's text is reused only for values that are the
very same objects, at the same positions (a float is immutable: the same object
always has the same text), checked value by value; anything else (another shape,
a value that is not a float or int, a key that is not a string) is encoded by json
itself. States are never changed in place (memory.py and versions.py build new
lists; the store's rollback relies on it too), so the list a memo refers to still
holds the values its text was made of; its length is checked all the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from operator import is_
from typing import Any

_JSON = json.JSONEncoder(separators=(",", ":"))
_VALS = "vals"
_HOLE = f"{_JSON.encode(_VALS)}:0"  # "vals":0, where the segments' text goes
_SCALARS = (float, int)  # their texts hold no comma: a segment's text is cut at commas
_FIRST = ("runs", "hwm", _VALS)  # an entity's first state, in the order memory.py builds it
_INFINITY = float("inf")


@dataclass(frozen=True, slots=True)
class SegmentText:
    """The text of one segment's values, as json joins them (``1.5,2.0,...``)."""

    begin: Any
    step: Any
    values: list[Any]  # the state's own list (not a copy: no memory twice)
    count: int  # len(values) when encoded
    text: str


Memo = tuple[SegmentText, ...]


def encode(state: Any, memo: Any = None) -> tuple[str, Memo | None]:
    """The state's JSON text and the memo to keep beside it for the next state's;
    ``memo``: the one kept beside the state this one replaces (None: none, e.g.
    after a restore; anything but a Memo is ignored)."""
    if memo is None and type(state) is dict:
        first = _first_text(state)
        if first is not None:
            return first, None
    segments = state.get(_VALS) if type(state) is dict else None
    if type(segments) is not list or any(type(key) is not str for key in state):
        return _JSON.encode(state), None
    around = _JSON.encode({**state, _VALS: 0}).split(_HOLE)
    if len(around) != 2:  # "vals":0 inside another value too: json decides
        return _JSON.encode(state), None
    previous = memo if type(memo) is tuple else ()
    texts, kept = [], []
    for segment in segments:
        text, remembered = _segment_text(segment, previous)
        texts.append(text)
        if remembered is not None:
            kept.append(remembered)
    text = f'{around[0]}"{_VALS}":[{",".join(texts)}]{around[1]}'
    return text, tuple(kept) or None


def _first_text(state: dict[Any, Any]) -> str | None:
    """The text of an entity's first state, ``{"runs":[[t,0,1]],"hwm":t,"vals":[[t,0,[v]]]}``
    (one reading), written straight; None: another state (json decides).

    Why: a batch of single readings from new meters writes one such state per
    reading, and two json encodes plus the segment's bookkeeping cost ~6 µs of it.
    No memo goes with it: a one-value segment's text is one number, and the next
    state's text encodes two values instead of one (the memo starts there)."""
    parts = _first_parts(state)
    if parts is None:
        return None
    start, every, count, hwm, begin, step, value = parts
    if (
        not type(start)
        is type(every)
        is type(count)
        is type(hwm)
        is type(begin)
        is type(step)
        is int
    ):
        return None
    text = _number_text(value)
    if text is None:
        return None
    return f'{{"runs":[[{start},{every},{count}]],"hwm":{hwm},"vals":[[{begin},{step},[{text}]]]}}'


def _first_parts(state: dict[Any, Any]) -> tuple[Any, ...] | None:
    """A first state's run (start, step, count), hwm, segment's begin and step, and
    value; None: keys, containers or lengths of another state."""
    if tuple(state) != _FIRST:
        return None
    runs, hwm, segments = state.values()
    if type(runs) is not list or type(segments) is not list or len(runs) != 1 or len(segments) != 1:
        return None
    run, segment = runs[0], segments[0]
    if type(run) is not list or type(segment) is not list or len(run) != 3 or len(segment) != 3:
        return None
    begin, step, values = segment
    if type(values) is not list or len(values) != 1:
        return None
    return (*run, hwm, begin, step, values[0])


def _number_text(value: Any) -> str | None:
    """json's text of an int or a float (None: another type, json decides)."""
    kind = type(value)
    if kind is int or (kind is float and -_INFINITY < value < _INFINITY):
        return repr(value)  # what json writes for an int or a finite float
    if kind is float:
        return _JSON.encode(value)  # NaN, Infinity, -Infinity
    return None


def _segment_text(segment: Any, previous: Memo) -> tuple[str, SegmentText | None]:
    """One segment's text, and what to remember of it (None: json encoded it whole,
    or a value is neither a float nor an int)."""
    if type(segment) is not list or len(segment) != 3 or type(segment[2]) is not list:
        return _JSON.encode(segment), None
    begin, step, values = segment
    joined, scalars = _values_text(begin, step, values, previous)
    if type(begin) is int and type(step) is int:
        head = f"[{begin},{step},"
    else:
        head = _JSON.encode([begin, step])[:-1] + ","
    remembered = SegmentText(begin, step, values, len(values), joined) if scalars else None
    return f"{head}[{joined}]]", remembered


def _values_text(begin: Any, step: Any, values: list[Any], previous: Memo) -> tuple[str, bool]:
    """The segment's values joined, from a previous segment's text where its values
    are the same objects; and whether every value is a float or an int (a text
    that can be cut at commas, worth a memo)."""
    for old in previous:
        skip = _skip(old, begin, step)
        if skip is None or len(old.values) != old.count:
            continue
        same = old.count - skip
        if same > len(values) or not all(
            map(is_, islice(values, same), islice(old.values, skip, None))
        ):
            continue
        head = _cut(old.text, skip) if same else ""
        added = values[same:]
        if not added:
            return head, True
        tail = _JSON.encode(added)[1:-1]
        scalars = all(type(v) in _SCALARS for v in added)
        return (f"{head},{tail}" if head else tail), scalars
    return _JSON.encode(values)[1:-1], all(type(v) in _SCALARS for v in values)


def _skip(old: SegmentText, begin: Any, step: Any) -> int | None:
    """How many of the old segment's first values the new one no longer holds, when
    it starts at one of the old segment's times (None: it does not)."""
    if begin == old.begin and type(begin) is type(old.begin):
        return 0
    if (
        type(begin) is int
        and type(old.begin) is int
        and step == old.step
        and type(step) is int
        and step > 0
        and begin > old.begin
        and (begin - old.begin) % step == 0
    ):
        skip = (begin - old.begin) // step
        return skip if skip <= old.count else None
    return None


def _cut(text: str, skip: int) -> str:
    """``text`` (values joined by commas, none in a value) without its first ``skip``."""
    at = 0
    for _ in range(skip):
        at = text.index(",", at) + 1
    return text[at:]
