"""Writing a city file for a test: one valid source, and a header to vary."""

from __future__ import annotations

from pathlib import Path

VALID_SOURCE = """\
  - id: compteurs
    format: csv
    dataset: comptage-velo
    domain: mobility
    entity: Identifiant du compteur
    token: env:CITEPLUS_TOKEN_TEST
    csv: {separator: ";", decimal: ",", header: true}
    numeric: [Comptage horaire]
"""


def write_city(directory: Path, body: str, stem: str = "testville") -> Path:
    path = directory / f"{stem}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def city_yaml(
    sources: str = VALID_SOURCE, header: str = "code: testville\nname: Testville\n"
) -> str:
    return f"{header}sources:\n{sources}"
