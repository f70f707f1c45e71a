"""Where the infrastructure keeps downloads (cache) and runtime files (state).

Downloads are large and shared by every checkout, so they live in a per-user
cache; data, logs and pid files belong to one checkout (or one test run), so
they live in a state directory that tests can point elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.config import load_local_infra

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


def cache_dir() -> Path:
    """Cache for fetched jars and archives: ``$CITEPLUS_CACHE`` or ``~/.cache/citeplus``."""
    value = load_local_infra().cache_dir
    return Path(value).expanduser() if value else Path.home() / ".cache" / "citeplus"


def state_dir() -> Path:
    """Data, logs and pid files: ``$CITEPLUS_STATE`` or ``<repo>/var``.

    Read at every call (not at import) so a test can switch it with monkeypatch.
    """
    value = load_local_infra().state_dir
    return Path(value).expanduser() if value else REPO_ROOT / "var"
