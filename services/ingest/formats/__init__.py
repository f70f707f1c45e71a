"""Transport parsers, one module per format, chosen by the source's ``format``.

Each is a pure ``parse(data: bytes, source: SourceConfig) -> ParseResult``: no
I/O, no clock, so the same bytes always give the same rows and rejections.
"""

from __future__ import annotations

from collections.abc import Callable

from services.ingest.batch import BatchBuilder, ParseResult
from services.ingest.formats import csv_format, json_format, linky, sdm
from services.ingest.formats.sniff import format_problem
from services.runtime.cities import SourceConfig
from services.runtime.errors import ConfigError

Parser = Callable[[bytes, SourceConfig], ParseResult]

PARSERS: dict[str, Parser] = {
    "csv": csv_format.parse,
    "ndjson": json_format.parse,
    "json": json_format.parse,
    "sdm-keyvalues": sdm.parse,
    "ngsi-v2-normalized": sdm.parse,
    "ngsi-ld": sdm.parse,
    "linky-tic": linky.parse,
}


def parse_payload(
    data: bytes, source: SourceConfig, csv_read: csv_format.CsvRead | None = None
) -> ParseResult:
    """Parse one pushed batch with the parser its source declares; a payload that
    cannot be in that format at all is one rejection (``not-<format>``).
    ``csv_read``: a CSV payload already read whole (csv_format.read_csv), not read
    again."""
    parser = PARSERS.get(source.format)
    if parser is None:
        raise ConfigError(
            f"no parser for format {source.format!r}; known: {', '.join(PARSERS)}",
            key=f"{source.city}.{source.id}.format",
        )
    problem = format_problem(data, source.format)
    if problem is not None:
        out = BatchBuilder()
        reason = "not-tic" if source.format == "linky-tic" else f"not-{source.format}"
        out.reject("payload", reason, problem, data)
        return out.result()
    if csv_read is not None and source.format == "csv":
        return csv_format.parse(data, source, csv_read)
    return parser(data, source)
