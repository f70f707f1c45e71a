"""Linky télé-information client (TIC) frames, historique and standard modes.

Enedis spec Enedis-NOI-CPT_54E. A frame is ``STX group... ETX``; a group is
``LF label SEP [horodate SEP] data SEP checksum CR``:

- historique (1200 Bd): SEP is SP, no horodate; the checksum covers label to
  data, WITHOUT the SP before the checksum;
- standard (9600 Bd): SEP is HT, optional horodate; the checksum covers label
  to data AND the HT before the checksum.

Both: ``checksum = (sum of covered bytes & 0x3F) + 0x20``. The mode is read from
each group's separator, so one payload may mix meters in both modes.

Gateways send either the raw byte stream (STX/ETX, possibly starting or ending
mid-frame, NUL padding) or an "index-text" dump where STX/ETX are gone and a
frame ends with an empty line. Partial frames at the edges of a capture are
expected and only counted (``skipped``); any complete frame with a bad group is
rejected whole, because a frame is one consistent reading of the meter.

One row per frame: label -> raw data text (values stay text: their meaning
depends on the label and the meter option, which normalise knows), plus
``<LABEL>@time`` for the raw horodate of timestamped groups. The entity is the
meter's ADSC (standard) or ADCO (historique).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

from services.ingest.batch import BatchBuilder, ParseResult
from services.runtime.cities import SourceConfig

STX, ETX, HT, SP = 0x02, 0x03, 0x09, 0x20
IDENTIFIER = {"standard": "ADSC", "historique": "ADCO"}
_EDGE_JUNK = b"\x00\x04\r\n \t"  # NUL padding, EOT, blank lines between frames
_FRAME_GAP = re.compile(rb"(?:\r?\n){2,}")
_SEASON_OFFSET = {"E": timezone(timedelta(hours=2)), "H": timezone(timedelta(hours=1))}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LABEL = re.compile(r"[A-Z][A-Z0-9+\-]{1,15}")
# What float() reads as NaN or an infinity: a meter never writes it, normalise would
# read it as a number that spoils every sum.
_NON_FINITE = re.compile(r"\s*[+-]?(?:nan|inf|infinity|[\d.]+e[+-]?\d{3,})\s*", re.IGNORECASE)


class _Segment(NamedTuple):
    number: int
    offset: int
    content: bytes  # the frame's groups, without STX/ETX
    original: bytes
    complete: bool  # False: cut by the start or end of the capture
    interrupted: bool = False  # a new STX came before this frame's ETX


class _BadFrame(Exception):
    """A frame to reject: ``message`` names groups by number, never their text
    (a group holds the meter's serial or its indexes); ``detail`` quotes them."""

    def __init__(
        self, reason: str, message: str, *, detail: str | None = None, label: str | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.detail = detail
        self.fields = (label,) if label else ()


def parse(data: bytes, source: SourceConfig) -> ParseResult:
    """One row per complete, valid frame, grouped per meter."""
    out = BatchBuilder()
    framed = STX in data or ETX in data
    for segment in _raw_segments(data) if framed else _text_segments(data):
        position = f"frame {segment.number} at byte {segment.offset}"
        if not segment.complete:
            out.skipped += 1
            continue
        if segment.interrupted:
            out.reject(
                position,
                "truncated-frame",
                "the frame was interrupted (a new STX came before its ETX)",
                segment.original,
                entity=_meter_of(segment.original),
            )
            continue
        try:
            mode, row = _read_frame(segment.content)
            entity_id = _entity(row, mode, source.entity)
        except _BadFrame as exc:
            out.reject(
                position,
                exc.reason,
                str(exc),
                segment.original,
                detail=exc.detail,
                fields=exc.fields,
                entity=_meter_of(segment.content),
            )
            continue
        event_time = horodate_us(row["DATE@time"]) if "DATE@time" in row else None
        out.add_row(entity_id, f"linky-{mode}", row, event_time)
    return out.result()


def _raw_segments(data: bytes) -> Iterator[_Segment]:
    """Frames of a raw byte stream delimited by STX ... ETX."""
    number = 0
    first_stx = data.find(STX)
    head_end = first_stx if first_stx >= 0 else len(data)
    etx = data.find(ETX, 0, head_end)
    if etx >= 0:
        # Before the first STX: the tail of a frame, or a whole frame whose STX
        # was lost while the reader synchronised (it then starts with the meter id).
        number += 1
        content = data[:etx]
        yield _Segment(number, 0, content, data[: etx + 1], _starts_with_identifier(content))
    if data[etx + 1 : head_end].strip(_EDGE_JUNK):
        number += 1
        yield _Segment(number, etx + 1, b"", data[etx + 1 : head_end], complete=False)
    start = first_stx
    while start >= 0:
        number += 1
        next_stx = data.find(STX, start + 1)
        end = data.find(ETX, start + 1)
        if end >= 0 and (next_stx < 0 or end < next_stx):
            yield _Segment(number, start, data[start + 1 : end], data[start : end + 1], True)
        elif next_stx < 0:
            yield _Segment(number, start, b"", data[start:], complete=False)
        else:
            yield _Segment(
                number, start, b"", data[start:next_stx], complete=True, interrupted=True
            )
        start = next_stx


def _text_segments(data: bytes) -> Iterator[_Segment]:
    """Frames of an "index-text" dump: groups one per line, frames ended by an empty line."""
    blocks: list[tuple[int, int]] = []
    start = 0
    for gap in _FRAME_GAP.finditer(data):
        blocks.append((start, gap.start()))
        start = gap.end()
    tail = (start, len(data))  # not followed by an empty line: cut by the end of the capture
    number = 0
    for index, (begin, end) in enumerate([*blocks, tail]):
        content = data[begin:end]
        if not content.strip(_EDGE_JUNK):
            continue
        number += 1
        complete = end != len(data) and (index > 0 or _starts_with_identifier(content))
        yield _Segment(number, begin, content, content, complete)


def _starts_with_identifier(content: bytes) -> bool:
    head = content.lstrip(_EDGE_JUNK)
    return head.startswith((b"ADCO ", b"ADSC\t"))


def _read_frame(content: bytes) -> tuple[str, dict[str, str]]:
    """(mode, row) of a frame, or _BadFrame naming the first bad group."""
    row: dict[str, str] = {}
    mode = None
    number = 0
    for line in content.split(b"\n"):
        group = line.strip(b"\r\x00")
        if not group:
            continue
        number += 1
        group_mode, label, horodate, value = _read_group(group, number)
        if not value.isdigit() and _NON_FINITE.fullmatch(value):  # digits: most values
            raise _BadFrame(
                "bad-number",
                f"group {number} holds NaN or an infinity where a meter writes digits",
                detail=f"group {label} holds {value[:40]!r}, not a finite number",
                label=label,
            )
        if mode is None:
            mode = group_mode
        elif group_mode != mode:
            raise _BadFrame(
                "mixed-modes",
                f"group {number} is in {group_mode} mode but the frame is in {mode} mode",
                detail=f"group {label} is in {group_mode} mode but the frame is in {mode} mode",
                label=label,
            )
        if label in row:
            raise _BadFrame(
                "duplicate-label",
                f"group {number} repeats the label of an earlier group",
                detail=f"label {label} appears twice in the frame",
                label=label,
            )
        row[label] = value
        if horodate is not None:
            row[f"{label}@time"] = horodate
    if mode is None:
        raise _BadFrame("empty-frame", "the frame holds no group")
    return mode, row


def _read_group(group: bytes, number: int = 1) -> tuple[str, str, str | None, str]:
    separator, checksum = group[-2] if len(group) >= 2 else None, group[-1]
    if separator == HT:
        mode, covered, fields = "standard", group[:-1], group[:-2].split(b"\t")
    elif separator == SP:
        mode, covered, fields = "historique", group[:-2], group[:-2].split(b" ", 1)
    else:
        raise _BadFrame(
            "bad-group",
            f"group {number} does not end with SP or HT and a checksum character",
            detail=f"group {_text(group)!r} does not end with SP or HT and a checksum character",
        )
    label = _text(fields[0])
    expected = (sum(covered) & 0x3F) + 0x20
    if checksum != expected:
        # The expected checksum is a function of the group's data: never in the message.
        raise _BadFrame(
            "bad-checksum",
            f"bad checksum on group {number} of the frame",
            detail=f"bad checksum on group {label}: got {chr(checksum)!r}, "
            f"expected {chr(expected)!r}",
            label=label,
        )
    if not label or len(fields) not in (2, 3) or (mode == "historique" and len(fields) != 2):
        raise _BadFrame(
            "bad-group",
            f"group {number} is not label, [horodate,] data",
            detail=f"group {_text(group)!r} is not label, [horodate,] data",
            label=label,
        )
    horodate = _text(fields[1]) if len(fields) == 3 else None
    return mode, label, horodate, _text(fields[-1])


def tic_group(group: bytes) -> bool:
    """Whether ``group`` (one line, no LF/CR) is a TIC group with a valid checksum
    and a label as meters write them: what tells a capture from other text."""
    if len(group) < 4 or group[-2] not in (HT, SP):
        return False  # checked before the parse: most lines of other text end here
    try:
        _, label, _, _ = _read_group(group)
    except _BadFrame:
        return False
    return _LABEL.fullmatch(label) is not None


def _meter_of(content: bytes) -> str | None:
    """The meter id of a rejected frame when one of its groups names it with a valid
    checksum, so that its dead letter can carry the meter's pseudonym."""
    for line in content.split(b"\n"):
        group = line.strip(b"\r\x00\x02\x03")
        if group.startswith((b"ADSC\t", b"ADCO ")):
            try:
                _, _, _, value = _read_group(group)
            except _BadFrame:
                return None
            return value.strip() or None
    return None


def _entity(row: dict[str, str], mode: str, preferred: str) -> str:
    label = preferred if preferred in row else IDENTIFIER[mode]
    entity = row.get(label, "").strip()
    if not entity:
        raise _BadFrame(
            "missing-entity", f"the {mode} frame has no {IDENTIFIER[mode]} group naming the meter"
        )
    return entity


def horodate_us(horodate: str) -> int | None:
    """UTC epoch microseconds of a TIC horodate ``SYYMMDDhhmmss``, else None.

    S is the season: E = summer time (UTC+2), H = winter time (UTC+1); lowercase
    means the meter's clock is in degraded mode (the time is still its best
    reading; the raw text keeps the letter); a space means no season, so no offset.
    """
    if len(horodate) != 13 or not horodate[1:].isdigit():
        return None
    zone = _SEASON_OFFSET.get(horodate[0].upper())
    if zone is None:
        return None
    digits = horodate[1:]
    try:
        moment = datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _text(raw: bytes) -> str:
    # TIC is 7-bit ASCII; latin-1 never fails, so a stray byte shows up instead of crashing.
    return raw.decode("latin-1")
