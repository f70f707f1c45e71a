"""Dead letters: what a stage could not process, with why and the original bytes."""

from __future__ import annotations

import hashlib
import time
from typing import Any

DLQ_TOPIC = "dlq.v1"
# A dead letter keeps at most this much of its original: a letter must fit in a
# message itself, or the bad input would fail the batch instead of being set aside.
MAX_ORIGINAL_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 4000


def now_us() -> int:
    return time.time_ns() // 1000


def dead_letter(
    *,
    stage: str,
    reason: str,
    message: str,
    original_value: bytes | None,
    original_key: bytes | None = None,
    source_topic: str | None = None,
    source_partition: int | None = None,
    source_offset: int | None = None,
    city: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A DeadLetter record (avro/DeadLetter.avsc).

    An original above ``MAX_ORIGINAL_BYTES`` is cut, and the message says so with
    its full size and SHA-256 (stages other than ingest also give the source
    topic, partition and offset where the whole original stays readable).
    """
    if original_value is not None and len(original_value) > MAX_ORIGINAL_BYTES:
        note = (
            f" [original_value cut to its first {MAX_ORIGINAL_BYTES:,} of "
            f"{len(original_value):,} bytes; sha256 {hashlib.sha256(original_value).hexdigest()}]"
        )
        message = message[: MAX_MESSAGE_CHARS - len(note)] + note
        original_value = original_value[:MAX_ORIGINAL_BYTES]
    return {
        "stage": stage,
        "reason": reason,
        "message": message[:MAX_MESSAGE_CHARS],
        "city": city,
        "source": source,
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "original_key": original_key,
        "original_value": original_value,
        "failed_at": now_us(),
    }


def dead_letter_key(stage: str, city: str | None) -> str:
    return f"{stage}|{city or '-'}"
