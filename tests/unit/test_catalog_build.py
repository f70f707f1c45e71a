"""The DCAT-AP catalogue builder (pure) and its two forms: valid against the official
DCAT-AP 3.0.0 shapes, complete in the specification's mandatory properties, licensed
wherever open, the same graph in JSON-LD and Turtle, and nothing a partner-only
reader would learn given to the public."""

from __future__ import annotations

import json

import pytest
from rdflib.compare import isomorphic

from services.api.catalog.build import build_catalog
from services.api.catalog.negotiate import LD_JSON, TURTLE, NotAcceptable, choose
from services.api.catalog.serialise import jsonld_bytes, turtle_bytes
from testkit.catalog_checks import (
    graph_from_jsonld,
    graph_from_turtle,
    partner_only_keys,
    shacl_report,
    specification_problems,
)
from testkit.catalog_data import sample_listing

BASE = "http://api.test:8010"


def catalogue(partner: bool) -> dict:
    return build_catalog(sample_listing(), ["lyon", "paris"], BASE, partner=partner)


@pytest.mark.parametrize("partner", [False, True])
def test_both_forms_conform_to_the_dcat_ap_shapes(partner: bool) -> None:
    document = catalogue(partner)
    for graph in (
        graph_from_jsonld(jsonld_bytes(document)),
        graph_from_turtle(turtle_bytes(document)),
    ):
        report = shacl_report(graph)
        assert not report, "\n".join(report)


@pytest.mark.parametrize("partner", [False, True])
def test_mandatory_properties_and_licences_are_there(partner: bool) -> None:
    graph = graph_from_jsonld(jsonld_bytes(catalogue(partner)))
    assert specification_problems(graph) == []


def test_the_checks_catch_a_dataset_without_title_and_an_open_one_without_licence() -> None:
    document = catalogue(partner=False)
    air = next(d for d in document["dcat:dataset"] if d["dct:identifier"] == "lyon/air")
    del air["dct:title"]
    del air["dcat:distribution"][0]["dct:license"]
    problems = specification_problems(graph_from_jsonld(json.dumps(document)))
    assert any("has no http://purl.org/dc/terms/title" in p for p in problems)
    assert any("has no licence" in p for p in problems)
    assert shacl_report(graph_from_jsonld(json.dumps(document)))  # the shapes catch it too


@pytest.mark.parametrize("partner", [False, True])
def test_turtle_and_json_ld_state_the_same_graph(partner: bool) -> None:
    document = catalogue(partner)
    from_json = graph_from_jsonld(jsonld_bytes(document))
    from_turtle = graph_from_turtle(turtle_bytes(document))
    assert len(from_json) > 100
    assert isomorphic(from_json, from_turtle)


def test_the_public_learns_no_topic_schema_or_federation_access() -> None:
    assert partner_only_keys(catalogue(partner=False)) == []
    partner = catalogue(partner=True)
    air = next(d for d in partner["dcat:dataset"] if d["dct:identifier"] == "lyon/air")
    federation = air["dcat:distribution"][-1]
    assert federation["citeplus:topic"] == "public.observations.v1"
    assert federation["citeplus:federationDataset"] == "lyon/air"
    assert federation["dcat:accessURL"]["@id"] == (
        "https://127.0.0.1:7443/citeplus.federation.v1.Federation/Subscribe"
    )


def test_a_withheld_personal_source_offers_no_way_to_its_entities() -> None:
    for partner in (False, True):
        document = catalogue(partner)
        linky = next(
            d for d in document["dcat:dataset"] if d["dct:identifier"] == "paris/linky-open"
        )
        assert linky["dcat:distribution"] == []


def test_a_dataset_says_who_publishes_it_where_when_and_how_often() -> None:
    document = catalogue(partner=False)
    air = next(d for d in document["dcat:dataset"] if d["dct:identifier"] == "lyon/air")
    assert air["dct:publisher"]["@id"].endswith("/entreprise/200046977")
    assert air["dct:publisher"]["foaf:name"] == "Lyon"
    assert (
        air["dcat:contactPoint"]["vcard:hasEmail"]["@id"] == "mailto:opendata@lyon.citeplus.example"
    )
    assert air["dct:spatial"]["@id"] == "http://id.insee.fr/geo/intercommunalite/200046977"
    assert air["dct:temporal"]["dcat:startDate"]["@value"] == "2025-01-12T23:00:00Z"
    assert air["dct:accrualPeriodicity"]["@id"].endswith("/frequency/CONT")
    themes = {t["@id"].rsplit("/", 1)[1] for t in air["dcat:theme"]}
    assert themes == {"ENVI", "REGI"}
    ngsi = air["dcat:distribution"][0]
    assert ngsi["dcat:accessURL"]["@id"] == (
        f"{BASE}/ngsi-ld/v1/entities?type=AirQualityObserved"
        "&idPattern=urn:ngsi-ld:AirQualityObserved:lyon:.*"
    )
    assert ngsi["dct:license"]["@id"] == "https://opendatacommons.org/licenses/odbl/1-0/"
    paris = next(d for d in document["dcat:dataset"] if d["dct:identifier"] == "paris/traffic")
    assert paris["dct:spatial"]["@id"] == "http://id.insee.fr/geo/commune/75056"
    assert "dcat:contactPoint" not in paris and "dct:temporal" not in paris
    assert paris["dcat:distribution"][0]["dcat:accessURL"]["@id"] == f"{BASE}/ngsi-ld/v1/types"
    assert document["dct:modified"]["@value"] == "2025-01-13T23:00:00Z"


def test_a_shared_dataset_is_restricted_and_has_no_licence_invented() -> None:
    document = catalogue(partner=True)
    meters = next(d for d in document["dcat:dataset"] if d["dct:identifier"] == "lyon/meters")
    assert meters["dct:accessRights"]["@id"].endswith("/access-right/RESTRICTED")
    assert all("dct:license" not in d for d in meters["dcat:distribution"])


def test_a_dataset_listed_by_two_nodes_appears_once() -> None:
    listing = sample_listing()
    document = build_catalog([*listing, listing[0]], ["lyon"], BASE)
    ids = [d["dct:identifier"] for d in document["dcat:dataset"]]
    assert len(ids) == len(set(ids)) == 5


@pytest.mark.parametrize(
    ("accept", "fmt", "media"),
    [
        (None, None, LD_JSON),
        ("", None, LD_JSON),
        ("*/*", None, LD_JSON),
        ("application/json", None, LD_JSON),
        ("text/turtle", None, TURTLE),
        ("text/turtle;q=0.9, application/ld+json;q=0.5", None, TURTLE),
        ("text/turtle, application/ld+json", None, LD_JSON),  # a tie: JSON-LD
        ("text/html, text/*;q=0.1", None, TURTLE),
        ("text/html", "ttl", TURTLE),  # ?format wins over Accept
        ("text/turtle", "jsonld", LD_JSON),
    ],
)
def test_content_negotiation(accept: str | None, fmt: str | None, media: str) -> None:
    assert choose(accept, fmt) == media


@pytest.mark.parametrize(
    ("accept", "fmt", "status"),
    [
        ("text/html", None, 406),
        ("application/xml;q=1, text/turtle;q=0", None, 406),
        (None, "rdf", 400),
    ],
)
def test_what_the_catalogue_does_not_come_as_is_refused(
    accept: str | None, fmt: str | None, status: int
) -> None:
    with pytest.raises(NotAcceptable) as refused:
        choose(accept, fmt)
    assert refused.value.status == status
    assert "ttl" in refused.value.detail
