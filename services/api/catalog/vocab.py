"""The controlled vocabularies the catalogue points to, and the JSON-LD context.

EU vocabularies of the Publications Office (data themes, frequencies, access rights,
file types) are what DCAT-AP asks for and what data.europa.eu and data.gouv.fr map;
licences are the URIs of services/policy/sharing.py's LICENCES; territories are
INSEE's code URIs. Every URI here is stable: portals store them.
"""

from __future__ import annotations

from services.policy.sharing import LICENCES

EU = "http://publications.europa.eu/resource/authority/"
THEME = EU + "data-theme/"
FREQUENCY = EU + "frequency/"
ACCESS_RIGHT = EU + "access-right/"
FILE_TYPE = EU + "file-type/"
IANA = "https://www.iana.org/assignments/media-types/"
INSEE_COMMUNE = "http://id.insee.fr/geo/commune/"
INSEE_EPCI = "http://id.insee.fr/geo/intercommunalite/"
# The State's directory of legal units, one page per SIREN: the publisher's stable URI.
SIREN_PAGE = "https://annuaire-entreprises.data.gouv.fr/entreprise/"
LOCAL_AUTHORITY = "http://purl.org/adms/publishertype/LocalAuthority"
NGSI_LD_SPEC = (
    "https://www.etsi.org/deliver/etsi_gs/CIM/001_099/009/01.08.01_60/gs_CIM009v010801p.pdf"
)
AVRO_SPEC = "https://avro.apache.org/docs/1.11.1/specification/"
CITEPLUS = "https://citeplus.eu/ns/"

# A city source's domain (services/runtime/cities.py DOMAINS) -> EU data themes;
# every dataset also carries REGI (regions and cities): they are a city's data.
THEMES: dict[str, tuple[str, ...]] = {
    "energy": ("ENER",),
    "mobility": ("TRAN",),
    "parking": ("TRAN",),
    "environment": ("ENVI",),
    "water": ("ENVI",),
    "waste": ("ENVI",),
    "weather": ("ENVI",),
    "lighting": ("ENER",),
}
# Labels of the concepts the catalogue points to (SKOS concepts carry a prefLabel in
# DCAT-AP; harvesters show it without fetching the vocabulary).
THEME_LABELS: dict[str, tuple[str, str]] = {  # (fr, en), as the EU vocabulary says them
    "ENER": ("Énergie", "Energy"),
    "TRAN": ("Transports", "Transport"),
    "ENVI": ("Environnement", "Environment"),
    "REGI": ("Régions et villes", "Regions and cities"),
}
LOCAL_AUTHORITY_LABELS = ("Autorité locale", "Local Authority")
DOMAIN_LABELS: dict[str, tuple[str, str]] = {  # (fr, en)
    "energy": ("énergie", "energy"),
    "mobility": ("mobilité", "mobility"),
    "parking": ("stationnement", "parking"),
    "environment": ("environnement", "environment"),
    "water": ("eau", "water"),
    "waste": ("déchets", "waste"),
    "weather": ("météo", "weather"),
    "lighting": ("éclairage public", "street lighting"),
}
FREQUENCY_LABELS: dict[str, tuple[str, str]] = {
    "CONT": ("en continu", "continuously"),
    "DAILY": ("une fois par jour", "daily"),
    "HOURLY": ("toutes les heures", "hourly"),
}

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "citeplus": CITEPLUS,
}


def licence_uri(code: str) -> str | None:
    """The licence document of a LICENCES code (None: no licence, a shared dataset)."""
    return LICENCES.get(code)


def territory_uri(insee: str) -> str:
    """INSEE's URI of a commune (5 characters) or an EPCI (its 9-digit SIREN)."""
    return (INSEE_EPCI if len(insee) == 9 else INSEE_COMMUNE) + insee


def resource(uri: str) -> dict[str, str]:
    """A link DCAT-AP's shapes want typed rdfs:Resource (they validate without inference)."""
    return {"@id": uri, "@type": "rdfs:Resource"}
