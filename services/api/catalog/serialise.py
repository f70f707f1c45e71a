"""The catalogue's two forms: its JSON-LD text, and Turtle from the same graph.

Turtle is made by parsing the JSON-LD with rdflib (the context is inline: nothing
fetched) and serialising the graph, so both forms always state the same triples.
"""

from __future__ import annotations

import json
from typing import Any

from rdflib import Graph

from services.api.catalog.vocab import CONTEXT


def jsonld_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def graph_of(document: dict[str, Any]) -> Graph:
    graph = Graph()
    graph.parse(data=json.dumps(document), format="json-ld")
    return graph


def turtle_bytes(document: dict[str, Any]) -> bytes:
    graph = graph_of(document)
    for prefix, namespace in CONTEXT.items():
        graph.bind(prefix, namespace)
    return graph.serialize(format="turtle").encode("utf-8")
