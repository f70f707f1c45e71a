"""Single readings column by column: for any payload, ingest's columnar path gives
exactly the messages -- raw.v2 batches and dead letters, byte for byte -- and the
answer the general path gives; it takes the requests it is for (distinct entities,
one line each) and leaves every other one to the general reader."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.batch import EntityRows
from services.ingest.core import IngestCore, IngestResult, IngestTopics
from services.ingest.formats.csv_singles import SingleReadings, single_readings
from services.ingest.raw_batches import raw_batches
from services.ingest.raw_columns import entity_partitions, single_reading_batches
from services.ingest.records import raw_key, raw_record
from services.ingest.shards import imploded
from services.runtime.batches import entity_partition
from services.runtime.cities import CsvOptions, SourceConfig
from testkit.codecs import offline_contracts

TOPICS = ("raw.v2", "dlq.v1", "raw.dlq.v1")
FIXED = {"lineage_id": "lineage", "received_at_us": 1_736_722_800_000_000}


def csv_source(
    *,
    separator: str = ";",
    decimal: str = ",",
    header: bool = True,
    columns: tuple[str, ...] | None = None,
    numeric: tuple[str, ...] = ("kwh",),
    entity: str = "prm",
    encoding: str = "utf-8",
) -> SourceConfig:
    return SourceConfig(
        id="meters",
        city="c",
        format="csv",
        dataset="load-curves",
        domain="energy",
        entity=entity,
        token="env:T",
        numeric=numeric,
        csv=CsvOptions(
            separator=separator, decimal=decimal, header=header, encoding=encoding, columns=columns
        ),
    )


@contextmanager
def same_letters() -> Iterator[None]:
    """Dead letters drawn with the same ids, salts and times on both paths."""
    counter = itertools.count()
    with (
        mock.patch("os.urandom", lambda n: next(counter).to_bytes(n, "big")),
        mock.patch("services.runtime.dlq.now_us", lambda: 1),
    ):
        yield


def prepared(core: IngestCore, source: SourceConfig, payload: bytes) -> Any:
    """What a path gives: its result, or the error it raised."""
    with same_letters():
        try:
            return core.prepare(source, payload, **FIXED)
        except Exception as exc:  # both paths must fail alike
            return type(exc), str(exc)


def summary(result: Any) -> Any:
    if not isinstance(result, IngestResult):
        return result
    return (
        result.messages,
        result.answer(),
        result.status,
        result.letters,
        result.raw_messages,
        result.readings,
    )


def both(source: SourceConfig, payload: bytes, partitions: int = 6, attributes=None):
    """(general, columnar) summaries of one payload, on the same contracts."""
    contracts = offline_contracts(*TOPICS, partitions=partitions)
    extra = {"attributes": attributes} if attributes else {}
    general = IngestCore(contracts, None, columnar=False, **extra)
    columnar = IngestCore(contracts, None, **extra)
    return summary(prepared(general, source, payload)), summary(prepared(columnar, source, payload))


def paris_like(meters: int, kwh=lambda n: f"0,{n % 300:03d}") -> bytes:
    lines = ["prm;iris;secteur;horodate;pas;kwh"]
    for n in range(meters):
        sector = "residentiel" if n % 4 else "professionnel"
        lines.append(
            f"{19_000_000_000_000 + n:014d};75101{n % 60:04d};{sector};"
            f"2025-01-14 08:10:00;PT10M;{kwh(n)}"
        )
    return ("\n".join(lines) + "\n").encode()


# --- the requests it is for ---------------------------------------------------------


def test_a_request_of_distinct_meters_takes_the_columnar_path_with_the_same_messages() -> None:
    source = csv_source()
    payload = paris_like(1000)
    readings = single_readings(payload, source)
    assert readings is not None and len(readings.entities) == 1000
    assert readings.columns["kwh"][:2] == [0.0, 0.001]
    general, columnar = both(source, payload)
    assert columnar == general
    assert general[1]["accepted"] == 1000 and 1 <= general[4] <= 6


@pytest.mark.parametrize(
    "kwh",
    [
        lambda n: "" if n % 3 == 0 else f"0,{n:03d}",  # blanks: absent values
        lambda n: str(n) if n % 2 else f"{n},5",  # longs and doubles: two signatures
        lambda n: "9" * 25 if n % 5 == 0 else str(n),  # beyond a long: text
        lambda n: f"1 {n:03d},5",  # grouped thousands: parse_number cell by cell
        lambda n: f" {n} ",  # spaces around
    ],
)
def test_columns_of_mixed_kinds_are_grouped_as_entity_by_entity(kwh) -> None:
    source = csv_source()
    payload = paris_like(50, kwh)
    assert single_readings(payload, source) is not None
    for partitions in (1, 3):
        general, columnar = both(source, payload, partitions)
        assert columnar == general


def test_reference_attributes_split_batches_as_on_the_general_path() -> None:
    source = csv_source()
    attributes = {
        "c/meters": {
            f"{19_000_000_000_000 + n:014d}": (
                {"zone": f"z{n % 3}", "sector": "res"}
                if n % 2
                else {"sector": "res", "zone": f"z{n % 3}"}  # same items, other order
            )
            for n in range(40)
            if n % 7
        }
    }
    general, columnar = both(source, paris_like(40), 2, attributes)
    assert columnar == general
    assert general[4] > 2  # zones really split the partitions' batches


# --- the requests it leaves to the general reader ----------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"prm;kwh\nm1;1\nm1;2\n",  # an entity on two lines
        b"prm;kwh\nm1;1\n m1 ;2\n",  # the same once stripped
        b"prm;kwh\n ;1\nm2;2\n",  # an empty entity: a dead letter
        b"prm;kwh\nm1;NaN\nm2;2\n",  # not a number: a dead letter
        b"prm;kwh\nm1;1;x\nm2;2\n",  # a line of another width
        b"prm;kwh\nm1;1,5\nm2;1.5\n",  # a decimal point where a comma is declared
        b"prm;kwh\nm1;" + b"9" * 400 + b",5\nm2;1,5\n",  # plain digits, no finite float
        b"prm;kwh\nm1;1e999\nm2;2\n",  # out of range
        b"prm;kwh\n",  # no data line
        b"prm;prm;kwh\nm1;m1;1\n",  # a repeated header name
        b'{"prm": "m1"}',  # not CSV at all
        b"prm;kwh\nm\xe91;1\n",  # not UTF-8
    ],
)
def test_what_needs_a_word_of_its_own_is_left_to_the_general_reader(payload: bytes) -> None:
    source = csv_source()
    assert single_readings(payload, source) is None
    general, columnar = both(source, payload)
    assert columnar == general


@pytest.mark.parametrize("decimal", ["", "1", "0", " "])
def test_a_decimal_mark_that_may_be_a_digit_gives_the_general_readers_numbers(decimal) -> None:
    """parse_number replaces the mark in every cell: no column is read as plain then."""
    source = csv_source(decimal=decimal)
    payload = b"prm;kwh\nm1;10\nm2;12\nm3;-3\n"
    general, columnar = both(source, payload)
    assert columnar == general


def test_other_formats_and_raw_v1_keep_the_general_path() -> None:
    json_source = SourceConfig(
        id="air",
        city="c",
        format="ndjson",
        dataset="air",
        domain="environment",
        entity="sensor",
        token="env:T",
        numeric=("no2",),
    )
    assert single_readings(b'{"sensor": "s1", "no2": 1}\n', json_source) is None
    contracts = offline_contracts("raw.v1", *TOPICS)
    v1 = IngestCore(contracts, None, topics=IngestTopics(raw="raw.v1"))
    result = v1.prepare(csv_source(), paris_like(3))
    assert [topic for topic, *_ in result.messages] == ["raw.v1"] * 3


# --- any payload ----------------------------------------------------------------------

ENTITIES = [f"m{n}" for n in range(40)]
NO_SURROGATES = st.characters(blacklist_categories=("Cs",))
HOSTILE_ENTITIES = ["", " ", " m1", "m1 ", "m;1", "m,1", 'm"1', "m\n1", "é1", "m1"]
PLAIN_NUMBERS = ["0", "12", "-3", "007", "0,183", "-0,0", "12,5", "0.183", "3.25", ""]
HOSTILE_NUMBERS = [
    " 4 ",
    "1 000,5",
    "1\u00a0000",
    "+5",
    ",5",
    "5,",
    "1e5",
    "1,5e3",
    "NaN",
    "nan",
    "inf",
    "1e999",
    "9" * 20,
    "9" * 400,
    "abc",
    "1,2,3",
    "1.2.3",
    "\u0661\u0662",
    "0x1F",
    "1_000",
    "-",
    "1.5",
    "1,5",
]
# Plain-looking numbers that are not: too long for a finite float, beyond a long.
LONG_NUMBERS = ["9" * 400 + ",5", "9" * 400 + ".5", "1" * 16 + ",5", "1" * 16 + ".5", "9" * 20]
TEXTS = ["", "a", "residentiel", "x;y", "x,y", 'q"q', "two\nlines", "é", " ", "NaN", "12"]


HOSTILITIES = (
    "repeated-entities",  # entities on several lines, empty or spaced ids
    "odd-numbers",  # NaN, exponents, grouped thousands, the other decimal mark...
    "long-numbers",  # plain-looking, but no finite float or beyond a long
    "wrong-width",  # a line with a field too few or too many
    "stray-quotes",
    "blank-lines",
    "bom",
    "missing-column",  # a numeric field the file does not have
    "numeric-entity",  # the entity field declared numeric too
)


@st.composite
def csv_payloads(draw, hostile: bool) -> tuple[SourceConfig, bytes]:
    """A CSV payload and its source: an export of distinct entities as a portal
    writes it, or (``hostile``) one with any set of hostilities -- one at a time
    as often as many, so that payloads fall on both sides of what the columnar
    path takes."""
    chosen = draw(st.sets(st.sampled_from(HOSTILITIES))) if hostile else set()
    separator = draw(st.sampled_from([";", ","]))
    decimal = draw(st.sampled_from([",", "."]))
    header = draw(st.booleans())
    names = ["prm", "kwh", "note", *draw(st.sampled_from([[], ["co2"], ["t", "n"]]))]
    names = draw(st.permutations(names))
    numeric = ("kwh", *(n for n in ("co2",) if n in names))
    numeric += ("missing",) if "missing-column" in chosen else ()
    numeric += ("prm",) if "numeric-entity" in chosen else ()
    encoding = draw(st.sampled_from(["utf-8", "cp1252"]))
    source = csv_source(
        separator=separator,
        decimal=decimal,
        header=header,
        columns=None if header else tuple(names),
        numeric=numeric,
        encoding=encoding,
    )
    count = draw(st.integers(0 if hostile else 1, 25))
    if "repeated-entities" in chosen:
        pool = ENTITIES[:5] + HOSTILE_ENTITIES
        entities = draw(st.lists(st.sampled_from(pool), min_size=count, max_size=count))
    else:
        unique = st.lists(st.sampled_from(ENTITIES), min_size=count, max_size=count, unique=True)
        entities = draw(unique)
    if "numeric-entity" in chosen:
        entities = [e.replace("m", draw(st.sampled_from(["", "1", "-"]))) for e in entities]
    # Numbers as the source writes them: its own decimal mark only.
    numbers = [x for x in PLAIN_NUMBERS if ("." if decimal == "," else ",") not in x]
    numbers += HOSTILE_NUMBERS if "odd-numbers" in chosen else []
    numbers += LONG_NUMBERS if "long-numbers" in chosen else []
    lines = [names] if header else []
    for entity in entities:
        row = []
        for name in names:
            if name == "prm":
                row.append(entity)
            elif name in numeric:
                row.append(draw(st.sampled_from(numbers)))
            else:
                row.append(draw(st.sampled_from(TEXTS)))
        if "wrong-width" in chosen and draw(st.integers(0, 4)) == 0:
            row = row[:-1] if draw(st.booleans()) else [*row, "extra"]
        lines.append(row)
    text = _written(draw, lines, separator, chosen)
    if "bom" in chosen and encoding == "utf-8":
        text = "\ufeff" + text
    return source, text.encode(encoding, errors="replace")


def _written(draw, lines: list[list[str]], separator: str, chosen: set[str]) -> str:
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    out = []
    for cells in lines:
        written = []
        for cell in cells:
            needs = separator in cell or '"' in cell or "\n" in cell or "\r" in cell
            if needs or draw(st.integers(0, 7)) == 0:
                cell = '"' + cell.replace('"', '""') + '"'
            elif "stray-quotes" in chosen and draw(st.integers(0, 10)) == 0:
                cell = cell + '"'
            written.append(cell)
        out.append(separator.join(written))
        if "blank-lines" in chosen and draw(st.integers(0, 4)) == 0:
            out.append("")
    ending = newline if draw(st.booleans()) else ""
    return newline.join(out) + ending


def zones(draw_zones: bool) -> dict[str, dict[str, dict[str, str]]] | None:
    if not draw_zones:
        return None
    return {"c/meters": {e: {"zone": f"z{i % 2}"} for i, e in enumerate(ENTITIES[::3])}}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=csv_payloads(hostile=True), partitions=st.integers(1, 7), zoned=st.booleans())
def test_any_payload_gives_the_general_paths_messages_and_answer(
    case: tuple[SourceConfig, bytes], partitions: int, zoned: bool
) -> None:
    source, payload = case
    general, columnar = both(source, payload, partitions, zones(zoned))
    assert columnar == general


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=csv_payloads(hostile=False), partitions=st.integers(1, 7), zoned=st.booleans())
def test_exports_of_distinct_entities_take_the_columnar_path_with_the_same_messages(
    case: tuple[SourceConfig, bytes], partitions: int, zoned: bool
) -> None:
    source, payload = case
    assert single_readings(payload, source) is not None
    general, columnar = both(source, payload, partitions, zones(zoned))
    assert columnar == general


# --- the batch builder on any cells ------------------------------------------------------

cells = st.one_of(
    st.none(),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    count=st.integers(1, 30),
    names=st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True),
    partitions=st.integers(1, 5),
    zoned=st.booleans(),
)
def test_batches_built_column_by_column_are_raw_batches_and_the_implosion(
    data, count: int, names: list[str], partitions: int, zoned: bool
) -> None:
    """Any cells -- bools, longs and beyond, NaN, text, holes, one column of several
    kinds -- give raw_batches' batches for the same entities, one row each."""
    entities = data.draw(
        st.lists(
            st.text(NO_SURROGATES, min_size=1, max_size=4),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    kinds = {
        n: data.draw(st.sampled_from([cells, st.floats(), st.text(max_size=2)])) for n in names
    }
    columns = {n: [data.draw(kinds[n]) for _ in entities] for n in names}
    reference = {}
    if zoned:
        reference = {
            e: ({"zone": "z1", "s": "x"} if i % 2 else {"s": "x", "zone": "z1"})
            for i, e in enumerate(entities)
            if i % 3
        }
    source = csv_source()
    common = {"lineage_id": "l", "received_at_us": 7}
    rows = [
        EntityRows(e, None, {n: [columns[n][i]] for n in names}, []) for i, e in enumerate(entities)
    ]
    built = single_reading_batches(
        SingleReadings(entities, columns),
        source,
        **common,
        reference=reference,
        partitions=partitions,
    )
    expected = raw_batches(rows, source, **common, reference=reference, partitions=partitions)
    assert _comparable(built) == _comparable(expected)
    keyed = [
        (
            raw_key(source, r.entity_id),
            raw_record(r, source, **common, attributes=reference.get(r.entity_id)),
        )
        for r in rows
    ]
    assert _floats_as_text(built) == _floats_as_text(imploded(keyed, partitions))


def _comparable(batches: list[tuple[int, dict]]) -> str:
    """NaN is not equal to itself: compare the batches' text, key order included."""
    return repr(batches)


def _floats_as_text(value: Any) -> Any:
    """``value`` with every float as its text (NaN equal to NaN, -0.0 not to 0.0)."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dict):
        return {key: _floats_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_floats_as_text(item) for item in value]
    return value


@given(
    entities=st.lists(st.text(NO_SURROGATES, max_size=6), max_size=20),
    partitions=st.integers(1, 9),
)
def test_partitions_in_one_pass_are_each_entitys_own(entities: list[str], partitions: int) -> None:
    source = csv_source()
    expected = [entity_partition(raw_key(source, e), partitions) for e in entities]
    assert entity_partitions(source, entities, partitions) == expected
