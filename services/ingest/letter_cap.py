"""At most ``MAX_LETTERS_PER_BATCH`` redacted dead letters per batch on ``dlq.v1``,
then one summary letter: a 10 kB body of 5,000 bad lines must not become 5,000
letters in the shared topic, the warehouse and the logs. The restricted raw
dead letters (``raw.dlq.v1``) keep every reject whole, so nothing is lost: the
summary says how many more there were, of which reasons, and where they are."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from services.ingest.batch import Rejection
from services.runtime import dlq
from services.runtime.cities import SourceConfig

MAX_LETTERS_PER_BATCH = 100
SUMMARY_REASON = "rejects-summarised"


def summary_letter(
    source: SourceConfig, lineage_id: str, beyond: Sequence[Rejection], raw_topic: str
) -> dict[str, Any] | None:
    """The redacted letter standing for the rejects beyond the cap (None if none):
    counts per reason, first and last position, no value."""
    if not beyond:
        return None
    counts = Counter(r.reason for r in beyond)
    reasons = ", ".join(f"{reason} × {n:,}" for reason, n in counts.most_common())
    where = f"{beyond[0].position} to {beyond[-1].position}" if beyond[0].position else "-"
    return {
        "stage": "ingest",
        "reason": SUMMARY_REASON,
        "message": (
            f"{len(beyond):,} more rejects of batch {lineage_id} ({where}) have no letter of "
            f"their own here (at most {MAX_LETTERS_PER_BATCH} a batch): {reasons}. Each one, "
            f"with its original and full error, is on {raw_topic} (batch {lineage_id})."
        )[: dlq.MAX_MESSAGE_CHARS],
        "city": source.city,
        "source": source.id,
        "source_topic": None,
        "source_partition": None,
        "source_offset": None,
        "original_key": None,
        "original_value": None,
        "failed_at": dlq.now_us(),
        "letter_id": os.urandom(16).hex(),
        "redacted": True,
        "raw_topic": raw_topic,
        "position": beyond[0].position,
        "field_names": [],
        "original_size": None,
        "original_sha256": None,
        "digest_salt": None,
        "entity_pseudonyms": [],
        "chunk": None,
        "chunks": None,
    }
