"""The CSV line by line reader: no line lost, and a cost linear in the payload
whatever its quotes.

The reader before the linear one is copied here as the reference, with one change:
a refused record over several lines that it kept (did not read again) lost the lines
after its first, which its dead letter now holds. On every payload the new reader
must give exactly the reference's rows and dead letters."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.ingest.batch import BatchBuilder, Cell, ParseResult
from services.ingest.formats import csv_format, csv_records, parse_payload
from services.ingest.formats.csv_format import (
    _Batch,
    _read_header,
    _read_record,
    _text,
    strict_line,
)
from services.runtime.cities import CsvOptions, SourceConfig
from testkit.ingest_sources import parser_source

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def meters(separator: str = ",") -> SourceConfig:
    return parser_source("csv", "id", numeric=("v",), csv=CsvOptions(separator=separator))


def by_line(text: str, src: SourceConfig) -> ParseResult:
    assert src.csv is not None
    return csv_format._parse_by_line(text.encode(), text, "utf-8", src.csv, src)


# --- the reference: the reader as it was (quadratic, and losing lines) --------------


class _OldPhysicalLines:
    def __init__(self, lines: list[str], options: CsvOptions):
        self.lines = lines
        self.options = options
        self._open(0)

    def _open(self, at: int) -> None:
        self.offset = at
        rest = (self.lines[i] for i in range(at, len(self.lines)))
        self.reader = csv.reader(rest, delimiter=self.options.separator, quotechar='"')

    def restart_after(self, line: int) -> None:
        self._open(line + 1)

    def __iter__(self) -> _OldPhysicalLines:
        return self

    def __next__(self) -> tuple[int, int, list[str] | csv.Error]:
        start = self.offset + self.reader.line_num
        try:
            record: list[str] | csv.Error = next(self.reader)
        except csv.Error as exc:
            record = exc
        return start, self.offset + self.reader.line_num, record


def _old_never_closed(lines: list[str], start: int, end: int, options: CsvOptions) -> bool:
    """Whether the record swallows a line added after it (its quote never closed).
    The probe's own lines may not push a field over the csv limit (the tests shrink
    it to a few characters): that would answer for the probe, not the record."""
    probe = csv.reader(
        iter([*lines[start:end], "\n", "end\n"]), delimiter=options.separator, quotechar='"'
    )
    limit = csv.field_size_limit(1 << 30)
    try:
        next(probe)
    except (csv.Error, StopIteration):
        return False
    finally:
        csv.field_size_limit(limit)
    return probe.line_num > end - start + 1


def old_parse_by_line(text: str, src: SourceConfig) -> ParseResult:
    """The former reader's result, a kept record's dead letter holding all its lines."""
    options = src.csv
    assert options is not None
    data, encoding = text.encode(), "utf-8"
    out = BatchBuilder()
    lines = io.StringIO(text, newline="").readlines()
    records = _OldPhysicalLines(lines, options)
    header = None
    rows: dict[str, list[list[Cell]]] = {}
    for start, end, record in records:
        if not isinstance(record, csv.Error) and not record:
            continue
        if header is None:
            header = _read_header(record, start, end, options, src, out, data)
            if header is None:
                return out.result()
            if options.header:
                continue
        multi_line = end - start > 1
        never_closed = end >= len(lines) and _old_never_closed(lines, start, end, options)
        if multi_line and never_closed and not isinstance(record, csv.Error):
            # the rule added since: a record whose quote never closed took every line
            # after it into one cell, so it is unreadable (and its lines are read again)
            record = csv.Error("a quote opened in this record is never closed")
        elif not multi_line:  # and text after a closing quote is no CSV field either
            record = strict_line(record, lines[start], options.separator)
        shape = isinstance(record, csv.Error) or len(record) != len(header.names)
        # The former decision (restart after a refused record of a wrong shape, or one
        # that never closed); a record it kept now has all its lines in its letter.
        kept = multi_line and not (shape or never_closed)
        original = _text(lines, start, end if kept else start + 1, encoding, header.lines)
        batch = _Batch(header, options, src, out, rows)
        refused = _read_record(record, f"line {start + 1}", original, batch)
        restart = multi_line and (
            refused in ("bad-csv", "wrong-column-count") or (refused is not None and never_closed)
        )
        if restart:
            records.restart_after(start)
    for entity, entity_rows in rows.items():
        transposed = zip(*entity_rows, strict=True)
        columns = dict(zip(header.names, map(list, transposed), strict=True)) if header else {}
        out.add_columns(entity, None, columns, len(entity_rows))
    return out.result()


# --- payloads ---------------------------------------------------------------------------

_PIECES = [
    "m{i},{i}",  # good
    ",{i}",  # no entity
    "m{i},x",  # not a number
    ',"',  # a stray quote that opens a cell
    'x","',  # closes and opens again
    '"m{i},5',  # a quote at a line's start
    'm{i},"{i}"',  # quoted, closes with a stray character when inside a quote
    'm{i},"12 rue\nParis",{i}',  # a quoted cell over two lines (3 columns)
    'm{i},"a""b"',  # an escaped quote
    'm{i},"{i}',  # a quote opened, never closed on its line
    'm{i}",{i}',  # a quote inside an unquoted cell
    "m{i},{i},extra",
    "",  # blank line
]
_PIECE = st.one_of(st.sampled_from(_PIECES), st.text(alphabet='ab1,;" \n', max_size=8))


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, str]:
    """(separator, text): a header then random good, bad and quoted lines."""
    separator = draw(st.sampled_from([",", ";"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    header = draw(st.sampled_from(["id,v", "id,addr,v"]))
    pieces = draw(st.lists(_PIECE, max_size=25))
    body = [header] + [p.format(i=i) for i, p in enumerate(pieces)]
    text = newline.join(body).replace(",", separator)
    text = text.replace("\r\n", "\n").replace("\n", newline)
    if draw(st.booleans()):
        text += newline
    return separator, text


@FUZZ
@given(payload=payloads())
@example(payload=(",", 'id,v\n,"\nm1,1\nm2,2\nm3,"3"\n'))
@example(payload=(",", 'id,v\nx","\nx","\nx","\n'))
@example(payload=(";", 'id;addr;v\r\nm1;"a\r\nb";x\r\nm2;1;2\r\n'))
@example(payload=(",", 'id,v\n"a\nb",1,"c\nd",NaN\n'))
def test_the_same_result_as_the_former_reader_with_no_line_lost(
    payload: tuple[str, str],
) -> None:
    separator, text = payload
    src = meters(separator)
    assert by_line(text, src) == old_parse_by_line(text, src)


# --- every line ends somewhere -----------------------------------------------------------


@st.composite
def tagged_payloads(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """(separator, text, tags): every data line carries a tag of its own."""
    separator = draw(st.sampled_from([",", ";"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    pieces = draw(st.lists(_PIECE.filter(lambda p: p != ""), min_size=1, max_size=25))
    lines, tags = ["id,addr,v"], []
    for i, piece in enumerate(pieces):
        for part in piece.format(i=i).split("\n"):
            tag = f"@{len(tags)}@"
            at = draw(st.integers(0, len(part)))
            lines.append(part[:at] + tag + part[at:])
            tags.append(tag)
    text = newline.join(lines).replace(",", separator) + newline
    return separator, text, tags


def _everywhere(result: ParseResult) -> str:
    """Every text the result keeps: entity ids, cells, dead letters' originals."""
    texts = [e.entity_id for e in result.entities]
    for entity in result.entities:
        texts += [str(v) for values in entity.columns.values() for v in values]
    texts += [r.original.decode() for r in result.rejected]
    return "\x00".join(texts)


@FUZZ
@given(payload=tagged_payloads())
@example(
    payload=(",", 'id,addr,v\n,"@0@\nm1,1@1@\nm2,2@2@\nm3,"3"@3@\n', ["@0@", "@1@", "@2@", "@3@"])
)
@example(payload=(",", 'id,addr,v\n,"@0@\nm1,1@1@\nm2,"@2@\n', ["@0@", "@1@", "@2@"]))
def test_every_data_line_ends_in_a_row_or_a_dead_letter(payload) -> None:
    separator, text, tags = payload
    result = parse_payload(text.encode(), meters(separator))
    kept = _everywhere(result)
    assert [tag for tag in tags if tag not in kept] == []


# --- the rule for refused records over several lines ----------------------------------


def test_a_stray_quote_closed_by_a_later_one_keeps_the_lines_between_in_its_letter() -> None:
    """`,"` opens a cell that `m3,"3"` closes, with the header's two fields: it cannot
    be told from a quoted cell over four lines, so it is not read again (its lines
    could pass for rows with the wrong data); its dead letter used to hold its first
    line alone, and m1, m2 and m3 were in no row and no letter."""
    result = parse_payload(b'id,v\n,"\nm1,1\nm2,2\nm3,"3"\nm4,4\n', meters())
    assert {e.entity_id: e.columns["v"] for e in result.entities} == {"m4": [4]}
    [letter] = result.rejected
    assert (letter.position, letter.reason, letter.original) == (
        "line 2",
        "missing-entity",
        b'id,v\n,"\nm1,1\nm2,2\nm3,"3"\n',
    )


def test_a_quote_that_never_closes_gives_its_lines_back() -> None:
    """`,"` opens a cell no later quote closes: it swallowed the rest of the payload,
    which is read again, line by line; it costs its own line alone."""
    result = parse_payload(b'id,v\nm0,0\n,"\nm1,1\nm2,2\n', meters())
    assert {e.entity_id: e.columns["v"] for e in result.entities} == {
        "m0": [0],
        "m1": [1],
        "m2": [2],
    }
    [letter] = result.rejected
    assert (letter.position, letter.original) == ("line 3", b'id,v\n,"\n')


def test_a_stray_quote_closed_cleanly_keeps_all_its_lines_in_its_dead_letter() -> None:
    """`m2,"` closes the cell `,"` opened as a quoted cell would: the lines between
    cannot be told from a cell's continuation, so they stay in the dead letter."""
    result = parse_payload(b'id,v\n,"\nm1,1\nm2,"\nm3,3\n', meters())
    assert [e.entity_id for e in result.entities] == ["m3"]
    [letter] = result.rejected
    assert (letter.position, letter.reason) == ("line 2", "missing-entity")
    assert letter.original == b'id,v\n,"\nm1,1\nm2,"\n'


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ('m9,"12 rue\r\nParis",NaN', "bad-number"),
        (',"12 rue\r\nParis",7', "missing-entity"),
    ],
)
def test_a_quoted_cell_over_two_lines_refused_is_rejected_whole(record: str, reason: str) -> None:
    """Refused for a value or its entity, its continuation line never passes for a
    row (meter `Paris"`), and its dead letter replays it whole. (Refused for its
    shape it is read again from its second line, as before: see the module.)"""
    body = f"id,addr,v\r\nm1,a,1\r\n{record}\r\nm2,b,2\r\n"
    result = parse_payload(body.encode(), meters())
    assert sorted(e.entity_id for e in result.entities) == ["m1", "m2"]
    [letter] = result.rejected
    assert (letter.position, letter.reason) == ("line 3", reason)
    assert letter.original == f"id,addr,v\r\n{record}\r\n".encode()


# --- cost ----------------------------------------------------------------------------------


def _chars_read(text: str, src: SourceConfig, monkeypatch: pytest.MonkeyPatch) -> int:
    readers: list[csv_records.PhysicalRecords] = []

    class Counted(csv_records.PhysicalRecords):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            readers.append(self)

    monkeypatch.setattr(csv_format, "PhysicalRecords", Counted)
    by_line(text, src)
    [reader] = readers
    return reader.chars_read


@pytest.mark.parametrize("lines", [1_000, 4_000, 16_000])
def test_quotes_that_never_close_cost_a_few_readings_of_each_line(
    lines: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `x","` opens a quote to the payload's end: read again from each line,
    as before, the payload costs the square of its size (16,000 lines: 640 M)."""
    text = "id,v\n" + 'x","\n' * lines
    result = by_line(text, meters())
    assert len(result.rejected) == lines  # the last, alone, leaves its quote open too
    assert _chars_read(text, meters(), monkeypatch) <= 5 * len(text)


@FUZZ
@given(payload=payloads(), times=st.integers(1, 20))
def test_any_payload_costs_a_few_readings_of_each_line(
    payload: tuple[str, str], times: int
) -> None:
    separator, text = payload
    text = text if text.endswith("\n") else text + "\n"
    head, _, body = text.partition("\n")
    text = head + "\n" + body * times
    with pytest.MonkeyPatch.context() as monkeypatch:
        cost = _chars_read(text, meters(separator), monkeypatch)
    longest = max(map(len, text.splitlines(keepends=True)))
    assert cost <= 6 * len(text) + 8 * longest


@FUZZ
@given(payload=payloads(), limit=st.integers(1, 12))
@example(payload=(",", 'id,v\n,"\nabcd\nefgh\nm1,"1"\n'), limit=6)
def test_fields_over_the_csv_limit_are_found_as_before(
    payload: tuple[str, str], limit: int
) -> None:
    """A field longer than the csv module's limit, even one spread over many lines,
    makes its record unreadable CSV exactly where the former reader said so."""
    separator, text = payload
    before = csv.field_size_limit(limit)
    try:
        expected = old_parse_by_line(text, meters(separator))
        result = by_line(text, meters(separator))
    finally:
        csv.field_size_limit(before)
    assert result == expected
