"""Keyed pseudonyms of entity ids for ingest's redacted dead letters.

A redacted letter may name the meter concerned only as a pseudonym keyed with
the city's secret (the one anonymise uses, epoch of the batch's reception), so
that an operator can tell "the same meter again" without the id: an unkeyed hash
of a 14-digit meter id is brute-forced in hours. When ingest cannot read the
city's keyring, letters carry no id at all rather than a weaker one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from services.privacy.keys import KeyStore, epoch_of, keys_dir_of
from services.runtime.errors import CiteplusError
from services.runtime.localday import DEFAULT_TIMEZONE

log = logging.getLogger(__name__)

Pseudonymise = Callable[[str], str]


class LetterPseudonyms:
    """City -> pseudonymiser of the current epoch, or None without a keyring."""

    def __init__(self, keys: KeyStore | None, timezones: Mapping[str, str] | None = None):
        self._keys = keys
        self._timezones = dict(timezones or {})  # city -> its zone: epochs are local months
        self._missing: set[str] = set()

    @classmethod
    def of_state_dir(
        cls, state_dir: Path, timezones: Mapping[str, str] | None = None
    ) -> LetterPseudonyms:
        return cls(KeyStore(keys_dir_of(state_dir)), timezones)

    def for_city(
        self, city: str, received_us: int, timezone: str | None = None
    ) -> Pseudonymise | None:
        """The pseudonymiser of the epoch (the city's local month, as anonymise keys
        it) of the batch's reception."""
        if self._keys is None:
            return None
        timezone = timezone or self._timezones.get(city, DEFAULT_TIMEZONE)
        try:
            return self._keys.pseudonymiser(city, epoch_of(received_us, timezone))
        except CiteplusError as exc:  # no keyring: letters carry no id
            if city not in self._missing:
                self._missing.add(city)
                log.warning(
                    "no pseudonymisation key: dead letters of this city carry no entity id",
                    extra={"city": city, "error": type(exc).__name__},
                )
            return None
