"""Attributes of Smart Data Models entities that normalise drops, made visible.

An attribute that no metric of the vocabulary and no descriptive name of its
entity type knows (a misspelling, a vendor extension, a legacy name with no
alias yet) is not published. The entity's other metrics still are, so the loss
would go unseen: each such attribute is counted per source in
``citeplus_normalise_dropped_attributes`` (``citeplus status`` shows it), and
logged once per (city, source, attribute) with what to do about it.

Counts follow the batch's transaction like the stage's state: a record that
fails, or a batch that aborts, counts nothing.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("services.normalise.stage")

METRIC = "citeplus_normalise_dropped_attributes"
MAX_LOGGED = 10_000  # distinct (city, source, attribute) kept for "log once"


class DroppedAttributes:
    """Per-source counts of dropped attributes, committed with the batch."""

    def __init__(self, registry: CollectorRegistry):
        self.counter = Counter(
            METRIC,
            "Attributes of Smart Data Models entities not in the vocabulary (not published)",
            ["city", "source"],
            registry=registry,
        )
        self._record: list[tuple[str, str, str]] = []
        self._batch: Tally[tuple[str, str, str]] = Tally()
        self._logged: set[tuple[str, str, str]] = set()

    def note(self, city: str, source: str, attributes: list[str]) -> None:
        """The current record of ``city``/``source`` dropped these attributes."""
        self._record.extend((city, source, name) for name in attributes)

    def end_record(self, failed: bool = False) -> None:
        """The current record succeeded (its drops join the batch) or failed."""
        if not failed:
            self._batch.update(self._record)
        self._record.clear()

    def commit(self) -> None:
        self.end_record()
        per_source: Tally[tuple[str, str]] = Tally()
        for (city, source, name), count in self._batch.items():
            per_source[(city, source)] += count
            self._log_once(city, source, name)
        for (city, source), count in per_source.items():
            self.counter.labels(city, source).inc(count)
        self._batch.clear()

    def abort(self) -> None:
        self._record.clear()
        self._batch.clear()

    def _log_once(self, city: str, source: str, name: str) -> None:
        key = (city, source, name)
        if key in self._logged or len(self._logged) >= MAX_LOGGED:
            return
        self._logged.add(key)
        log.warning(
            f"attribute {name!r} of {city}/{source} is not in the vocabulary and is not "
            "published; map it (an alias or a new attribute in deploy/sdm/<Type>.yaml, "
            "docs/normalise.md) or list it under `ignore` if it only describes",
            extra={"city": city, "source": source, "attribute": name},
        )
