"""Write payloads as files, one per batch, for a replay without a running node.

Layout: ``<dir>/<city>/<source>/<NNNN>.<ext>``, numbered in sending order, so
``citeplus ingest <dir>/<city>/<source> --city <city> --source <source>``
replays a source exactly as a push would have sent it. A target folder that
already holds files is refused: a shorter rerun would otherwise leave stale
batches behind that a replay would ingest too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.errors import CiteplusError
from services.runtime.progress import Progress
from services.simulate.generator import Payload

EXTENSIONS = {
    "text/csv; charset=utf-8": "csv",
    "application/x-ndjson": "ndjson",
    "application/json": "json",
    "application/ld+json": "jsonld",
    "application/octet-stream": "tic",
}


@dataclass
class FileTotals:
    files: int = 0
    readings: int = 0
    bytes: int = 0


@dataclass
class WriteReport:
    directory: Path
    totals: dict[tuple[str, str], FileTotals] = field(default_factory=dict)


def write_payloads(
    payloads: Iterable[Payload], directory: Path, progress: Progress | None = None
) -> WriteReport:
    report = WriteReport(Path(directory))
    for payload in payloads:
        folder = report.directory / payload.city / payload.source
        key = (payload.city, payload.source)
        totals = report.totals.get(key)
        if totals is None:
            _claim(folder)
            totals = report.totals[key] = FileTotals()
        totals.files += 1
        extension = EXTENSIONS.get(payload.content_type, "bin")
        (folder / f"{totals.files:04d}.{extension}").write_bytes(payload.body)
        totals.readings += payload.readings
        totals.bytes += len(payload.body)
        if progress is not None:
            written = sum(t.bytes for t in report.totals.values())
            progress.advance(1, f"{written / 1e6:,.1f} MB written")
    return report


def _claim(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise CiteplusError(
            f"{folder} already holds files; remove it or write elsewhere with --out, "
            "so that old batches are not replayed with the new ones"
        )
    folder.mkdir(parents=True, exist_ok=True)
