"""Ingest from files and directories: open-data exports and replays.

Line-based formats (CSV, NDJSON) are cut into chunks so that a large export
becomes many bounded batches (a CSV chunk repeats the header), each committed
like an HTTP batch; other formats go as one payload per file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.ingest.core import IngestCore
from services.runtime.cities import SourceConfig
from services.runtime.errors import CiteplusError
from services.runtime.progress import Progress

CHUNK_LINES = 5_000


@dataclass
class FileIngestSummary:
    files: int = 0
    payloads: int = 0
    accepted: int = 0
    rejected: int = 0
    entities: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def list_files(path: Path) -> list[Path]:
    """The file itself, or every regular non-hidden file below a directory, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(x.startswith(".") for x in p.parts)
        )
    raise CiteplusError(f"{path}: no such file or directory")


def chunks(
    data: bytes, source: SourceConfig, lines_per_chunk: int = CHUNK_LINES
) -> Iterator[bytes]:
    """Split a payload into bounded batches without cutting a record in two."""
    if source.format not in ("csv", "ndjson") or data.count(b"\n") <= lines_per_chunk:
        yield data
        return
    lines = data.splitlines(keepends=True)
    header: list[bytes] = []
    if source.format == "csv" and (source.csv is None or source.csv.header):
        header, lines = lines[:1], lines[1:]
    if source.format == "csv" and any(b'"' in line for line in lines):
        yield data  # quoted fields may span lines: keep the file whole
        return
    for start in range(0, len(lines), lines_per_chunk):
        yield b"".join(header + lines[start : start + lines_per_chunk])


def ingest_paths(
    core: IngestCore, source: SourceConfig, paths: list[Path], *, show_progress: bool = True
) -> FileIngestSummary:
    """Ingest every file, committing each chunk before the next is read."""
    summary = FileIngestSummary()
    total_bytes = sum(p.stat().st_size for p in paths)
    progress = Progress(total_bytes, f"ingest {source.city}/{source.id}") if show_progress else None
    for path in paths:
        data = path.read_bytes()
        for payload in chunks(data, source):
            result = core.ingest_blocking(source, payload)
            summary.payloads += 1
            summary.accepted += result.accepted
            summary.rejected += len(result.rejected)
            summary.entities += result.entities
            for rejection in result.rejected:
                summary.reasons[rejection.reason] = summary.reasons.get(rejection.reason, 0) + 1
        summary.files += 1
        if progress:
            progress.advance(
                len(data), f"{summary.accepted:,} rows accepted, {summary.rejected:,} rejected"
            )
    if progress:
        progress.close()
    return summary
