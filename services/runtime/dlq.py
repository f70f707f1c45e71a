"""Dead letters: what a stage could not process, with why and (where allowed) the original.

Stages after anonymise write one letter to ``dlq.v1`` with the original bytes
(no personal data in clear there any more). Stages before and at anonymise
(ingest, anonymise) see personal data in clear, so each of their rejects
becomes two kinds of letter sharing one ``letter_id`` (:func:`split`):

- raw letters on the restricted ``raw.dlq.v1`` (retention and access of
  ``raw.v1``): the original whole and the full error text, cut into chunks of
  at most ``RAW_CHUNK_BYTES`` so that a rejected 32 MiB payload fits in messages
  of the broker's default size, with no topic, broker or client limit raised;
  the chunks of a letter are produced in the batch's transaction, so they are
  all visible or none is;
- one redacted letter on ``dlq.v1`` (and so in the warehouse and in logs):
  stage, reason, position, declared field names, sizes, a salted SHA-256 of the
  original, keyed pseudonyms of the entities concerned, and the pointer to the
  raw letter; never a value, an identifier in clear or quoted text.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from services.runtime.topics import TopicName, companion

DLQ_TOPIC = TopicName.DEAD_LETTERS
RAW_DLQ_TOPIC = TopicName.RAW_DEAD_LETTERS
# A dead letter keeps at most this much of its original: a letter must fit in a
# message itself, or the bad input would fail the batch instead of being set aside.
MAX_ORIGINAL_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 4000
# One part of a raw letter's original: well under the 512 KiB a stage may produce
# (runtime.kafka.MAX_MESSAGE_BYTES), leaving room for the full error text.
RAW_CHUNK_BYTES = 256 * 1024
# The full error of a raw letter: never that long in practice, but a library's
# text (an exception quoting a whole record) must not make a letter too large to
# produce, which would abort the stage's transaction at every retry.
MAX_RAW_MESSAGE_CHARS = 128 * 1024
SALT_BYTES = 16


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
    """A DeadLetter record (avro/DeadLetter.avsc) of a stage after anonymise.

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


def raw_dead_letter_key(city: str | None, source: str | None, letter_id: str) -> str:
    """All chunks of one letter in one partition, in order."""
    return f"{city or '-'}|{source or '-'}|{letter_id}"


def raw_topic_beside(dead_letter_topic: str) -> str:
    """The raw dead-letter topic that goes with a dead-letter topic (``test.x.dlq.v1``
    -> ``test.x.raw.dlq.v1``), so prefixed copies of the topics stay together."""
    return companion(dead_letter_topic, DLQ_TOPIC, RAW_DLQ_TOPIC, fallback=".raw")


@dataclass(frozen=True)
class Reject:
    """Everything a raw-zone stage knows about one reject, before it is split.

    ``message`` quotes no value (positions, declared field names, sizes): it is
    what dlq.v1, logs and the sender see. ``detail`` is the full text, values
    included, for the raw letter only. ``redacted_key`` is ``original_key`` with
    its identifier pseudonymised (or None); ``pseudonyms`` are keyed pseudonyms.
    """

    stage: str
    reason: str
    message: str
    original: bytes | None
    detail: str | None = None
    original_key: bytes | None = None
    redacted_key: bytes | None = None
    city: str | None = None
    source: str | None = None
    position: str | None = None
    fields: tuple[str, ...] = ()
    pseudonyms: tuple[str, ...] = ()
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None


def salted_sha256(salt: bytes, original: bytes | None) -> str:
    return hashlib.sha256(salt + (original or b"")).hexdigest()


def split(
    reject: Reject,
    *,
    raw_topic: str = RAW_DLQ_TOPIC,
    letter_id: str | None = None,
    salt: bytes | None = None,
    chunk_bytes: int = RAW_CHUNK_BYTES,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(raw letters, the redacted letter) of one reject, sharing a letter id."""
    letter_id = letter_id or os.urandom(16).hex()  # as unique as a uuid4, cheaper
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    common = _common_fields(reject, letter_id, salt)
    raw = _raw_letters(reject, common, raw_topic, salt, chunk_bytes)
    return raw, _redacted_letter(reject, common, raw_topic)


def _common_fields(reject: Reject, letter_id: str, salt: bytes) -> dict[str, Any]:
    """The fields both kinds of letter carry: what, where, when, how big, which
    digest; none of them quotes the original."""
    original = reject.original
    return {
        "stage": reject.stage,
        "reason": reject.reason,
        "city": reject.city,
        "source": reject.source,
        "source_topic": reject.source_topic,
        "source_partition": reject.source_partition,
        "source_offset": reject.source_offset,
        "failed_at": now_us(),
        "letter_id": letter_id,
        "position": reject.position,
        "field_names": list(reject.fields),
        "original_size": len(original) if original is not None else None,
        "original_sha256": salted_sha256(salt, original),
        "entity_pseudonyms": list(reject.pseudonyms),
    }


def _where(reject: Reject) -> str:
    return f"{reject.position}: " if reject.position else ""


def _raw_letters(
    reject: Reject, common: dict[str, Any], raw_topic: str, salt: bytes, chunk_bytes: int
) -> list[dict[str, Any]]:
    """The whole original in chunks of at most ``chunk_bytes`` (one letter with no
    original when it is empty or absent), each with the full error text."""
    original = reject.original
    size = len(original) if original is not None else 0
    full = reject.detail or reject.message
    if len(full) > MAX_RAW_MESSAGE_CHARS:
        full = full[:MAX_RAW_MESSAGE_CHARS] + f" [cut: {len(full):,} characters]"
    parts = (
        [original[i : i + chunk_bytes] for i in range(0, size, chunk_bytes)] if size else [original]
    )
    return [
        {
            **common,
            "message": _where(reject) + full,
            "original_key": reject.original_key,
            "original_value": part,
            "redacted": False,
            "raw_topic": raw_topic,
            "digest_salt": salt,
            "chunk": index,
            "chunks": len(parts),
        }
        for index, part in enumerate(parts)
    ]


def _redacted_letter(reject: Reject, common: dict[str, Any], raw_topic: str) -> dict[str, Any]:
    """The letter dlq.v1, the warehouse and logs see: the value-free message and a
    pointer to the raw letter, with the pseudonymised key and no original."""
    size = len(reject.original) if reject.original is not None else 0
    letter_id = common["letter_id"]
    pointer = f" [{size:,} bytes; the original and full error: letter {letter_id} on {raw_topic}]"
    return {
        **common,
        "message": (_where(reject) + reject.message)[: MAX_MESSAGE_CHARS - len(pointer)] + pointer,
        "original_key": reject.redacted_key,
        "original_value": None,
        "redacted": True,
        "raw_topic": raw_topic,
        "digest_salt": None,
        "chunk": None,
        "chunks": None,
    }


def reassemble(letters: list[dict[str, Any]]) -> bytes | None:
    """The whole original of one raw letter from its chunks (any order), checked
    against its salted digest; ValueError if a chunk is missing or it differs."""
    if not letters:
        raise ValueError("no chunk")
    ordered = sorted(letters, key=lambda letter: letter["chunk"] or 0)
    expected = ordered[0]["chunks"] or 1
    if [letter["chunk"] or 0 for letter in ordered] != list(range(expected)):
        raise ValueError(f"chunks {[x['chunk'] for x in ordered]} of {expected}")
    if ordered[0]["original_size"] is None:
        return None
    original = b"".join(letter["original_value"] or b"" for letter in ordered)
    if salted_sha256(ordered[0]["digest_salt"] or b"", original) != ordered[0]["original_sha256"]:
        raise ValueError("the reassembled original does not match its digest")
    return original


def replayed_marker(letter: dict[str, Any], message: str) -> dict[str, Any]:
    """The letter saying a raw letter was replayed (same letter id, no original):
    a replay skips letters that have one."""
    return {
        **{name: letter.get(name) for name in ("city", "source", "letter_id", "raw_topic")},
        "stage": "replay",
        "reason": "replayed",
        "message": f"{message} (letter {letter['letter_id']}, rejected by {letter['stage']})",
        "source_topic": None,
        "source_partition": None,
        "source_offset": None,
        "original_key": None,
        "original_value": None,
        "failed_at": now_us(),
        "redacted": False,
        "position": letter.get("position"),
        "field_names": [],
        "original_size": None,
        "original_sha256": None,
        "digest_salt": None,
        "entity_pseudonyms": [],
        "chunk": None,
        "chunks": None,
    }
