"""A thin client of the Confluent-compatible schema registry API.

Apicurio Registry serves it under ``/apis/ccompat/v7``. We register schemas with
plain HTTP at provisioning (DESIGN.md: newer Confluent clients send register
fields Apicurio does not know), and look schemas up by id when decoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from services.runtime.errors import InfrastructureError, SchemaError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry knows it."""

    subject: str
    schema_id: int
    version: int
    text: str


class SchemaRegistry:
    """Register and fetch Avro schemas; ids are cached since they never change."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"Content-Type": _CONTENT_TYPE}
        )
        self._by_id: dict[int, str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=payload)
        except httpx.HTTPError as exc:
            raise InfrastructureError(
                f"schema registry at {self.base_url} is unreachable ({exc}); "
                "start it with `citeplus infra up` or set CITEPLUS_REGISTRY_URL"
            ) from exc
        if response.status_code >= 400:
            raise SchemaError(
                f"schema registry {method} {path} answered {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response.json() if response.content else None

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) ``schema_text`` under ``subject``; returns its global id."""
        answer = self._call(
            "POST", f"/subjects/{subject}/versions", {"schema": schema_text, "schemaType": "AVRO"}
        )
        schema_id = int(answer["id"])
        self._by_id[schema_id] = schema_text
        return schema_id

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version registered under ``subject``."""
        answer = self._call("GET", f"/subjects/{subject}/versions/latest")
        return RegisteredSchema(
            subject, int(answer["id"]), int(answer["version"]), answer["schema"]
        )

    def schema_text(self, schema_id: int) -> str:
        """Schema text of a global id, as a decoder needs it for the writer schema."""
        if schema_id not in self._by_id:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
            self._by_id[schema_id] = answer["schema"]
        return self._by_id[schema_id]

    def schema_json(self, schema_id: int) -> dict[str, Any]:
        return json.loads(self.schema_text(schema_id))

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))

    def is_compatible(self, subject: str, schema_text: str) -> bool:
        """Ask the registry whether ``schema_text`` may follow the latest version."""
        answer = self._call(
            "POST",
            f"/compatibility/subjects/{subject}/versions/latest",
            {"schema": schema_text, "schemaType": "AVRO"},
        )
        return bool(answer.get("is_compatible"))
