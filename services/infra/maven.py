"""Reading pinned versions from our poms, and resolving them with Maven to write the lists.

Each server's version is written once, in its pom under ``deploy/``; Python
reads it from there so a version bump is a one-line change. Maven is needed
only to regenerate ``artifacts.lock`` after such a bump (``citeplus infra
lock``); fetching reads the lock and needs no Maven.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from services.infra.artifacts import Artifact, hash_file
from services.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)

_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def pom_property(pom: Path, name: str) -> str:
    """The value of ``<properties><name>`` in ``pom``."""
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InfrastructureError(f"cannot read {pom}: {exc}") from exc
    node = root.find(f"m:properties/m:{name}", _NS)
    if node is None:
        node = root.find(f"properties/{name}")  # a pom written without the namespace
    if node is None or not (node.text or "").strip():
        raise InfrastructureError(f"{pom} has no <properties><{name}>; add it (e.g. 1.2.3).")
    return node.text.strip()


def run_maven(args: list[str], cwd: Path, what: str) -> None:
    """Run ``mvn -q -B <args>`` in ``cwd``; fail with Maven's own output on error."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfrastructureError(
            f"Maven (mvn) is needed to fetch {what} from Maven Central but is not installed; "
            "install it (apt-get install maven) and retry."
        )
    log.info("fetching %s with Maven (first run only; this can take a minute)...", what)
    done = subprocess.run(
        [mvn, "-q", "-B", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise InfrastructureError(
            f"Maven could not fetch {what} (exit {done.returncode}); check that Maven Central "
            f"is reachable and retry.\n{output}"
        )


def resolve_artifacts(pom_dir: Path, what: str) -> list[Artifact]:
    """Every file Maven resolves for the pom in ``pom_dir``, hashed (for ``infra lock``).

    Maven is used only here, by a maintainer changing versions: it knows the
    transitive closure; the list it yields is what every other machine
    downloads without it.
    """
    with tempfile.TemporaryDirectory(prefix="citeplus-lock-") as scratch:
        out = Path(scratch)
        run_maven(
            [
                "dependency:copy-dependencies",
                "-Dmdep.useRepositoryLayout=true",
                f"-DoutputDirectory={out}",
            ],
            cwd=pom_dir,
            what=what,
        )
        found = [
            hash_file(path, path.relative_to(out).as_posix())
            for path in sorted(out.rglob("*"))
            if path.is_file() and not path.name.startswith("maven-metadata")
        ]
    if not found:
        raise InfrastructureError(f"Maven resolved no artifact for {pom_dir / 'pom.xml'}.")
    return found
