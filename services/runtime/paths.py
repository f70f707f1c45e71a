"""Where the project's own files are, found from this file so that every
command works from any working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
AVRO_DIR: Path = REPO_ROOT / "avro"
DEPLOY_DIR: Path = REPO_ROOT / "deploy"
TOPICS_FILE: Path = DEPLOY_DIR / "topics.yaml"
NODE_FILE: Path = DEPLOY_DIR / "node.yaml"
CITIES_DIR: Path = DEPLOY_DIR / "cities"
