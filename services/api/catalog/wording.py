"""A dataset's title and description in French and English, from what it is.

City files name a dataset by a slug (``air-quality-observed``) and a domain; the
catalogue says it in words a portal's visitor reads, in the two languages the
national and European portals show.
"""

from __future__ import annotations

from typing import Any

from services.api.catalog import vocab

AGGREGATES = "energy-aggregates"


def _texts(fr: str, en: str) -> list[dict[str, str]]:
    return [{"@language": "fr", "@value": fr}, {"@language": "en", "@value": en}]


def wording(d: Any) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(dct:title, dct:description) of a federation Dataset message."""
    city = d.publisher.name or d.city
    if d.source == AGGREGATES:
        return _aggregates(city)
    domain_fr, domain_en = vocab.DOMAIN_LABELS.get(d.domain, (d.domain, d.domain))
    often_fr, often_en = vocab.FREQUENCY_LABELS.get(d.frequency, ("", ""))
    metrics = ", ".join(list(d.metrics)[:12])
    title = _texts(f"{city} : {d.name} ({domain_fr})", f"{city}: {d.name} ({domain_en})")
    description = _texts(
        f"Mesures de la source « {d.source} » de {city}, domaine {domain_fr}"
        + (f", publiées {often_fr}" if often_fr else "")
        + (f". Mesures : {metrics}." if metrics else "."),
        f"Readings of the source “{d.source}” of {city}, domain {domain_en}"
        + (f", published {often_en}" if often_en else "")
        + (f". Metrics: {metrics}." if metrics else "."),
    )
    return title, description


def _aggregates(city: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    title = _texts(
        f"{city} : consommation d'énergie agrégée",
        f"{city}: aggregated energy consumption",
    )
    description = _texts(
        f"Consommation d'énergie de {city} agrégée par zone, vecteur et secteur, publiée "
        "une fois la journée close, sous le secret statistique (une cellule de trop peu "
        "de points de livraison est publiée sans valeur).",
        f"Energy consumption of {city} aggregated per zone, carrier and sector, published "
        "once the day has closed, under statistical secrecy (a cell with too few delivery "
        "points is published without its values).",
    )
    return title, description
