"""An isolated Python environment holding a real NGSI-LD client (``ngsildclient``),
built once per version of its pinned requirements and kept in the user's cache.

The client pins ``httpx<0.24`` while the project locks a newer httpx, so it cannot
live in the project's environment: the whole-node test runs it as a separate
program (tests/fixtures/api/ngsild_client_probe.py) with this environment's Python.
Installs are pinned and hash-checked (``--require-hashes``): what the test runs is
exactly what was reviewed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from services.runtime.paths import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "api"
REQUIREMENTS = FIXTURES / "ngsildclient-requirements.txt"
PROBE = FIXTURES / "ngsild_client_probe.py"


def cache_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citeplus"


def uv_command() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv is needed to build the NGSI-LD client's environment (make setup)")
    return found


def ngsild_python() -> Path:
    """The Python of the client's environment, built on first use (about ten seconds,
    from PyPI or uv's cache); a half-built one is never reused."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    home = cache_home() / f"ngsildclient-{digest}"
    python = home / "bin" / "python"
    if (home / "ready").exists():
        return python
    building = home.with_name(f"{home.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    uv = uv_command()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 300}
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(building)], **run)
    subprocess.run(
        [
            *(uv, "pip", "install", "--quiet", "--require-hashes"),
            *("--python", str(building / "bin" / "python"), "-r", str(REQUIREMENTS)),
        ],
        **run,
    )
    (building / "ready").write_text("ok\n")
    try:
        building.rename(home)
    except OSError:  # another process finished first: use its environment
        shutil.rmtree(building, ignore_errors=True)
    return python


def run_probe(*args: str, timeout: float = 120) -> dict:
    """Run the probe with the client's Python; its JSON answer, or a clear failure."""
    done = subprocess.run(
        [str(ngsild_python()), str(PROBE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": os.environ.get("PATH", ""), "NO_PROXY": "*"},
    )
    if done.returncode != 0:
        raise AssertionError(f"ngsildclient failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)
