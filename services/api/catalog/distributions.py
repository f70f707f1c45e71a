"""A dataset's distributions: how to get its data.

Everyone: the common NGSI-LD API, its entities query for each entity type of the
dataset (``type`` and an ``idPattern`` on the city), with the dataset's licence. A
partner also gets the federation's Subscribe on the node that owns the dataset: the
Kafka topic that carries it for that partner, its schema-registry subject and Avro
record type, and the federation dataset id to subscribe with.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from services.api.catalog import vocab

SUBSCRIBE_METHOD = "citeplus.federation.v1.Federation/Subscribe"
LD_JSON = {"@id": vocab.IANA + "application/ld+json", "@type": "dct:MediaType"}
JSON_LD_FILE = {"@id": vocab.FILE_TYPE + "JSON_LD", "@type": "dct:MediaTypeOrExtent"}


def entities_url(base: str, entity_type: str, city: str) -> str:
    """The NGSI-LD query of one entity type of one city (what the API serves)."""
    pattern = quote(f"urn:ngsi-ld:{entity_type}:{city}:.*", safe=":*.")
    return f"{base}/ngsi-ld/v1/entities?type={quote(entity_type)}&idPattern={pattern}"


def distributions(
    d: Any, address: str, base: str, uri: str, *, partner: bool
) -> list[dict[str, Any]]:
    licence = _licence(d.licence)
    if d.entities_withheld:
        # A personal source listed to someone its city does not name as a partner:
        # its entities are not served to them, so no way to them is offered.
        return []
    found = [
        _ngsi(d, base, uri, entity_type, licence) for entity_type in (list(d.entity_types) or [""])
    ]
    if partner:
        found.append(_federation(d, address, uri, licence))
    return found


def _licence(code: str) -> dict[str, str] | None:
    target = vocab.licence_uri(code)
    return None if target is None else {"@id": target, "@type": "dct:LicenseDocument"}


def _ngsi(
    d: Any, base: str, uri: str, entity_type: str, licence: dict[str, str] | None
) -> dict[str, Any]:
    """The NGSI-LD API's answer for one entity type (no type held yet: the types list)."""
    url = entities_url(base, entity_type, d.city) if entity_type else f"{base}/ngsi-ld/v1/types"
    entry: dict[str, Any] = {
        "@id": f"{uri}#ngsi-ld" + (f"-{quote(entity_type)}" if entity_type else ""),
        "@type": "dcat:Distribution",
        "dct:title": [
            {"@language": "fr", "@value": f"API NGSI-LD : {entity_type or 'types'}"},
            {"@language": "en", "@value": f"NGSI-LD API: {entity_type or 'types'}"},
        ],
        "dcat:accessURL": vocab.resource(url),
        "dcat:accessService": {"@id": f"{base}/ngsi-ld/v1"},
        "dcat:mediaType": LD_JSON,
        "dct:format": JSON_LD_FILE,
        "dct:conformsTo": {"@id": vocab.NGSI_LD_SPEC, "@type": "dct:Standard"},
    }
    if licence:
        entry["dct:license"] = licence
    return entry


def _federation(d: Any, address: str, uri: str, licence: dict[str, str] | None) -> dict[str, Any]:
    """The federation's Subscribe on the owning node (certificate of the federation)."""
    entry: dict[str, Any] = {
        "@id": f"{uri}#federation",
        "@type": "dcat:Distribution",
        "dct:title": [
            {"@language": "fr", "@value": "API de fédération (gRPC), topic Kafka et schéma Avro"},
            {"@language": "en", "@value": "Federation API (gRPC), Kafka topic and Avro schema"},
        ],
        "dcat:accessURL": vocab.resource(f"https://{address}/{SUBSCRIBE_METHOD}"),
        "dct:conformsTo": {"@id": vocab.AVRO_SPEC, "@type": "dct:Standard"},
        "citeplus:federationDataset": d.id,
        "citeplus:topic": d.topic,
        "citeplus:schemaSubject": d.schema_subject,
        "citeplus:recordType": d.record_type,
    }
    if licence:
        entry["dct:license"] = licence
    return entry
