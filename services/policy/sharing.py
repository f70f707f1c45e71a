"""Sharing levels of each city source: what may leave the node, and for whom.

``sharing: {level: open | shared | internal, partners: [...], licence: ...}`` in a
source of a city file. Deny by default: a source without a sharing section is
internal and never reaches a ``public.*`` topic or a partner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.runtime.cities import CityConfig
from services.runtime.errors import ConfigError

LEVELS = ("open", "shared", "internal")
# The audience of the common API's anonymous and unbound keys (services/policy/access.py):
# reserved, so that no city can make "the public" a partner of a shared dataset.
PUBLIC_AUDIENCE = "public"
# Licences a dataset may be published under, spelled as SPDX identifiers where SPDX
# has one (ODbL-1.0, CC-BY-4.0, CC0-1.0). The Etalab Licence Ouverte 2.0 is SPDX's
# etalab-2.0; the project spells it Licence-Ouverte-2.0, as the federation's energy
# aggregates always did (federation.DEFAULT_AGGREGATES). Catalogues (DCAT-AP, the
# API) show these codes; a code outside this list is refused at start so that a typo
# never reaches a partner's licence screen. To add one: here, and docs/federation.md.
LICENCES = {
    "Licence-Ouverte-2.0": "https://www.etalab.gouv.fr/licence-ouverte-open-licence/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
}
_CODE = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class SharingPolicy:
    level: str = "internal"
    partners: tuple[str, ...] = ()
    licence: str | None = None

    def allows(self, partner: str | None) -> bool:
        """May ``partner`` (None: anyone) see this dataset?"""
        if self.level == "open":
            return True
        return self.level == "shared" and partner is not None and partner in self.partners


def _partners(partners: object, level: str, *, source: str, key: str) -> list[str]:
    """The partner codes of a sharing section: city codes, never the public audience,
    required for a shared dataset and only for one."""
    if not isinstance(partners, list) or not all(
        isinstance(p, str) and _CODE.match(p) for p in partners
    ):
        raise ConfigError(
            "partners must be a list of city codes", source=source, key=f"{key}.partners"
        )
    if PUBLIC_AUDIENCE in partners:
        raise ConfigError(
            f"{PUBLIC_AUDIENCE!r} is reserved for the common API's public audience and "
            "cannot be a partner; to give everyone a dataset, use level: open with a licence",
            source=source,
            key=f"{key}.partners",
        )
    if level == "shared" and not partners:
        raise ConfigError(
            "a shared dataset must name its partners", source=source, key=f"{key}.partners"
        )
    if level != "shared" and partners:
        raise ConfigError(
            f"partners only apply to level shared (this is {level})",
            source=source,
            key=f"{key}.partners",
        )
    return partners


def parse_sharing(raw: object, *, source: str, key: str) -> SharingPolicy:
    if raw is None:
        return SharingPolicy()
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping {level, partners, licence}", source=source, key=key)
    unknown = set(raw) - {"level", "partners", "licence"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", source=source, key=key)
    level = raw.get("level", "internal")
    if level not in LEVELS:
        raise ConfigError(
            f"level must be one of {LEVELS}, got {level!r}", source=source, key=f"{key}.level"
        )
    partners = _partners(raw.get("partners", []), level, source=source, key=key)
    licence = _licence(raw.get("licence"), level, source=source, key=f"{key}.licence")
    return SharingPolicy(level, tuple(partners), licence)


def _licence(licence: object, level: str, *, source: str, key: str) -> str | None:
    """The licence checked: required for open data, one of LICENCES when given."""
    if level == "open" and not licence:
        raise ConfigError(
            "an open dataset must declare its licence (e.g. ODbL-1.0, Licence-Ouverte-2.0)",
            source=source,
            key=key,
        )
    if licence is not None and licence not in LICENCES:
        raise ConfigError(
            f"unknown licence {licence!r}; use one of {', '.join(LICENCES)} "
            "(Etalab's Licence Ouverte 2.0 is spelled Licence-Ouverte-2.0)",
            source=source,
            key=key,
        )
    return None if licence is None else str(licence)


def sharing_policies(cities: dict[str, CityConfig]) -> dict[tuple[str, str], SharingPolicy]:
    """Every source's policy, validated at start (errors name the file and key)."""
    policies = {}
    for city in cities.values():
        for index, source in enumerate(city.sources):
            policies[(city.code, source.id)] = parse_sharing(
                source.sharing, source=city.path or city.code, key=f"sources[{index}].sharing"
            )
    return policies


def partners_of(policies: dict[tuple[str, str], SharingPolicy]) -> list[str]:
    return sorted({p for policy in policies.values() for p in policy.partners})
