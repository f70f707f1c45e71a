"""CSV records over physical lines, where any line may start a record, in linear time.

The line by line CSV reader gives a refused multi-line record's lines back to be
read again, each as the start of a record of its own. Read naively, a payload of
stray quotes (``x","`` on every line: each record runs to the end) costs the
square of its size. Here each line is read alone, once from the start of a record
and once inside a quoted field (the only state a record carries from one line to
the next), and what a record starting anywhere would be (where it ends, how many
fields, whether a field outgrows the csv module's limit, whether its quote is still
open at the payload's end) comes from sums over the lines after it. A long record's cells are read
only when asked for, and each field a line starts is read once, so any payload
costs a few readings of each line whatever the input.
"""

from __future__ import annotations

import bisect
import csv
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, overload

# Fed after a line to close the quoted field it left open: in a quoted field `"`
# then a line break ends the record and adds nothing to the field.
_CLOSE = '"\n'


class Record(NamedTuple):
    """A record starting at line ``start`` (0-based) and ending before ``end``.

    ``unclosed``: it runs to the payload's end inside a quoted field that never
    closed (a stray quote swallowed every line after it).
    """

    start: int
    end: int
    fields: Sequence[str] | csv.Error
    unclosed: bool


class _Feed:
    """The endless line source of the csv readers: the next line is whatever was
    queued; counts what was read, so that tests can check the cost."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.chars = 0

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        return self.queue.popleft()


@dataclass
class _Segment:
    """Lines ``first``..``last`` read inside a quoted field, up to the first that
    closes it (or the payload's end): every record that runs past its start line
    into them ends with ``last``. Suffix sums answer for any start in O(1)."""

    first: int
    last: int
    fields: list[int]  # fields of the line read alone (the first continues a field)
    closes: list[bool]
    suffix_fields: list[int]  # fields added from this line to the end, one slot more
    carried: list[int]  # length a field continued into this line gains up to its end
    error_after: list[csv.Error | None]
    globals_: dict[int, str] = field(default_factory=dict)
    rests: dict[int, str] = field(default_factory=dict)
    negated: list[int] = field(default_factory=list)


class PhysicalRecords:
    """Reads the record starting at any line of ``lines``, each line being read a
    bounded number of times over all calls with increasing starts."""

    def __init__(self, lines: list[str], separator: str) -> None:
        self.lines = lines
        self.limit = csv.field_size_limit()
        self._feed = _Feed()
        self._loose = csv.reader(self._feed, delimiter=separator, quotechar='"')
        self._separator = separator
        self._segment: _Segment | None = None

    @property
    def chars_read(self) -> int:
        """Characters handed to the csv module so far (the parse's cost)."""
        return self._feed.chars

    def read(self, start: int) -> Record:
        """The record that starts at line ``start`` (not inside a quoted field)."""
        line = self.lines[start]
        if '"' not in line and len(line) <= self.limit:
            # No quote: the csv module would split on the separator (most lines).
            self._feed.chars += len(line)
            body = line.rstrip("\r\n")
            return Record(start, start + 1, body.split(self._separator) if body else [], False)
        fields, open_ = self._alone(line, quoted=False)
        if isinstance(fields, csv.Error) or not open_ or start + 1 == len(self.lines):
            return Record(start, start + 1, fields, False)
        seg = self._segment_from(start + 1)
        at = start + 1 - seg.first
        error = seg.error_after[at]
        if error is None and len(fields[-1]) + seg.carried[at] > self.limit:
            error = _too_large(self.limit)
        unclosed = not seg.closes[-1]  # (a segment stops at a close or at the end)
        if error is not None:
            return Record(start, seg.last + 1, error, unclosed)
        lazy = _LongRecord(self, seg, start, fields, len(fields) + seg.suffix_fields[at])
        return Record(start, seg.last + 1, lazy, unclosed)

    # --- reading one line ------------------------------------------------------------

    def _alone(self, line: str, quoted: bool) -> tuple[list[str] | csv.Error, bool]:
        """The fields of ``line`` read alone, from a record's start or inside a quoted
        field, and whether it leaves a quoted field open."""
        queue = self._feed.queue
        if quoted:
            queue.append('"')
        queue.append(line)
        queue.append(_CLOSE)
        self._feed.chars += len(line)
        try:
            fields: list[str] | csv.Error = next(self._loose)
        except csv.Error as exc:
            fields = exc
        open_ = not queue
        queue.clear()
        return fields, open_

    # --- the lines after a record's first one ---------------------------------------

    def _segment_from(self, first: int) -> _Segment:
        seg = self._segment
        if seg is not None and seg.first <= first <= seg.last:
            return seg
        seg = self._segment = self._scan(first)
        return seg

    def _scan(self, first: int) -> _Segment:
        lines, limit = self.lines, self.limit
        counts: list[int] = []
        closes: list[bool] = []
        leads: list[int] = []
        trails: list[int] = []
        errors: list[csv.Error | None] = []
        j = first
        while True:
            line = lines[j]
            if '"' not in line:  # inside a quoted field: all of it is field text
                fields: list[str] | csv.Error = [line]
                open_ = True
            else:
                fields, open_ = self._alone(line, quoted=True)
            if isinstance(fields, csv.Error):
                counts.append(1), leads.append(0), trails.append(0)
                errors.append(fields), closes.append(True)
                break
            counts.append(len(fields))
            leads.append(len(fields[0]))
            trails.append(len(fields[-1]))
            errors.append(None)
            closes.append(not open_)
            if not open_ or j + 1 == len(lines):
                break
            j += 1
        size = len(counts)
        suffix = [0] * (size + 1)
        carried = [0] * (size + 1)
        error_after: list[csv.Error | None] = [None] * (size + 1)
        for i in range(size - 1, -1, -1):
            suffix[i] = counts[i] - 1 + suffix[i + 1]
            ends_field = counts[i] > 1 or closes[i]
            carried[i] = leads[i] if ends_field else leads[i] + carried[i + 1]
            error = errors[i] or error_after[i + 1]
            if counts[i] > 1 and not closes[i] and trails[i] + carried[i + 1] > limit:
                error = _too_large(limit)
            error_after[i] = error
        return _Segment(first, j, counts, closes, suffix, carried, error_after)

    # --- cells of a long record, read when asked for ---------------------------------

    def rest_of_field(self, seg: _Segment, line: int) -> str:
        """The text a field left open before ``line`` gains from it to its end."""
        cached = seg.rests.get(line)
        if cached is not None:
            return cached
        parts: list[str] = []
        j = line
        while j <= seg.last:
            text = self.lines[j]
            if '"' in text:  # else all of it is field text
                fields, _ = self._alone(text, quoted=True)
                assert not isinstance(fields, csv.Error)  # records with errors are not read
                text = fields[0]
            parts.append(text)
            i = j - seg.first
            if seg.fields[i] > 1 or seg.closes[i]:
                break
            j += 1
        joined = seg.rests[line] = "".join(parts)
        return joined

    def field_from_end(self, seg: _Segment, back: int) -> str:
        """The field ``back`` places before the last of every record ending with the
        segment, started on one of its lines (the same whatever the record's start)."""
        cached = seg.globals_.get(back)
        if cached is not None:
            return cached
        # The line whose fields reach ``back``: the last with more fields after it.
        if not seg.negated:
            seg.negated = [-s for s in seg.suffix_fields]  # non-decreasing
        i = bisect.bisect_left(seg.negated, -back) - 1
        j = seg.first + i
        fields, _ = self._alone(self.lines[j], quoted=True)
        assert not isinstance(fields, csv.Error)
        index = seg.suffix_fields[i] - back
        text = fields[index]
        if index == len(fields) - 1 and not seg.closes[i]:
            text += self.rest_of_field(seg, j + 1)
        seg.globals_[back] = text
        return text

    def whole(self, start: int, end: int) -> list[str]:
        """The record of ``lines[start:end]`` read in one go."""
        chunk = self.lines[start:end]
        self._feed.chars += sum(map(len, chunk))
        reader = csv.reader(iter(chunk), delimiter=self._separator, quotechar='"')
        return next(reader)


class _LongRecord(Sequence[str]):
    """A record over several lines whose cells are read when asked for: a refused
    one is given back whole, so reading all of it each time would cost the square
    of the payload."""

    def __init__(
        self, records: PhysicalRecords, seg: _Segment, start: int, head: list[str], count: int
    ):
        self._records, self._seg, self._start = records, seg, start
        self._head, self._count = head, count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        head = self._head
        if index < len(head) - 1:
            return head[index]
        if index == len(head) - 1:
            return head[-1] + self._records.rest_of_field(self._seg, self._start + 1)
        return self._records.field_from_end(self._seg, self._count - 1 - index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records.whole(self._start, self._seg.last + 1))


def _too_large(limit: int) -> csv.Error:
    return csv.Error(f"field larger than field limit ({limit})")
