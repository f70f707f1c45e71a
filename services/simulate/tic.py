"""Linky télé-information frames in standard mode (Enedis-NOI-CPT_54E), as bytes.

A group is ``LF label HT [horodate HT] data HT checksum CR`` and a frame is
``STX groups ETX``. In standard mode the checksum covers label to data AND the
HT before it: ``(sum & 0x3F) + 0x20``. Groups that do not change between frames
of a meter are encoded once, so a frame costs a few small sums, not a full pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

STX, ETX, HT = b"\x02", b"\x03", b"\t"


def group(label: str, value: str, horodate: str | None = None) -> bytes:
    """One encoded group with its checksum."""
    fields = [label, horodate, value] if horodate is not None else [label, value]
    covered = "\t".join(fields).encode("ascii") + HT
    return b"\n" + covered + bytes([(sum(covered) & 0x3F) + 0x20]) + b"\r"


def frame(groups: list[bytes]) -> bytes:
    return STX + b"".join(groups) + ETX


def horodate(local: datetime) -> str:
    """``SYYMMDDhhmmss``: season letter (E summer time, H winter time) and local time."""
    offset = local.utcoffset()
    season = "E" if offset is not None and offset >= timedelta(hours=2) else "H"
    return season + local.strftime("%y%m%d%H%M%S")


def index(register_wh: int) -> str:
    """An energy register (Wh) as the 9 digits of a Linky index; it rolls over like the meter's."""
    return f"{register_wh % 1_000_000_000:09d}"
