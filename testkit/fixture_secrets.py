"""Pseudonymisation secrets for tests: deterministic, and strong enough for the guard.

``services.privacy.keys`` refuses secrets under 128 bits of estimated entropy
(``"s" * 40`` was a fixture once: a repeated character scores ~10 bits). A
fixture secret is the base64url SHA-256 of a label: 43 characters that look as
random as a generated secret, the same on every run.
"""

from __future__ import annotations

import base64
import hashlib


def fixture_secret(label: str) -> str:
    """A secret that passes the entropy guard, derived from ``label`` (stable)."""
    digest = hashlib.sha256(f"citeplus-test-secret|{label}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
