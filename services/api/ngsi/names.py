"""Attribute names of the API: Smart Data Models names where the vocabulary gives one.

``deploy/vocabulary.yaml`` lists, per metric, the Smart Data Models attributes that
carry it (``sdm`` entries). The API names a metric of an entity type by the entry of
that type without a condition; a conditional entry (``when: {vehicleType: bicycle}``)
shares its attribute with another metric, so such a metric keeps its own name, as does
a metric with no entry for the type. Read from the deploy file (not through normalise:
a stage is never imported here); only the ``metrics`` section is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from services.runtime.paths import REPO_ROOT

VOCABULARY_FILE = REPO_ROOT / "deploy" / "vocabulary.yaml"
ENERGY_TYPE = "CitePlusEnergyAggregate"
ENERGY_ATTRIBUTES = ("energy_kwh", "meter_count", "peak_kw")


@dataclass(frozen=True)
class Names:
    """(type, metric) -> attribute, and back; units per metric."""

    by_metric: dict[tuple[str, str], str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def attribute(self, entity_type: str, metric: str) -> str:
        return self.by_metric.get((entity_type, metric), metric)

    def metrics(self, attribute: str, types: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Metrics an attribute name stands for, for these types (any type when empty):
        its metric name itself, and the metrics Smart Data Models names so."""
        found = {attribute} if attribute in self.units or attribute in ENERGY_ATTRIBUTES else set()
        for (entity_type, metric), name in self.by_metric.items():
            if name == attribute and (not types or entity_type in types):
                found.add(metric)
        return tuple(sorted(found))

    def all_attributes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.by_metric.values()) | set(self.units)))


def names_from(document: dict) -> Names:
    """Pure: the naming rules applied to a parsed vocabulary document."""
    by_metric: dict[tuple[str, str], str] = {}
    units: dict[str, str] = {}
    for metric, raw in (document.get("metrics") or {}).items():
        units[metric] = str(raw.get("unit", ""))
        for entry in raw.get("sdm") or ():
            if not entry.get("when"):
                by_metric.setdefault((entry["type"], metric), entry["attribute"])
    return Names(by_metric, units)


@lru_cache(maxsize=4)
def load_names(path: Path = VOCABULARY_FILE) -> Names:
    """The names of the deployed vocabulary (read once per process)."""
    return names_from(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
