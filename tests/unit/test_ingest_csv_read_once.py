"""Two reviewer's reproducers on ingest's CSV reading: a request the columnar path
for single readings declines is read as CSV once (the general reader takes the reading
it made, csv_format.read_csv); a quote never closed costs its own line, not the lines
after it (they were read into its cell, neither accepted nor dead-lettered).

Pure-logic tests: no broker and no warehouse is involved or stood in for. The only
replaced name is the CSV reader's own pure function, wrapped to count its calls
(it still does the reading); the messages come from the real codecs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.ingest.core import IngestCore
from services.ingest.formats import csv_format, csv_singles
from services.runtime.cities import CsvOptions, SourceConfig
from testkit.codecs import offline_contracts

TOPICS = ("raw.v2", "dlq.v1", "raw.dlq.v1")
FIXED = {"lineage_id": "lineage", "received_at_us": 1_736_722_800_000_000}


def csv_source() -> SourceConfig:
    return SourceConfig(
        id="meters",
        city="c",
        format="csv",
        dataset="load-curves",
        domain="energy",
        entity="prm",
        token="env:T",
        numeric=("kwh",),
        csv=CsvOptions(separator=";", decimal=",", header=True, encoding="utf-8"),
    )


def load_curve(meters: int = 20, rows: int = 48) -> bytes:
    """A meter on many lines: the request the columnar path is not for."""
    lines = ["prm;horodate;kwh"]
    for n in range(meters):
        lines += [
            f"m{n};2025-01-14 {h // 2:02d}:{30 * (h % 2):02d}:00;0,{h:03d}" for h in range(rows)
        ]
    return ("\n".join(lines) + "\n").encode()


def csv_reads(columnar: bool, payload: bytes) -> int:
    """How many times preparing ``payload`` reads it as whole CSV (clean_layout)."""
    calls = 0
    real: Callable[..., Any] = csv_format.clean_layout

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    core = IngestCore(offline_contracts(*TOPICS, partitions=6), None, columnar=columnar)
    readers = [m for m in (csv_format, csv_singles) if hasattr(m, "clean_layout")]
    with pytest.MonkeyPatch.context() as patch:
        for module in readers:  # wherever a name for it is bound
            patch.setattr(module, "clean_layout", counted)
        core.prepare(csv_source(), payload, **FIXED)
    return calls


@pytest.mark.parametrize(
    "payload",
    [
        load_curve(),  # every meter on 48 lines
        b"prm;kwh\nm1;1\nm2;x\nm3;3\n",  # a line to reject
        b"prm;kwh\nm1;1\nm2;2\nm1;3\n",  # one meter twice
    ],
    ids=["load-curve", "bad-line", "repeated-entity"],
)
def test_a_request_left_to_the_general_reader_is_read_as_csv_no_more_often(
    payload: bytes,
) -> None:
    """single_readings decodes and reads the whole payload as CSV, then answers None
    and parse_payload decodes and reads it again: every load curve (and every request
    with a line to reject) pays the CSV reading twice (1,000 meters x 48 lines:
    0.30 -> 0.37-0.42 s of CPU in prepare)."""
    assert csv_reads(columnar=True, payload=payload) == csv_reads(columnar=False, payload=payload)


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "general"])
def test_a_quote_never_closed_costs_its_line_not_the_lines_after_it(columnar: bool) -> None:
    """A stray quote in a text cell that never closes: the csv module (not strict)
    read the rest of the payload into that cell, the record had the header's width,
    and meters m2 and m3 were neither accepted nor dead-lettered (their readings were
    text in m1's note; a reviewer's reproducer). Now the record is unreadable: m1's
    line is a dead letter, the lines it swallowed are read again."""
    payload = b'prm;kwh;note\nm1;1;"x\nm2;2;y\nm3;3;z\n'
    core = IngestCore(offline_contracts(*TOPICS, partitions=6), None, columnar=columnar)
    result = core.prepare(csv_source(), payload, **FIXED)
    assert result.accepted == 2
    assert [(r.position, r.reason) for r in result.rejected] == [("line 2", "bad-csv")]
    assert result.rejected[0].original == b'prm;kwh;note\nm1;1;"x\n'


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "general"])
def test_a_number_with_text_after_its_closing_quote_is_refused_not_read_as_another(
    columnar: bool,
) -> None:
    """``"1"2`` is no CSV field; the csv module, not strict, joined it to 12 and the
    reading was accepted as 12 kWh (a reviewer's reproducer). Spaces after a closing
    quote, as spreadsheets write them, still read."""
    core = IngestCore(offline_contracts(*TOPICS, partitions=6), None, columnar=columnar)
    result = core.prepare(csv_source(), b'prm;kwh\nm1;"1"2\nm2;3\nm3;"4" \n', **FIXED)
    assert [(r.position, r.reason) for r in result.rejected] == [("line 2", "bad-csv")]
    assert result.accepted == 2
