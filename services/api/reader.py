"""PLACEHOLDER, replaced by the NGSI-LD part's reader.py at merge (keep only its names).

The shell (app.py, main.py) needs two names from here: :class:`EntityReader`, what
the routes read through, and :class:`FederationReader`, the implementation over the
federation gRPC API built from the node's federation settings. This placeholder
carries no query method: the real module defines them.
"""

from __future__ import annotations

from typing import Protocol

from services.policy.federation import FederationConfig


class EntityReader(Protocol):
    """What the NGSI-LD routes read every city through (placeholder: no methods yet)."""

    def close(self) -> None: ...


class FederationReader:
    """Placeholder: holds the federation settings the real reader dials with."""

    def __init__(self, federation: FederationConfig):
        self.federation = federation

    def close(self) -> None:
        return None
