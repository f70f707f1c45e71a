"""Input too large for one message is refused or set aside, never allowed to fail
a whole transaction: dead letters keep a bounded original, a stage's oversized
output is bad input, and files are cut between records until their batches fit."""

from __future__ import annotations

import hashlib

import pytest

from services.ingest.files import chunks, halves
from services.runtime import dlq
from services.runtime.cities import CsvOptions, SourceConfig
from services.runtime.errors import RejectedInput
from services.runtime.kafka import MAX_MESSAGE_BYTES
from services.runtime.processor import Emit, _check_sizes


def test_a_dead_letter_keeps_a_bounded_original_and_says_what_was_cut() -> None:
    original = bytes(range(256)) * 4096  # 1 MiB
    letter = dlq.dead_letter(
        stage="ingest",
        reason="bad-json",
        message="not valid JSON: " + "x" * 5000,
        original_value=original,
    )
    assert letter["original_value"] == original[: dlq.MAX_ORIGINAL_BYTES]
    assert len(letter["message"]) <= dlq.MAX_MESSAGE_CHARS
    assert letter["message"].startswith("not valid JSON: ")
    assert f"{dlq.MAX_ORIGINAL_BYTES:,} of {len(original):,} bytes" in letter["message"]
    assert hashlib.sha256(original).hexdigest() in letter["message"]
    small = dlq.dead_letter(stage="s", reason="r", message="m", original_value=b"abc")
    assert small["original_value"] == b"abc" and small["message"] == "m"


def test_a_stage_output_too_large_for_a_message_is_bad_input() -> None:
    fits = (Emit("observations.v1", "k", {}), b"x" * MAX_MESSAGE_BYTES)
    _check_sizes([fits])
    with pytest.raises(RejectedInput) as caught:
        _check_sizes([fits, (Emit("observations.v1", "k", {}), b"x" * (MAX_MESSAGE_BYTES + 1))])
    assert caught.value.reason == "too-large" and "fewer rows" in str(caught.value)


def source(fmt: str, header: bool = True) -> SourceConfig:
    return SourceConfig(
        id="s",
        city="c",
        format=fmt,
        dataset="d",
        domain="energy",
        entity="meter",
        token="env:T",
        csv=CsvOptions(header=header) if fmt == "csv" else None,
    )


def test_files_are_cut_between_records_and_csv_parts_keep_the_header() -> None:
    csv = b"meter;wh\n" + b"".join(b"m1;%d\n" % i for i in range(10))
    first, second = halves(csv, source("csv"))
    assert first.startswith(b"meter;wh\nm1;0\n") and second.startswith(b"meter;wh\nm1;5\n")
    assert first.count(b"\n") + second.count(b"\n") == 12
    assert list(chunks(csv, source("csv"), lines_per_chunk=4))[-1] == b"meter;wh\nm1;8\nm1;9\n"
    ndjson = b'{"meter": "m1"}\n{"meter": "m2"}\n{"meter": "m3"}\n'
    assert halves(ndjson, source("ndjson")) == [b'{"meter": "m1"}\n', ndjson[16:]]
    # Cannot be cut safely: one record, quoted CSV fields, documents.
    assert halves(b'{"meter": "m1"}\n', source("ndjson")) is None
    assert halves(b'meter;note\nm1;"a\nb"\nm2;c\n', source("csv")) is None
    assert halves(b'[{"meter": "m1"}, {"meter": "m2"}]', source("json")) is None
