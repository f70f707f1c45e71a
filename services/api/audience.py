"""Who is asking: the API key's application and, for a key bound to a partner, its
partner code. What the federation serves follows ``on_behalf_of`` only."""

from __future__ import annotations

from dataclasses import dataclass

# The reserved code of services/policy (PUBLIC_AUDIENCE) that no city may name a partner.
PUBLIC_AUDIENCE = "public"


@dataclass(frozen=True)
class Audience:
    key_id: str | None = None
    application: str | None = None
    partner: str | None = None

    @property
    def on_behalf_of(self) -> str:
        """The identity peers serve: the partner of the key, else the public."""
        return self.partner or PUBLIC_AUDIENCE


ANONYMOUS = Audience()
