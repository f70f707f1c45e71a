"""The controlled vocabulary (``deploy/vocabulary.yaml``), loaded and checked once.

Every metric names a canonical unit of :mod:`services.normalise.units`; its Smart
Data Models entries say which attribute of which entity type carries it, so the
built-in mapping of those types is data, not per-city code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.normalise import quality
from services.normalise.plausibility import Plausibility, load_plausibility
from services.normalise.units import BY_SYMBOL, Unit, find_unit
from services.runtime.cities import DOMAINS
from services.runtime.errors import ConfigError
from services.runtime.paths import REPO_ROOT
from services.runtime.yaml_config import parse_strict

if TYPE_CHECKING:
    from services.normalise.sdm_models import TypeMap

VOCABULARY_FILE = REPO_ROOT / "deploy" / "vocabulary.yaml"
TEMPORALS = ("interval", "instant")
KINDS = ("interval", "average", "cumulative", "instantaneous")
METRIC_KEYS = frozenset(
    ("domain", "unit", "temporal", "description", "decimals", "carrier", "min", "max", "sdm")
)


@dataclass(frozen=True)
class SdmEntry:
    """One Smart Data Models attribute that carries a metric."""

    type: str
    attribute: str
    kind: str
    unit: Unit
    when: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Metric:
    name: str
    domain: str
    unit: Unit
    temporal: str
    description: str
    decimals: int = 6
    carrier: str | None = None
    min: float | None = None
    max: float | None = None
    sdm: tuple[SdmEntry, ...] = ()


@dataclass(frozen=True)
class SdmModel:
    """Where an entity type says when it was observed, and what period it covers."""

    type: str
    time: tuple[str, ...]
    period: tuple[str, str] | None = None


@dataclass(frozen=True)
class Vocabulary:
    metrics: dict[str, Metric]
    sectors: tuple[str, ...]
    models: dict[str, SdmModel]
    # (type, attribute) -> entries, conditional ones first
    sdm_attributes: dict[str, list[tuple[str, SdmEntry, Metric]]] = field(default_factory=dict)
    source: str = str(VOCABULARY_FILE)
    # entity type -> its attributes, aliases and descriptive names (sdm_models.TypeMap)
    types: dict[str, TypeMap] = field(default_factory=dict)
    # metric -> largest rate one meter can draw (metric unit per hour): register plausibility
    max_rates: dict[str, float] = field(default_factory=dict)
    plausibility: Plausibility = field(default_factory=Plausibility)

    def metric(self, name: str, *, source: str, key: str) -> Metric:
        found = self.metrics.get(name)
        if found is None:
            raise ConfigError(
                f"unknown metric {name!r}; the vocabulary ({self.source}) has: "
                f"{', '.join(sorted(self.metrics))}",
                source=source,
                key=key,
            )
        return found


def load_vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """The vocabulary at ``path``, checked whole: the first fault found raises a
    ConfigError naming its key (sectors, quality flags, models, metrics, ...)."""
    where = str(path)
    document = _read_document(path, where)

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, source=where, key=key)

    sectors = document.get("sectors")
    if not isinstance(sectors, list) or not all(isinstance(s, str) and s for s in sectors):
        raise fail("sectors", "expected a list of sector names")
    _check_flags(document.get("quality_flags"), fail)
    models = _models(document.get("smart_data_models") or {}, fail)
    metrics, by_attribute = _metrics(document.get("metrics"), models, fail)
    _check_attributes(by_attribute, fail)
    from services.normalise.sdm_models import SDM_DIR, load_type_maps

    sdm_dir = SDM_DIR if Path(path) == VOCABULARY_FILE else Path(path).parent / "sdm"
    types = load_type_maps(metrics, models, by_attribute, sdm_dir)
    max_rates = _max_rates(document.get("max_rates"), metrics, fail)
    plausibility = load_plausibility(document.get("implausible"), metrics, fail)
    return Vocabulary(
        metrics,
        tuple(sectors),
        models,
        by_attribute,
        where,
        types=types,
        max_rates=max_rates,
        plausibility=plausibility,
    )


def _read_document(path: Path, where: str) -> dict[str, Any]:
    """The vocabulary file parsed (strict YAML: no duplicate keys)."""
    try:
        document = parse_strict(Path(path).read_text(encoding="utf-8"), where)
    except OSError as exc:
        raise ConfigError(f"cannot read the vocabulary: {exc.strerror}", source=where) from exc
    if not isinstance(document, dict):
        raise ConfigError("expected a mapping with metrics, sectors, ...", source=where)
    return document


def _models(raw_models: dict[str, Any], fail) -> dict[str, SdmModel]:
    """``smart_data_models: {type: {time: [...], period: [from, to]}}``."""
    models: dict[str, SdmModel] = {}
    for type_name, raw in raw_models.items():
        key = f"smart_data_models.{type_name}"
        if not isinstance(raw, dict) or not _names(raw.get("time")):
            raise fail(f"{key}.time", "expected a list of time attribute names")
        period = raw.get("period")
        if period is not None and (not _names(period) or len(period) != 2):
            raise fail(f"{key}.period", "expected [from attribute, to attribute]")
        models[type_name] = SdmModel(
            type_name, tuple(raw["time"]), tuple(period) if period else None
        )
    return models


def _metrics(
    raw_metrics: Any, models: dict[str, SdmModel], fail
) -> tuple[dict[str, Metric], dict[str, list[tuple[str, SdmEntry, Metric]]]]:
    """The metrics, and the Smart Data Models attributes (``type.attribute``) that
    carry them, in the order the file gives them."""
    if not isinstance(raw_metrics, dict) or not raw_metrics:
        raise fail("metrics", "expected a mapping of metric name to its definition")
    metrics: dict[str, Metric] = {}
    by_attribute: dict[str, list[tuple[str, SdmEntry, Metric]]] = {}
    for name, raw in raw_metrics.items():
        metric = _metric(name, raw, models, fail)
        metrics[name] = metric
        for entry in metric.sdm:
            by_attribute.setdefault(f"{entry.type}.{entry.attribute}", []).append(
                (name, entry, metric)
            )
    return metrics, by_attribute


def _metric(name: Any, raw: Any, models: dict[str, SdmModel], fail) -> Metric:
    """One metric checked, with its Smart Data Models entries."""
    key = f"metrics.{name}"
    if not isinstance(name, str) or not isinstance(raw, dict):
        raise fail(key, "expected a mapping (domain, unit, temporal, description)")
    unknown = set(raw) - METRIC_KEYS
    if unknown:
        raise fail(f"{key}.{sorted(unknown)[0]}", "unknown key")
    if raw.get("domain") not in DOMAINS:
        raise fail(f"{key}.domain", f"expected one of {', '.join(DOMAINS)}")
    unit = BY_SYMBOL.get(str(raw.get("unit")))
    if unit is None:
        raise fail(
            f"{key}.unit",
            f"{raw.get('unit')!r} is not a unit symbol of services/normalise/units.py",
        )
    if raw.get("temporal") not in TEMPORALS:
        raise fail(f"{key}.temporal", f"expected one of {', '.join(TEMPORALS)}")
    if not isinstance(raw.get("description"), str):
        raise fail(f"{key}.description", "a description is required")
    decimals = raw.get("decimals", 6)
    if not isinstance(decimals, int) or not 0 <= decimals <= 12:
        raise fail(f"{key}.decimals", "expected an integer from 0 to 12")
    for bound in ("min", "max"):
        if bound in raw and not isinstance(raw[bound], int | float):
            raise fail(f"{key}.{bound}", "expected a number")
    metric = Metric(
        name=name,
        domain=raw["domain"],
        unit=unit,
        temporal=raw["temporal"],
        description=raw["description"],
        decimals=decimals,
        carrier=raw.get("carrier"),
        min=raw.get("min"),
        max=raw.get("max"),
    )
    entries = [
        _sdm_entry(entry, f"{key}.sdm[{i}]", metric, models, fail)
        for i, entry in enumerate(raw.get("sdm") or ())
    ]
    return Metric(**{**metric.__dict__, "sdm": tuple(entries)})


def _check_attributes(by_attribute: dict[str, list[tuple[str, SdmEntry, Metric]]], fail) -> None:
    """Conditional entries first (sorted in place, as the plans read them); at most
    one unconditional entry per attribute."""
    for entries in by_attribute.values():
        entries.sort(key=lambda item: not item[1].when)  # conditional entries first
        plain = [e for e in entries if not e[1].when]
        if len(plain) > 1:
            raise fail(
                f"metrics.{plain[1][0]}.sdm",
                f"{plain[1][1].type}.{plain[1][1].attribute} is already mapped to "
                f"{plain[0][0]} (add a `when` condition to one of them)",
            )


def _max_rates(raw: Any, metrics: dict[str, Metric], fail) -> dict[str, float]:
    """``max_rates: {metric: rate}``: interval metrics only, positive numbers."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail("max_rates", "expected a mapping of interval metric to its largest rate")
    out: dict[str, float] = {}
    for name, rate in raw.items():
        metric = metrics.get(name)
        if metric is None or metric.temporal != "interval":
            raise fail(f"max_rates.{name}", "not an interval metric of this vocabulary")
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
            raise fail(f"max_rates.{name}", "expected a positive number (metric unit per hour)")
        out[name] = float(rate)
    return out


def _sdm_entry(raw: Any, key: str, metric: Metric, models, fail) -> SdmEntry:
    if not isinstance(raw, dict):
        raise fail(key, "expected {type, attribute, kind, unit}")
    if raw.get("type") not in models:
        raise fail(f"{key}.type", f"{raw.get('type')!r} is not declared under smart_data_models")
    if not isinstance(raw.get("attribute"), str):
        raise fail(f"{key}.attribute", "expected the attribute name")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise fail(f"{key}.kind", f"expected one of {', '.join(KINDS)}")
    unit = find_unit(str(raw.get("unit")))
    if unit is None:
        raise fail(f"{key}.unit", f"unknown unit {raw.get('unit')!r}")
    check_kind(metric, kind, unit, fail=lambda message: fail(key, message))
    when = raw.get("when") or {}
    if not isinstance(when, dict):
        raise fail(f"{key}.when", "expected {attribute: value}")
    return SdmEntry(
        raw["type"],
        raw["attribute"],
        kind,
        unit,
        tuple((str(k), str(v)) for k, v in when.items()),
    )


def check_kind(metric: Metric, kind: str, unit: Unit, *, fail) -> None:
    """Refuse a kind/unit that cannot give the metric (raises what ``fail`` returns)."""
    from services.normalise.units import INTEGRATES_TO

    dimension = metric.unit.dimension
    if kind == "cumulative" and metric.temporal != "interval":
        raise fail(f"a cumulative register gives an interval metric; {metric.name} is not one")
    if kind == "interval" and metric.temporal != "interval":
        raise fail(f"{metric.name} is an instant metric; use kind instantaneous or average")
    if kind == "instantaneous" and metric.temporal != "instant":
        raise fail(f"{metric.name} is an interval metric; use kind interval or cumulative")
    integrates = kind == "average" and metric.temporal == "interval"
    if integrates:
        if INTEGRATES_TO.get(unit.dimension) != dimension:
            raise fail(
                f"an average {unit.dimension} ({unit.symbol}) over the step cannot give "
                f"{metric.name} ({dimension}, {metric.unit.symbol})"
            )
    elif unit.dimension != dimension:
        raise fail(
            f"{unit.symbol} ({unit.dimension}) cannot be converted to {metric.name}'s "
            f"unit {metric.unit.symbol} ({dimension})"
        )


def _names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _check_flags(raw: Any, fail) -> None:
    if not isinstance(raw, list):
        raise fail("quality_flags", "expected the list of quality bits")
    declared = {(item.get("bit"), item.get("name")) for item in raw if isinstance(item, dict)}
    expected = {(bit, name) for name, bit in quality.BITS.items()}
    if declared != expected:
        raise fail(
            "quality_flags",
            f"must list exactly the bits the code sets: {sorted(expected)}, got {sorted(declared)}",
        )
