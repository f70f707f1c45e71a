"""Finding a Java runtime recent enough for each server.

Kafka 4.1 runs on Java 17, but Apicurio Registry 3.3 is compiled for Java 21,
and machines often carry several JDKs (Debian's default plus another one), so
each server asks for the minimum it needs instead of taking whatever ``java``
is first on the PATH.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

from services.runtime.errors import InfrastructureError

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


def _candidates() -> list[str]:
    found: list[str] = []
    for var in ("CITEPLUS_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home:
            found.append(str(Path(home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    found.extend(str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java")))
    unique: list[str] = []
    for path in found:
        real = os.path.realpath(path)
        if os.access(real, os.X_OK) and real not in unique:
            unique.append(real)
    return unique


def find_java(minimum: int, purpose: str) -> str:
    """Path of a ``java`` of at least version ``minimum``.

    ``$CITEPLUS_JAVA_HOME`` wins when set (and must be recent enough), then
    ``$JAVA_HOME``, the PATH and the JDKs under /usr/lib/jvm.
    """
    forced = os.environ.get("CITEPLUS_JAVA_HOME")
    seen: list[str] = []
    for java in _candidates():
        major = java_major(java)
        if major is not None and major >= minimum:
            return java
        seen.append(f"{java} (Java {major})" if major else java)
        if forced and java == os.path.realpath(Path(forced) / "bin" / "java"):
            raise InfrastructureError(
                f"{purpose} needs Java {minimum} or newer, but CITEPLUS_JAVA_HOME={forced} "
                f"is Java {major}; point it at a newer JDK or unset it."
            )
    found = ", ".join(seen) or "none"
    raise InfrastructureError(
        f"{purpose} needs Java {minimum} or newer; Java runtimes found: {found}. "
        f"Install a JDK {minimum}+ (for example Temurin or openjdk-{minimum}-jre-headless) "
        "and set CITEPLUS_JAVA_HOME to its directory."
    )
