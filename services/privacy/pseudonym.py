"""Keyed pseudonyms: HMAC-SHA-256 under a city's key of one epoch.

The same value, city and epoch always give the same pseudonym (a replay gives
the same output); another epoch or another city gives an unrelated one, and
nobody without the key can compute or reverse it (no dictionary attack on
14-digit meter numbers). 120 bits of the digest, base32 in lowercase: 24
characters, collision-free in practice for any number of meters in France.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

import numpy as np

DIGEST_BYTES = 15  # 120 bits -> 24 base32 characters, no padding
_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
_BITS = np.array([16, 8, 4, 2, 1], dtype=np.uint8)


class Pseudonymiser:
    """Pseudonyms under one epoch key. The key is never shown (repr, logs)."""

    __slots__ = ("_hmac", "_key", "epoch")

    def __init__(self, key: bytes, epoch: str):
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        self._key = key  # for hmac.digest's one-shot C path in many()
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"Pseudonymiser(epoch={self.epoch!r}, key=<hidden>)"

    def __call__(self, value: str) -> str:
        mac = self._hmac.copy()
        mac.update(value.encode("utf-8"))
        return base64.b32encode(mac.digest()[:DIGEST_BYTES]).decode("ascii").lower()

    def many(self, values: Sequence[str]) -> list[str]:
        """``[self(v) for v in values]``, the base32 of every digest in one numpy pass:
        the pure-Python base32 costs more than the HMAC itself, and a batch of single
        readings asks for a thousand pseudonyms at once."""
        if not values:
            return []
        key, one = self._key, hmac.digest
        digests = b"".join(one(key, v.encode("utf-8"), "sha256")[:DIGEST_BYTES] for v in values)
        bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8))
        groups = bits.reshape(len(values) * DIGEST_BYTES * 8 // 5, 5) @ _BITS
        text = _ALPHABET[groups].tobytes().decode("ascii")
        width = DIGEST_BYTES * 8 // 5
        return [text[i : i + width] for i in range(0, len(text), width)]
