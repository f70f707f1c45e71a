"""The catalogue as JSON-LD, built from what the nodes' GetCatalog listed (pure).

One ``dcat:Catalog`` for the caller: one ``dcat:Dataset`` per dataset a node listed
for the caller's audience (a city source or a city's energy aggregates), each with
its publisher (the city), contact point, themes, territory, time coverage, update
frequency and distributions: the NGSI-LD API for everyone (with its licence), and
for a partner the federation's Subscribe with the Kafka topic and Avro schema that
carry it. The keys are compact IRIs (``dct:title``) of the inline ``@context``; they
are a public contract (docs/api.md, Catalogue): add, never rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from services.api.catalog import vocab
from services.api.catalog.distributions import distributions
from services.api.catalog.wording import wording
from services.federation.protos import pb

LEVEL_NAMES = {pb.SHARING_LEVEL_OPEN: "open", pb.SHARING_LEVEL_SHARED: "shared"}


@dataclass(frozen=True)
class Listed:
    """A dataset as one node listed it: the node's code and federation address."""

    node: str
    address: str
    dataset: Any  # a federation Dataset message


def build_catalog(
    datasets: Sequence[Listed], nodes: Sequence[str], base_url: str, *, partner: bool = False
) -> dict[str, Any]:
    """The catalogue document: ``nodes`` are the nodes that answered (in order),
    ``partner`` adds the distributions only partners may use."""
    base = base_url.rstrip("/")
    unique: dict[str, Listed] = {}
    for listed in datasets:
        unique.setdefault(listed.dataset.id, listed)
    entries = [_dataset(item, base, partner) for _, item in sorted(unique.items())]
    catalog: dict[str, Any] = {
        "@context": vocab.CONTEXT,
        "@id": f"{base}/catalog",
        "@type": "dcat:Catalog",
        "dct:title": _texts(
            "Cité+ : catalogue des données des villes de la fédération",
            "Cité+: catalogue of the data of the federation's cities",
        ),
        "dct:description": _texts(
            "Les jeux de données que les villes de la fédération Cité+ partagent, "
            "lisibles par l'API NGSI-LD commune de ce nœud.",
            "The datasets the cities of the Cité+ federation share, readable through "
            "this node's common NGSI-LD API.",
        ),
        "dct:publisher": _node_publisher(base, nodes),
        "foaf:homepage": {"@id": f"{base}/portal", "@type": "foaf:Document"},
        "dcat:themeTaxonomy": {
            "@id": vocab.THEME[:-1],
            "@type": "skos:ConceptScheme",
            "dct:title": _texts("Thèmes des données (UE)", "Data theme (EU)"),
        },
        "dcat:service": [_service(base, [e["@id"] for e in entries])],
        "dcat:dataset": entries,
        "citeplus:nodes": list(nodes),
    }
    last = [e["dct:modified"]["@value"] for e in entries if "dct:modified" in e]
    if last:
        catalog["dct:modified"] = _datetime_value(max(last))
    return catalog


def _texts(fr: str, en: str) -> list[dict[str, str]]:
    return [{"@language": "fr", "@value": fr}, {"@language": "en", "@value": en}]


def concept(uri: str, labels: tuple[str, str]) -> dict[str, Any]:
    return {"@id": uri, "@type": "skos:Concept", "skos:prefLabel": _texts(*labels)}


def _datetime_value(iso: str) -> dict[str, str]:
    return {"@value": iso, "@type": "xsd:dateTime"}


def _iso(timestamp: Any) -> str:
    moment = datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _node_publisher(base: str, nodes: Sequence[str]) -> dict[str, Any]:
    name = f"Cité+ ({nodes[0]})" if nodes else "Cité+"
    return {"@id": f"{base}/catalog#publisher", "@type": "foaf:Agent", "foaf:name": name}


def _service(base: str, served: list[str]) -> dict[str, Any]:
    """The common NGSI-LD API as a ``dcat:DataService``."""
    return {
        "@id": f"{base}/ngsi-ld/v1",
        "@type": "dcat:DataService",
        "dct:title": _texts("API NGSI-LD commune de Cité+", "Cité+ common NGSI-LD API"),
        "dcat:endpointURL": vocab.resource(f"{base}/ngsi-ld/v1"),
        "dcat:endpointDescription": vocab.resource(f"{base}/openapi.json"),
        "dct:conformsTo": {"@id": vocab.NGSI_LD_SPEC, "@type": "dct:Standard"},
        "dcat:servesDataset": [{"@id": s} for s in served],
    }


def dataset_uri(base: str, dataset_id: str) -> str:
    return f"{base}/catalog/datasets/{quote(dataset_id, safe='/')}"


def _dataset(listed: Listed, base: str, partner: bool) -> dict[str, Any]:
    d = listed.dataset
    uri = dataset_uri(base, d.id)
    level = LEVEL_NAMES.get(d.level, "shared")
    title, description = wording(d)
    entry: dict[str, Any] = {
        "@id": uri,
        "@type": "dcat:Dataset",
        "dct:identifier": d.id,
        "dct:title": title,
        "dct:description": description,
        "dct:publisher": _publisher(d, base),
        "dcat:theme": [
            concept(vocab.THEME + code, vocab.THEME_LABELS[code])
            for code in (*vocab.THEMES.get(d.domain, ()), "REGI")
        ],
        "dcat:keyword": _keywords(d),
        "dct:accrualPeriodicity": {
            "@id": vocab.FREQUENCY + (d.frequency or "UNKNOWN"),
            "@type": "dct:Frequency",
        },
        "dct:accessRights": {
            "@id": vocab.ACCESS_RIGHT + ("PUBLIC" if level == "open" else "RESTRICTED"),
            "@type": "dct:RightsStatement",
        },
        "dcat:distribution": distributions(d, listed.address, base, uri, partner=partner),
        "citeplus:city": d.city,
        "citeplus:domain": d.domain,
        "citeplus:level": level,
        "citeplus:node": listed.node,
        "citeplus:entityType": list(d.entity_types),
    }
    entry.update(_coverage(d))
    if d.publisher.insee:
        entry["dct:spatial"] = _territory(d.publisher.insee)
    if d.publisher.contact_email:
        entry["dcat:contactPoint"] = {
            "@type": "vcard:Kind",
            "vcard:fn": d.publisher.name or d.city,
            "vcard:hasEmail": {"@id": "mailto:" + d.publisher.contact_email},
        }
    return entry


def _coverage(d: Any) -> dict[str, Any]:
    """dct:temporal and dct:modified from what the node holds (nothing yet: none)."""
    if not d.HasField("coverage") or not d.coverage.HasField("first"):
        return {}
    first, last = _iso(d.coverage.first), _iso(d.coverage.last)
    return {
        "dct:temporal": {
            "@type": "dct:PeriodOfTime",
            "dcat:startDate": _datetime_value(first),
            "dcat:endDate": _datetime_value(last),
        },
        "dct:modified": _datetime_value(last),
    }


def _publisher(d: Any, base: str) -> dict[str, Any]:
    """The city as a ``foaf:Agent``: its SIREN page when its city file gives one."""
    siren = d.publisher.siren
    agent: dict[str, Any] = {
        "@id": vocab.SIREN_PAGE + siren if siren else f"{base}/catalog/publishers/{d.city}",
        "@type": "foaf:Agent",
        "foaf:name": d.publisher.name or d.city,
        "dct:type": concept(vocab.LOCAL_AUTHORITY, vocab.LOCAL_AUTHORITY_LABELS),
    }
    return agent


def _territory(insee: str) -> dict[str, str]:
    return {"@id": vocab.territory_uri(insee), "@type": "dct:Location"}


def _keywords(d: Any) -> list[dict[str, str]]:
    fr, en = vocab.DOMAIN_LABELS.get(d.domain, (d.domain, d.domain))
    words = [(fr, "fr"), (en, "en"), (d.publisher.name or d.city, "fr"), (d.name, "en")]
    words += [(metric, "en") for metric in list(d.metrics)[:20]]
    seen: dict[tuple[str, str], None] = {}
    for word, language in words:
        seen.setdefault((word, language))
    return [{"@language": language, "@value": word} for word, language in seen]
