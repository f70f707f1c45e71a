"""Development secrets of a local node, generated once, kept outside the repository.

A city's real tokens and keys come from its own secret store through the
environment or files. A node started on a laptop has none, so `citeplus up`
writes random ones to ``<state>/secrets/dev.env`` (mode 0600) and every
``citeplus`` command reads that file for variables the environment lacks.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from services.runtime.cities import CityConfig

ENV_PREFIX = "env:"


def dev_env_file(state_dir: Path) -> Path:
    return state_dir / "secrets" / "dev.env"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def load_env_file(path: Path) -> int:
    """Export the file's variables that the environment does not set; returns how many."""
    loaded = 0
    for name, value in read_env_file(path).items():
        if name not in os.environ:
            os.environ[name] = value
            loaded += 1
    return loaded


def ensure_dev_tokens(state_dir: Path, cities: dict[str, CityConfig]) -> Path:
    """Give every ``env:`` token reference of the city files a random value."""
    path = dev_env_file(state_dir)
    present = read_env_file(path)
    wanted = sorted(
        {
            source.token[len(ENV_PREFIX) :]
            for city in cities.values()
            for source in city.sources
            if source.token.startswith(ENV_PREFIX)
        }
    )
    missing = [name for name in wanted if name not in present and name not in os.environ]
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            if not present:
                handle.write(
                    "# Development secrets of this node (never commit). Regenerate: delete.\n"
                )
            for name in missing:
                handle.write(f"{name}={secrets.token_urlsafe(24)}\n")
        path.chmod(0o600)
    load_env_file(path)
    return path
