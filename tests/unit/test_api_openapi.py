"""The OpenAPI 3.1 document of the common API: valid, loadable by schemathesis, covering
every route the application serves and every refusal of the shell."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import schemathesis
from openapi_spec_validator import validate

from services.api.openapi import OPERATIONS, SHELL_REFUSALS, openapi_document
from testkit.api_shell import Clock, drive, shell_app, shell_node


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    methods = {"get", "post", "patch", "delete", "put"}
    declared = sum(len(methods & set(item)) for item in openapi_document()["paths"].values())
    assert len(operations) == declared


def test_every_served_route_is_documented(tmp_path: Path) -> None:
    app, _ = shell_app(shell_node(tmp_path), Clock())
    served = {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and not route.resource.canonical.startswith("/probe")
    } - {"/ngsi-ld/v1/{tail}"}  # any other path: a ProblemDetails 404, not an operation
    documented = set(openapi_document()["paths"])
    assert served <= documented
    assert {op.path for op in OPERATIONS} <= documented  # the NGSI-LD routes, described


def test_every_operation_documents_the_shell_refusals_and_both_keys() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        responses = item["get"]["responses"]
        assert set(SHELL_REFUSALS) <= set(responses), path
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerKey"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {
        **schemes["apiKeyHeader"],
        "in": "header",
        "name": "X-API-Key",
    }
    assert {} in document["security"]  # anonymous access is allowed


def test_the_shell_answers_match_the_document(tmp_path: Path) -> None:
    """A 401, a 429 and a 404 of the shell validate against the schemas the document gives."""
    document = openapi_document()
    app, _ = shell_app(shell_node(tmp_path, anonymous_rate=0.1, anonymous_burst=1), Clock())

    async def scenario(client):
        missing = await client.get("/ngsi-ld/v1/entities/urn:x")
        limited = await client.get("/openapi.json")
        bad_key = await client.get("/openapi.json", headers={"X-API-Key": "k0000000000000000.x"})
        return [await r.json() for r in (missing, limited, bad_key)]

    problem = {
        **document["components"]["schemas"]["ProblemDetails"],
        "components": document["components"],
    }
    for body in drive(app, scenario):
        assert jsonschema_rs.validator_for(problem).is_valid(body), body


def test_the_document_served_is_the_document(tmp_path: Path) -> None:
    app, _ = shell_app(shell_node(tmp_path), Clock())

    async def scenario(client):
        response = await client.get("/openapi.json")
        return response.status, await response.json()

    status, served = drive(app, scenario)
    assert status == 200 and served == openapi_document()


def test_requests_built_from_the_document_fit_the_parser(tmp_path: Path) -> None:
    """Every query parameter's longest value, in 4-byte characters percent-encoded, still
    fits the HTTP parser's ceiling: the longest request is a 414, never a bare 400."""
    from services.api.app import parser_limits
    from services.api.openapi import PARAMETERS

    ceiling = parser_limits(shell_node(tmp_path))["max_line_size"]
    for op in OPERATIONS:
        longest = sum(
            len(PARAMETERS[name]["name"]) + 2 + 12 * PARAMETERS[name]["schema"].get("maxLength", 20)
            for name in op.parameters
        )
        assert len(op.path) + longest < ceiling, op.operation_id


def test_every_write_served_is_documented_with_its_method(tmp_path: Path) -> None:
    app, _ = shell_app(shell_node(tmp_path), Clock())
    writes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method in ("POST", "PATCH", "DELETE", "PUT")
    }
    paths = openapi_document()["paths"]
    assert writes and all(method in paths[path] for method, path in writes)
