"""Who a request is served for: what the key middleware decides, what routes read.

Stored in ``request["audience"]`` by the keys middleware (services/api/middlewares.py)
and handed to the federation API as ``citeplus-on-behalf-of``: a key bound to a
partner reads as that partner, anything else (no key, a key without partner) as the
reserved code ``public``, which only ever sees open data. Peers and the node only
narrow what that code may see, so an audience can never widen itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# The reserved audience code of services/policy (PUBLIC_AUDIENCE there): a city file
# may never name it as a partner, so no shared dataset is ever served under it.
PUBLIC_AUDIENCE = "public"


@dataclass(frozen=True)
class Audience:
    """The caller: its key (None: anonymous), the application it was issued to, and the
    partner code it is bound to (None: open data only)."""

    key_id: str | None = None
    application: str | None = None
    partner: str | None = None

    @property
    def on_behalf_of(self) -> str:
        """The identity the federation API narrows to for this caller."""
        return self.partner or PUBLIC_AUDIENCE

    @property
    def anonymous(self) -> bool:
        return self.key_id is None


ANONYMOUS = Audience()
