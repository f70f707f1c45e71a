"""Every parser under hostile input: any bytes give accepted rows or per-line
rejections (never an exception, never a value no stage can carry), a bad line
never costs its neighbours, NaN and infinities are refused, a CSV header costs
linear time, and content that cannot be the source's format is refused whole."""

from __future__ import annotations

import io
import json
import math

import fastavro
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.ingest.batch import ParseResult
from services.ingest.formats import parse_payload
from services.ingest.formats.csv_format import MAX_COLUMNS
from services.ingest.formats.sniff import media_type_problem
from services.ingest.formats.strict_json import MAX_DEPTH
from services.ingest.records import raw_record, rejection_letters
from services.normalise.transform import numbers
from services.runtime.cities import CsvOptions, SourceConfig
from services.runtime.codec import parse_plain
from services.runtime.schemas import schema_for
from testkit.ingest_sources import parser_source

FORMATS = ("ndjson", "json", "csv", "sdm-keyvalues", "ngsi-v2-normalized", "ngsi-ld", "linky-tic")
_RAW = parse_plain(schema_for("RawRecord").expanded)
_LETTER = parse_plain(schema_for("DeadLetter").expanded)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


source = parser_source


def sources(fmt: str) -> SourceConfig:
    if fmt == "csv":
        return source("csv", "id", numeric=("v",), csv=CsvOptions(separator=","))
    if fmt in ("ndjson", "json"):
        return source(fmt, "id", numeric=("v",))
    return source(fmt, "ADSC" if fmt == "linky-tic" else "id")


def carried(result: ParseResult, src: SourceConfig) -> None:
    """What the parser gave can travel: every RawRecord and dead letter encodes, and
    no accepted number is NaN or infinite."""
    for entity in result.entities:
        for values in entity.columns.values():
            assert not any(type(v) is float and not math.isfinite(v) for v in values)
        record = raw_record(entity, src, lineage_id="l", received_at_us=0)
        fastavro.schemaless_writer(io.BytesIO(), _RAW, record)
    for rejection in result.rejected:
        raw_letters, letter = rejection_letters(rejection, src, "l")
        for written in (*raw_letters, letter):
            fastavro.schemaless_writer(io.BytesIO(), _LETTER, written)


# JSON-ish tokens: hostile pieces among ordinary ones, so that the fuzzer builds
# near-misses (a NaN inside an object, a surrogate in a key) and not only noise.
_TOKENS = st.sampled_from(
    [
        "{", "}", "[", "]", ",", ":", '"id"', '"v"', '"a"', '"x"', "1", "-2.5", "null",
        "true", "NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '"\\udc00x"',
        '"\\ud83d\\ude00"', '"NaN"', '"inf"', "\n", " ", '"', "\\", '"type"', '"T"',
        '"value"', "\x00", "é",
    ]
)  # fmt: skip
_JSONISH = st.lists(_TOKENS, max_size=40).map(lambda parts: "".join(parts).encode())
_HOSTILE = st.one_of(st.binary(max_size=300), _JSONISH)
DEEP = b'{"id": "d", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@FUZZ
@given(fmt=st.sampled_from(FORMATS), data=_HOSTILE)
@example(fmt="ndjson", data=b'{"id": "a", "v": 1}\n{"id": "b", "x": "\\ud800"}')
@example(fmt="json", data=b'[{"id": "a", "x": NaN}]')
@example(fmt="sdm-keyvalues", data=b'[{"id": "a", "type": "T", "x": Infinity}]')
@example(fmt="ndjson", data=DEEP)
@example(fmt="json", data=b"[" + DEEP + b"]")
def test_any_bytes_give_rows_or_rejections_never_an_exception(fmt: str, data: bytes) -> None:
    src = sources(fmt)
    result = parse_payload(data, src)
    assert result.accepted_rows == sum(e.row_count for e in result.entities)
    carried(result, src)


# --- a bad line among good ones ---------------------------------------------------------

GOOD = [{"id": f"m{i}", "v": i} for i in range(6)]


def _good_ids(result: ParseResult) -> set[str]:
    return {e.entity_id for e in result.entities if e.entity_id.startswith("m")}


@FUZZ
@given(bad=_HOSTILE, at=st.integers(0, len(GOOD)))
@example(bad=b'{"id": "x", "v": NaN}', at=2)
@example(bad=b'{"id": "x", "y": "\\ud800"}', at=2)
@example(bad=b'{"id": "x", "id": "y"}', at=2)
@example(bad=DEEP, at=3)
def test_a_bad_ndjson_line_never_costs_its_neighbours(bad: bytes, at: int) -> None:
    src = sources("ndjson")
    lines = [json.dumps(g).encode() for g in GOOD]
    lines.insert(at, bad.replace(b"\n", b" "))
    result = parse_payload(b"\n".join(lines), src)
    assert _good_ids(result) >= {g["id"] for g in GOOD}
    carried(result, src)


_ITEMS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["id", "v", "type", "x"]), children, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(fmt=st.sampled_from(["json", "sdm-keyvalues", "ngsi-ld"]), bad=_ITEMS, at=st.integers(0, 6))
@example(fmt="json", bad={"id": "x", "v": float("nan")}, at=1)
@example(fmt="sdm-keyvalues", bad={"id": "x", "x": "\ud800"}, at=1)
def test_a_bad_json_item_never_costs_its_neighbours(fmt: str, bad: object, at: int) -> None:
    src = sources(fmt)
    items = [json.dumps({**g, "type": "T"}) if fmt != "json" else json.dumps(g) for g in GOOD]
    items.insert(at, json.dumps(bad, ensure_ascii=True))  # NaN and surrogates written as JSON
    result = parse_payload(("[" + ",".join(items) + "]").encode(), src)
    assert _good_ids(result) >= {g["id"] for g in GOOD}
    carried(result, src)


@FUZZ
@given(bad=st.text(max_size=60), at=st.integers(0, len(GOOD)))
@example(bad='"m9,5', at=1)  # a stray quote ran to the end of the payload
@example(bad="m9,NaN", at=1)
@example(bad=',"', at=0)  # a stray quote on the first line after the header
def test_a_bad_csv_line_never_costs_its_neighbours(bad: str, at: int) -> None:
    src = sources("csv")
    lines = [f"{g['id']},{g['v']}" for g in GOOD]
    lines.insert(at, bad.replace("\n", " ").replace("\r", " "))
    result = parse_payload(("id,v\n" + "\n".join(lines) + "\n").encode(), src)
    assert _good_ids(result) >= {g["id"] for g in GOOD}
    carried(result, src)


@pytest.mark.parametrize(
    "last",
    [
        ',"12 rue de la Paix\nm9,Paris",7',  # no entity
        'm2,"12 rue de la Paix\nm9,Paris",NaN',  # a value refused
        'm2,"{""type"": ""Point"",\nm3,""coordinates"": [2.35, 48.85]}",oops',
    ],
)
def test_a_quoted_cell_over_two_lines_at_the_end_never_becomes_rows(last: str) -> None:
    """A record whose quotes close, refused, happens to be the payload's last: its
    continuation line is part of a cell, never a row of its own (read again, `m9,Paris"`
    would pass for meter m9 with the wrong data)."""
    src = parser_source("csv", "id", numeric=("v",), csv=CsvOptions(separator=","))
    result = parse_payload(f"id,addr,v\nm1,a,1\n{last}\n".encode(), src)
    assert sorted(e.entity_id for e in result.entities) == ["m1"]
    assert len(result.rejected) == 1


def tic_group(label: str, data: str) -> bytes:
    covered = f"{label}\t{data}\t"
    return f"\n{covered}{chr((sum(covered.encode('latin-1')) & 0x3F) + 0x20)}\r".encode("latin-1")


def tic_frame(meter: str, east: str) -> bytes:
    return b"\x02" + tic_group("ADSC", meter) + tic_group("EAST", east) + b"\x03"


@FUZZ
@given(bad=st.binary(max_size=80), at=st.integers(0, 4))
@example(bad=tic_group("ADSC", "x9") + tic_group("EAST", "NaN"), at=2)
def test_a_bad_tic_frame_never_costs_its_neighbours(bad: bytes, at: int) -> None:
    src = sources("linky-tic")
    frames = [tic_frame(f"m{i}", f"{i:09d}") for i in range(4)]
    frames.insert(at, b"\x02" + bad.replace(b"\x02", b"").replace(b"\x03", b"") + b"\x03")
    result = parse_payload(b"".join(frames), src)
    assert _good_ids(result) >= {f"m{i}" for i in range(4)}
    carried(result, src)


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "bad"),
    [
        ("ndjson", b'{"id": "x", "v": NaN}'),
        ("ndjson", b'{"id": "x", "v": -Infinity}'),
        ("ndjson", b'{"id": "x", "v": 1e999}'),
        ("ndjson", b'{"id": "x", "v": "NaN"}'),
        ("ndjson", b'{"id": "x", "other": Infinity}'),
        ("csv", b"x,NaN"),
        ("csv", b"x,-inf"),
        ("csv", b"x,1e999"),
    ],
)
def test_nan_and_infinities_are_a_bad_number_alone(fmt: str, bad: bytes) -> None:
    src = sources(fmt)
    good = [
        json.dumps(g).encode() if fmt == "ndjson" else b"%s,%d" % (g["id"].encode(), g["v"])
        for g in GOOD[:2]
    ]
    body = b"\n".join([*([b"id,v"] if fmt == "csv" else []), good[0], bad, good[1]])
    result = parse_payload(body, src)
    assert [r.reason for r in result.rejected] == ["bad-number"]
    assert _good_ids(result) == {"m0", "m1"}


def test_a_tic_frame_holding_nan_is_a_bad_number_alone() -> None:
    frames = tic_frame("m1", "000000001") + tic_frame("m2", "NaN") + tic_frame("m3", "inf")
    result = parse_payload(frames + tic_frame("m4", "000000004"), sources("linky-tic"))
    assert [r.reason for r in result.rejected] == ["bad-number", "bad-number"]
    assert _good_ids(result) == {"m1", "m4"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"id": "x", "v": 1, "v": 2}', "duplicate-key"),
        (b'{"id": "x", "loc": {"a": 1, "a": 2}}', "duplicate-key"),
        (b'{"id": "x", "v" : 1, "v"\t: 2}', "duplicate-key"),  # blanks before the colon
        (b'{"id": "x", "t": "08:00:00", "v": 1, "v": 2}', "duplicate-key"),  # colons in text
        (b'{"id": "x", "note": "\\":", "v": 1, "v": 2}', "duplicate-key"),  # a key end in text
        (b'{"id": "x", "note": "\\ud800"}', "bad-unicode"),
        (b'{"id": "x", "\\udfff": 1}', "bad-unicode"),
        (b'{"id": "x", "n": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "too-deep"),
        (DEEP, "too-deep"),
    ],
)
def test_json_faults_are_named_per_line(line: bytes, reason: str) -> None:
    pair = b'{"id": "m1", "note": "\\ud83d\\ude00", "loc": {"a": 1}}'  # a valid pair: kept
    result = parse_payload(b"\n".join([pair, line, b'{"id": "m2", "v": 2}']), sources("ndjson"))
    assert [(r.position, r.reason) for r in result.rejected] == [("line 2", reason)]
    assert _good_ids(result) == {"m1", "m2"}


def test_normalise_reads_nan_text_and_infinities_as_unreadable() -> None:
    strings = {"kind": "string", "strings": ["1.5", "NaN", "inf", "-Infinity", ""], "missing": [4]}
    assert numbers(strings) == ([1.5, None, None, None, None], 3)
    doubles = {"kind": "double", "doubles": [1.0, math.nan, math.inf], "missing": []}
    assert numbers(doubles) == ([1.0, None, None], 2)


# --- CSV headers, format sniff, Content-Type ---------------------------------------------


def test_a_twenty_thousand_column_header_is_refused_with_its_reason() -> None:
    header = ",".join(["id", "v", *(["dup"] * 19_998)])
    result = parse_payload(f"{header}\nm1,1\n".encode(), sources("csv"))
    [rejection] = result.rejected
    assert rejection.reason == "too-many-columns" and f"{MAX_COLUMNS:,}" in rejection.message
    assert result.accepted_rows == 0


def test_a_wide_header_repeating_names_is_named_briefly() -> None:
    header = ",".join(["id", "v", *([f"c{i % 900}" for i in range(1_800)])])
    result = parse_payload(f"{header}\nm1,1\n".encode(), sources("csv"))
    [rejection] = result.rejected
    assert rejection.reason == "bad-header" and "and 1780 more" in rejection.message
    assert len(rejection.message) < 300


@pytest.mark.parametrize(
    ("fmt", "body", "reason"),
    [
        ("linky-tic", b"hello, this is not a meter\nnor is this line\n", "not-tic"),
        ("linky-tic", b"id,v\nm1,1\n", "not-tic"),
        ("ndjson", b"id,v\nm1,1\nm2,2\n", "not-ndjson"),
        ("csv", b'{"id": "m1", "v": 1}\n', "not-csv"),
    ],
)
def test_content_that_cannot_be_the_format_is_one_rejection(
    fmt: str, body: bytes, reason: str
) -> None:
    result = parse_payload(body, sources(fmt))
    assert [(r.position, r.reason) for r in result.rejected] == [("payload", reason)]
    assert result.rejected[0].original == body and result.accepted_rows == 0


def test_a_capture_of_partial_frames_only_is_still_tic() -> None:
    partial = tic_group("EAST", "000000001") + b"\x03" + b"\x02" + tic_group("ADSC", "m1")
    result = parse_payload(partial, sources("linky-tic"))
    assert result.rejected == [] and result.skipped == 2


@pytest.mark.parametrize(
    ("content_type", "fmt", "refused"),
    [
        (None, "linky-tic", False),
        ("application/octet-stream", "ndjson", False),
        ("text/plain; charset=utf-8", "csv", False),
        ("application/x-www-form-urlencoded", "ndjson", False),  # curl -d
        ("application/x-ndjson", "ndjson", False),
        ("application/json", "ndjson", False),
        ("application/ld+json", "ngsi-ld", False),
        ("application/geo+json", "json", False),
        ("text/csv; charset=windows-1252", "csv", False),
        ("text/csv", "ndjson", True),
        ("application/json", "csv", True),
        ("application/json", "linky-tic", True),
        ("multipart/form-data; boundary=x", "csv", True),
        ("image/png", "sdm-keyvalues", True),
    ],
)
def test_a_content_type_naming_another_format_is_refused(
    content_type: str | None, fmt: str, refused: bool
) -> None:
    problem = media_type_problem(content_type, fmt)
    assert (problem is not None) == refused
    if refused:
        assert fmt in problem and "octet-stream" in problem


_PAIRS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c:", 'd\\":']),
        st.sampled_from(["1", '"08:00"', '"x\\":"', "[1, [2]]", '{"e": 1}', '{"e": 1, "e": 2}']),
        st.sampled_from([":", " :", "\t:", ": ", ":\t"]),
    ),
    max_size=4,
)


@FUZZ
@given(lines=st.lists(_PAIRS, min_size=1, max_size=5), fmt=st.sampled_from(["ndjson", "json"]))
def test_a_repeated_key_is_never_kept_whatever_the_spacing(lines, fmt: str) -> None:
    """The fast path vouches for a batch from its text: a repeated key, at any level
    and with any blanks before its colon, must still be refused."""
    texts = []
    expected = []
    for number, pairs in enumerate(lines):
        members = [f'"id"{pairs[0][2] if pairs else ":"}"m{number}"']
        members += [f'"{key}"{colon}{value}' for key, value, colon in pairs]
        texts.append("{" + ", ".join(members) + "}")
        names = ["id", *(key for key, _, _ in pairs)]
        repeated = len(set(names)) != len(names) or any('"e": 1, "e"' in v for _, v, _ in pairs)
        expected.append(repeated)
    body = "\n".join(texts) if fmt == "ndjson" else "[" + ",".join(texts) + "]"
    result = parse_payload(body.encode(), sources(fmt))
    refused = {r.position for r in result.rejected if r.reason == "duplicate-key"}
    unit = "line" if fmt == "ndjson" else "item"
    assert refused == {f"{unit} {n + 1}" for n, bad in enumerate(expected) if bad}
    assert _good_ids(result) == {f"m{n}" for n, bad in enumerate(expected) if not bad}


def test_what_citeplus_simulate_sends_is_never_refused_as_the_wrong_type() -> None:
    from services.simulate.formats import CONTENT_TYPES

    assert {fmt: media_type_problem(t, fmt) for fmt, t in CONTENT_TYPES.items()} == {
        fmt: None for fmt in CONTENT_TYPES
    }
