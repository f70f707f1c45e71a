"""Dead letters: what a stage could not process, with why and the original bytes."""

from __future__ import annotations

import time
from typing import Any

DLQ_TOPIC = "dlq.v1"


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
    """A DeadLetter record (avro/DeadLetter.avsc)."""
    return {
        "stage": stage,
        "reason": reason,
        "message": message[:4000],
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
