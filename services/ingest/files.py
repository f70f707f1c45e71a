"""Ingest from files and directories: open-data exports and replays.

Line-based formats (CSV, NDJSON) are cut into chunks so that a large export
becomes many bounded batches (a CSV chunk repeats the header), each committed
like an HTTP batch, and cut again where one entity's rows would not fit in a
message; other formats go as one payload per file.

With ``keys`` (``citeplus ingest`` sets them), every batch carries an idempotency
key derived from the source, the file's path, the batch's position in it and its
bytes: running the command again over the same files (after a crash, a broker
outage, a doubt) lands only the batches that did not land the first time.
Identical bytes at another position or in another file are other batches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.ingest.core import IngestCore, IngestResult
from services.ingest.idempotency import Answer, push_keyed_blocking
from services.runtime.cities import SourceConfig
from services.runtime.errors import CiteplusError, OversizedBatch
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
    earlier: int = 0  # batches a previous run already landed (same key, same bytes)

    def add(self, result: IngestResult | None, answer: Answer | None) -> None:
        """Count a batch landed now (its result) or answered from an earlier run."""
        self.payloads += 1
        if result is not None:
            self.accepted += result.accepted
            self.rejected += len(result.rejected)
            self.entities += result.entities
            reasons = [r.reason for r in result.rejected]
        else:
            assert answer is not None
            body = json.loads(answer.body)
            self.earlier += 1
            self.accepted += body["accepted"]
            self.rejected += body["rejected"]
            self.entities += body["entities"]
            reasons = [e["reason"] for e in body["errors"]]
        for reason in reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1


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


def _records(data: bytes, source: SourceConfig) -> tuple[list[bytes], list[bytes]] | None:
    """(header, record lines) of a line format whose lines are records: a CSV header
    is repeated in every part. None for other formats, and for a CSV with quoted
    fields (one may span lines)."""
    if source.format not in ("csv", "ndjson"):
        return None
    lines = data.splitlines(keepends=True)
    header: list[bytes] = []
    if source.format == "csv" and (source.csv is None or source.csv.header):
        header, lines = lines[:1], lines[1:]
    if source.format == "csv" and any(b'"' in line for line in lines):
        return None
    return header, lines


def chunks(
    data: bytes, source: SourceConfig, lines_per_chunk: int = CHUNK_LINES
) -> Iterator[bytes]:
    """Split a payload into bounded batches without cutting a record in two."""
    records = _records(data, source) if data.count(b"\n") > lines_per_chunk else None
    if records is None:
        yield data
        return
    header, lines = records
    for start in range(0, len(lines), lines_per_chunk):
        yield b"".join(header + lines[start : start + lines_per_chunk])


def halves(data: bytes, source: SourceConfig) -> list[bytes] | None:
    """The payload as two batches (None when it cannot be cut between records)."""
    records = _records(data, source)
    if records is None or len(records[1]) < 2:
        return None
    header, lines = records
    middle = len(lines) // 2
    return [b"".join(header + lines[:middle]), b"".join(header + lines[middle:])]


Outcome = tuple[IngestResult | None, Answer | None]


def batch_key(prefix: str, source: SourceConfig, path: Path, position: str, payload: bytes) -> str:
    """The idempotency key of one batch of a file: the same on every run over the same file."""
    digest = hashlib.sha256(
        "\x1f".join(
            (
                source.city,
                source.id,
                str(path.resolve()),
                position,
                hashlib.sha256(payload).hexdigest(),
            )
        ).encode()
    ).hexdigest()[:40]
    return f"{prefix}:{digest}"


def _ingest_payload(
    core: IngestCore, source: SourceConfig, payload: bytes, key: str | None
) -> list[Outcome]:
    """Ingest one batch; one whose entity has too many rows for a message is cut in
    two and tried again (an export of a year of one meter's readings, say)."""
    try:
        if key is None:
            return [(core.ingest_blocking(source, payload), None)]
        answer, result = push_keyed_blocking(core, source, key, payload)
        return [(result, answer)]
    except OversizedBatch:
        parts = halves(payload, source)
        if parts is None:
            raise
        return [
            outcome
            for n, part in enumerate(parts)
            for outcome in _ingest_payload(
                core, source, part, None if key is None else f"{key}.{n}"
            )
        ]


def ingest_paths(
    core: IngestCore,
    source: SourceConfig,
    paths: list[Path],
    *,
    show_progress: bool = True,
    keys: str | None = None,
) -> FileIngestSummary:
    """Ingest every file, committing each chunk before the next is read; ``keys``:
    the prefix of the batches' idempotency keys (None: no keys)."""
    summary = FileIngestSummary()
    total_bytes = sum(p.stat().st_size for p in paths)
    progress = Progress(total_bytes, f"ingest {source.city}/{source.id}") if show_progress else None
    for path in paths:
        data = path.read_bytes()
        for n, chunk in enumerate(chunks(data, source)):
            key = None if keys is None else batch_key(keys, source, path, str(n), chunk)
            for result, answer in _ingest_payload(core, source, chunk, key):
                summary.add(result, answer)
        summary.files += 1
        if progress:
            progress.advance(
                len(data), f"{summary.accepted:,} rows accepted, {summary.rejected:,} rejected"
            )
    if progress:
        progress.close()
    return summary
