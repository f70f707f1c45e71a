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

DIGEST_BYTES = 15  # 120 bits -> 24 base32 characters, no padding


class Pseudonymiser:
    """Pseudonyms under one epoch key. The key is never shown (repr, logs)."""

    __slots__ = ("_hmac", "epoch")

    def __init__(self, key: bytes, epoch: str):
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"Pseudonymiser(epoch={self.epoch!r}, key=<hidden>)"

    def __call__(self, value: str) -> str:
        mac = self._hmac.copy()
        mac.update(value.encode("utf-8"))
        return base64.b32encode(mac.digest()[:DIGEST_BYTES]).decode("ascii").lower()
