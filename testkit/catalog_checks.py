"""Checks of a DCAT-AP catalogue, written from the DCAT-AP 3.0.0 specification, and
its validation against the official SHACL shapes (tests/fixtures/dcat-ap/).

The specification's mandatory classes and properties checked here: a Catalogue has a
title, a description, a publisher and (here, always) datasets; a Dataset a title and
a description; a Distribution an access URL; a Data Service an endpoint URL and a
title; an Agent a name. Beyond it, this project's rule: every distribution of an
open dataset states its licence.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from rdflib import Graph, Namespace
from rdflib.namespace import DCTERMS, FOAF, RDF

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "dcat-ap"
SHAPES = ("dcat-ap-3.0.0-SHACL.ttl", "dcat-ap-3.0.0-range.ttl")
DCAT = Namespace("http://www.w3.org/ns/dcat#")
CITEPLUS = Namespace("https://citeplus.eu/ns/")
PUBLIC = "http://publications.europa.eu/resource/authority/access-right/PUBLIC"


@lru_cache(maxsize=2)
def shapes(name: str) -> Graph:
    graph = Graph()
    graph.parse(FIXTURES / name, format="turtle")
    return graph


def shacl_report(data: Graph) -> list[str]:
    """The SHACL report of each shapes file the graph does not conform to (empty: valid)."""
    from pyshacl import validate

    failures = []
    for name in SHAPES:
        conforms, _, text = validate(data, shacl_graph=shapes(name), inference="none")
        if not conforms:
            failures.append(f"{name}:\n{text}")
    return failures


def graph_from_jsonld(body: bytes | str) -> Graph:
    graph = Graph()
    graph.parse(data=body if isinstance(body, str) else body.decode("utf-8"), format="json-ld")
    return graph


def graph_from_turtle(body: bytes | str) -> Graph:
    graph = Graph()
    graph.parse(data=body if isinstance(body, str) else body.decode("utf-8"), format="turtle")
    return graph


def _missing(graph: Graph, cls: Any, properties: tuple[Any, ...]) -> list[str]:
    problems = []
    for node in graph.subjects(RDF.type, cls):
        for prop in properties:
            if graph.value(node, prop) is None:
                problems.append(f"{node} ({cls.n3(graph.namespace_manager)}) has no {prop}")
    return problems


def specification_problems(graph: Graph) -> list[str]:
    """What the graph lacks of DCAT-AP's mandatory properties, and of licences."""
    catalogs = list(graph.subjects(RDF.type, DCAT.Catalog))
    problems = [] if len(catalogs) == 1 else [f"{len(catalogs)} dcat:Catalog, expected 1"]
    catalog_props = (DCTERMS.title, DCTERMS.description, DCTERMS.publisher, DCAT.dataset)
    problems += _missing(graph, DCAT.Catalog, catalog_props)
    problems += _missing(graph, DCAT.Dataset, (DCTERMS.title, DCTERMS.description))
    problems += _missing(graph, DCAT.Distribution, (DCAT.accessURL,))
    problems += _missing(graph, DCAT.DataService, (DCAT.endpointURL, DCTERMS.title))
    problems += _missing(graph, FOAF.Agent, (FOAF.name,))
    for dataset in graph.subjects(RDF.type, DCAT.Dataset):
        if str(graph.value(dataset, DCTERMS.accessRights)) != PUBLIC:
            continue
        for distribution in graph.objects(dataset, DCAT.distribution):
            if graph.value(distribution, DCTERMS.license) is None:
                problems.append(f"open dataset {dataset}: {distribution} has no licence")
    return problems


def dataset_ids(document: dict[str, Any]) -> set[str]:
    return {d["dct:identifier"] for d in document["dcat:dataset"]}


def partner_only_keys(document: dict[str, Any]) -> list[str]:
    """Where the document says what only partners may know (topics, schema subjects)."""
    text = json.dumps(document)
    return [
        key for key in ("citeplus:topic", "citeplus:schemaSubject", "#federation") if key in text
    ]
