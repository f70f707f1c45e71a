"""Who may read what: the one rule for datasets and for their entity-level data.

Every door of a node asks here: the federation API (catalogue, schemas,
aggregates, subscriptions, entity and temporal queries), the common API that reads
through it, its subscriptions and the analysts' SQL door. Writing the rule twice
is how two doors end up disagreeing, and the laxer one is the one that leaks.

Two questions, two functions:

- :func:`may_see` (a dataset as a whole): open datasets to every identity, shared
  ones to the partners the city names, internal ones never. The node itself
  (``home``, its operators' certificate) sees what it shares with anyone.
- :func:`may_read_entities` (one entity's values: a meter, a station): the same,
  and, for a *personal* source (a city file's ``privacy: {personal: true}``:
  people or homes), only for identities the city names as partners of a shared
  dataset, or the node itself asking for itself. Never for the public, even when a
  city marked such a source open: a pseudonymised load curve is still personal
  data (WP29 opinion 05/2014), what may be opened of it is an aggregate.

A call may carry an on-behalf-of identity (a node relaying its own caller, the
common API relaying a key's partner or :data:`PUBLIC_AUDIENCE`): it is served only
what *both* identities may read, so relaying narrows and never widens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.policy.sharing import PUBLIC_AUDIENCE, SharingPolicy
from services.runtime.cities import SourceConfig

__all__ = [
    "PERSONAL_DOMAINS",
    "PUBLIC_AUDIENCE",
    "may_read_entities",
    "may_see",
    "source_is_personal",
]

# Domains whose entities are households' meters: personal unless declared otherwise
# (anonymise requires the declaration there; the same default keeps this side safe).
PERSONAL_DOMAINS = ("energy", "water")
_GENERALISING = ("identifier", "quasi-identifier")


def _sees(policy: SharingPolicy, identity: str, home: str) -> bool:
    if identity == PUBLIC_AUDIENCE:
        return policy.level == "open"
    if identity == home:
        return policy.level in ("open", "shared")
    return policy.allows(identity)


def may_see(
    policy: SharingPolicy, identity: str, home: str, on_behalf_of: str | None = None
) -> bool:
    """May ``identity`` (relaying ``on_behalf_of``, if any) see a dataset of this policy?

    Open data to everyone, shared data to the partners it names, internal data never;
    the node itself sees what it shares. With ``on_behalf_of``: what both may see."""
    if policy.level == "internal" or not _sees(policy, identity, home):
        return False
    return on_behalf_of is None or _sees(policy, on_behalf_of, home)


def _named_partner(policy: SharingPolicy, identity: str) -> bool:
    return policy.level == "shared" and identity in policy.partners


def may_read_entities(
    policy: SharingPolicy,
    identity: str,
    home: str,
    on_behalf_of: str | None = None,
    *,
    personal: bool,
) -> bool:
    """May ``identity`` (relaying ``on_behalf_of``) read entity-level data of a dataset?

    Beyond :func:`may_see`, a personal source's entities go only to partners the city
    names for a shared dataset, or to the node itself without on-behalf-of; never to
    :data:`PUBLIC_AUDIENCE`, whatever level the city gave the source. Relaying, the
    node (or a named partner) passes on only a caller that is itself a named partner."""
    if not may_see(policy, identity, home, on_behalf_of):
        return False
    if not personal:
        return True
    if on_behalf_of is None:
        return identity == home or _named_partner(policy, identity)
    relay_allowed = identity == home or _named_partner(policy, identity)
    return relay_allowed and _named_partner(policy, on_behalf_of)


def _classes(section: Any) -> list[str]:
    """The classes a privacy ``fields`` or ``attributes`` mapping gives."""
    if not isinstance(section, Mapping):
        return []
    found = []
    for rule in section.values():
        found.append(rule.get("class") if isinstance(rule, Mapping) else rule)
    return [c for c in found if isinstance(c, str)]


def source_is_personal(source: SourceConfig) -> bool:
    """Whether a city source carries personal data, as its ``privacy`` section says.

    Declared ``personal: true|false`` wins. Left out, the same inference anonymise
    makes: the energy and water domains are personal, and so is a source whose policy
    pseudonymises or generalises a field, states consent or coarsens. A source with
    no privacy section at all (anonymise refuses to run it) counts as personal:
    nothing says it is not, and deny by default is the safe reading."""
    privacy = source.privacy
    if not isinstance(privacy, Mapping):
        return True
    declared = privacy.get("personal")
    if isinstance(declared, bool):
        return declared
    if source.domain in PERSONAL_DOMAINS:
        return True
    if "consent" in privacy or privacy.get("coarsen") is not None:
        return True
    classes = _classes(privacy.get("fields")) + _classes(privacy.get("attributes"))
    return any(c in _GENERALISING for c in classes)
