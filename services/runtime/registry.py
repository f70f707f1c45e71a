"""A thin client of the Confluent-compatible schema registry API.

Apicurio Registry serves it under ``/apis/ccompat/v7``. We register schemas with
plain HTTP at provisioning (docs/design.md: newer Confluent clients send register
fields Apicurio does not know), and look schemas up by id when decoding.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from services.runtime.errors import InfrastructureError, SchemaError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
log = logging.getLogger(__name__)

# A consumer may read any older message with the newest schema: the contract of
# docs/design.md, checked against every version ever registered, not only the last one
# (a partner holding an old record must still decode it). Stricter levels are kept.
REQUIRED_COMPATIBILITY = "BACKWARD_TRANSITIVE"
ACCEPTED_COMPATIBILITY = frozenset({"BACKWARD_TRANSITIVE", "FULL_TRANSITIVE"})


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
        if response.status_code == 409:
            raise SchemaError(
                f"schema registry refused {method} {path} as incompatible with a version "
                f"already registered (409: {response.text[:300]}). Compare the subject's "
                f"versions (GET {self.base_url}{path.rsplit('/versions', 1)[0]}/versions) "
                "with avro/: a change must stay backward compatible, or become a new "
                "versioned topic"
            )
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

    def compatibility(self, subject: str) -> str | None:
        """The subject's compatibility level, or None when the subject is unknown."""
        try:
            response = self._http.get(f"/config/{subject}")
        except httpx.HTTPError as exc:
            raise InfrastructureError(
                f"schema registry at {self.base_url} is unreachable ({exc})"
            ) from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise SchemaError(
                f"schema registry GET /config/{subject} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        return str(response.json().get("compatibilityLevel") or "") or None

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call("PUT", f"/config/{subject}", {"compatibility": level})

    def enforce_compatibility(self, subject: str) -> str | None:
        """Make ``subject`` refuse incompatible schemas; returns the level it replaced.

        Called before every registration (so at every service start): a subject
        found at a weaker level (the registry's default is NONE) is raised to
        BACKWARD_TRANSITIVE and the change is logged, rather than refusing to start,
        because the node is the only writer and the fix loses nothing. A subject not
        yet registered gets the level before its first version.
        """
        level = self.compatibility(subject)
        if level in ACCEPTED_COMPATIBILITY:
            return None
        self.set_compatibility(subject, REQUIRED_COMPATIBILITY)
        if level is not None:
            log.warning(
                "schema subject was not protected: compatibility raised",
                extra={"subject": subject, "found": level, "now": REQUIRED_COMPATIBILITY},
            )
        return level

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
