"""Whether a payload can be in its source's format at all, before it is parsed.

Without this a Linky source answered ``200 accepted 0, rejected 0`` to text that
was no TIC at all (its lines looked like partial frames, which are skipped), and
nothing was kept: the sender believed it delivered. A payload refused here is one
rejection with a ``not-<format>`` reason, so the sender reads 422 and the bytes
reach the dead letters. The checks only refuse content that no line of the format
could start: a payload with one good line among bad ones goes on to the parser,
which keeps the good line.

The declared ``Content-Type`` is checked the same way: a type that names another
format is refused (415), a missing or generic one (what most gateways send) is not.
"""

from __future__ import annotations

import re

from services.ingest.formats.linky import ETX, STX, tic_group

TIC_HEAD_BYTES = 64 * 1024
_NDJSON_LINE = re.compile(rb"(?m)^[ \t\r]*[{\[]")
_BLANKS = " \t\r\n\ufeff"

# Types that say nothing of the format: accepted for every source (curl -d sends
# the form type; many gateways send octet-stream or nothing).
GENERIC_TYPES = frozenset(
    {"", "*/*", "application/octet-stream", "text/plain", "application/x-www-form-urlencoded"}
)
_JSON = frozenset({"application/json", "text/json"})
_NDJSON = _JSON | {
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "application/json-seq",
}
_CSV = frozenset(
    {
        "text/csv",
        "application/csv",
        "text/comma-separated-values",
        "text/tab-separated-values",
        "application/vnd.ms-excel",  # what Windows browsers and tools send for a .csv
    }
)
MEDIA_TYPES: dict[str, frozenset[str]] = {
    "csv": _CSV,
    "ndjson": _NDJSON,
    "json": _JSON,
    "sdm-keyvalues": _JSON,
    "ngsi-v2-normalized": _JSON,
    "ngsi-ld": _JSON | {"application/ld+json"},
    "linky-tic": frozenset(),
}
_SUGGESTED = {"csv": "text/csv", "ndjson": "application/x-ndjson", "linky-tic": "text/plain"}


def media_type_problem(content_type: str | None, fmt: str) -> str | None:
    """Why ``content_type`` contradicts the format ``fmt``, or None if it may be it."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in GENERIC_TYPES:
        return None
    expected = MEDIA_TYPES.get(fmt)
    if expected is None or media in expected:
        return None
    if fmt != "csv" and fmt != "linky-tic" and media.endswith("+json"):
        return None  # application/geo+json, application/vnd.x+json: JSON all the same
    suggested = _SUGGESTED.get(fmt, "application/json")
    return (
        f"Content-Type {media[:80]!r} is not the source's format ({fmt}); send "
        f"{suggested}, application/octet-stream, or no Content-Type"
    )


def format_problem(data: bytes, fmt: str) -> str | None:
    """Why ``data`` cannot be in the format ``fmt`` at all, or None if it may be."""
    check = _CHECKS.get(fmt)
    return check(data) if check is not None else None


def _tic(data: bytes) -> str | None:
    """A capture shows a whole group within its first few frames (a frame is under
    1 kB); only the head is searched, so 32 MB of other text costs no more than this."""
    for line in data[:TIC_HEAD_BYTES].split(b"\n"):
        if tic_group(line.strip(b"\r\x00" + bytes((STX, ETX)))):
            return None
    return (
        "no télé-information group in the payload's first "
        f"{TIC_HEAD_BYTES // 1024} KiB (label, data and a valid checksum on a line): "
        "is this source's gateway sending TIC frames?"
    )


def _ndjson(data: bytes) -> str | None:
    if _NDJSON_LINE.search(data.removeprefix(b"\xef\xbb\xbf")):
        return None
    return "no line of the payload starts a JSON object: NDJSON is one JSON object per line"


def _csv(data: bytes) -> str | None:
    if data[:256].decode("latin-1").lstrip(_BLANKS + "\u00ef\u00bb\u00bf")[:1] != "{":
        return None
    return "the payload starts with '{' as JSON does; a CSV export starts with its header"


# JSON documents (json, sdm-*, ngsi-*) need no check: one that does not parse is
# already one rejection of the whole payload with its reason.
_CHECKS = {
    "linky-tic": _tic,
    "ndjson": _ndjson,
    "csv": _csv,
}
