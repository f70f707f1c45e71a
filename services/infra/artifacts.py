"""Fetching the servers' jars from Maven Central by a checked-in, checksummed list.

A newcomer should not need Maven to start a broker, and a jar that changed on
the way (a tampered mirror, a proxy that rewrites, a truncated transfer) must
never reach the classpath. So each server's exact artifacts are listed with
their SHA-256 in ``deploy/<server>/artifacts.lock`` (written by
``citeplus infra lock``), downloaded over HTTPS by this module, checked, and
only then moved into the cache: a mismatch leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.runtime.errors import InfrastructureError

log = logging.getLogger(__name__)

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
REPOSITORY_ENV = "CITEPLUS_MAVEN_REPOSITORY"
_CHUNK = 1 << 20
_TIMEOUT = httpx.Timeout(30.0, read=120.0)


@dataclass(frozen=True)
class Artifact:
    """One file of a Maven repository: where it lives there and what it must hash to."""

    path: str  # repository layout, e.g. org/apache/kafka/kafka_2.13/4.1.2/kafka_2.13-4.1.2.jar
    sha256: str
    size: int

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def read_lock(lock: Path) -> list[Artifact]:
    """The artifacts listed in ``lock`` (``path  sha256  size`` per line, ``#`` comments)."""
    try:
        text = lock.read_text(encoding="utf-8")
    except OSError as exc:
        raise InfrastructureError(
            f"cannot read {lock} ({exc}); restore it from git or regenerate it with "
            "`citeplus infra lock`."
        ) from exc
    artifacts = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3 or len(fields[1]) != 64 or not fields[2].isdigit():
            raise InfrastructureError(
                f"{lock}:{number}: expected `<path> <sha256> <size>`, got {line!r}; "
                "regenerate the file with `citeplus infra lock`."
            )
        artifacts.append(Artifact(fields[0], fields[1].lower(), int(fields[2])))
    if not artifacts:
        raise InfrastructureError(
            f"{lock} lists no artifact; regenerate it with `citeplus infra lock`."
        )
    return artifacts


def format_lock(artifacts: list[Artifact], header: str) -> str:
    """The text of a lock file, sorted so a regeneration diffs line by line."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{a.path}  {a.sha256}  {a.size}" for a in sorted(artifacts, key=lambda a: a.path)]
    return "\n".join(lines) + "\n"


def lock_digest(lock: Path) -> str:
    """A fingerprint of the list, so a cache filled from another list is refetched."""
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def repository_url() -> str:
    """Maven Central, or the operator's mirror from ``$CITEPLUS_MAVEN_REPOSITORY``.

    The checksums do not depend on where the bytes come from, so a mirror is
    as safe as Central: whatever it serves must hash to the list's values.
    """
    return os.environ.get(REPOSITORY_ENV, MAVEN_CENTRAL).rstrip("/")


def download(artifact: Artifact, dest: Path, client: httpx.Client | None = None) -> Path:
    """Fetch ``artifact`` to ``dest``, verified; on any mismatch nothing is left at ``dest``.

    The bytes go to a side file that is hashed while it is written and renamed
    into place only when its size and SHA-256 match the list.
    """
    url = f"{repository_url()}/{artifact.path}"
    partial = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    own = client is None
    http = client or httpx.Client(timeout=_TIMEOUT, follow_redirects=True)
    try:
        with http.stream("GET", url) as answer, partial.open("wb") as out:
            if answer.status_code != 200:
                raise InfrastructureError(
                    f"{url} answered HTTP {answer.status_code}; check that Maven Central "
                    f"(or {REPOSITORY_ENV}) is reachable and retry."
                )
            for chunk in answer.iter_bytes(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise InfrastructureError(
            f"cannot download {url} ({exc}); check the network or set {REPOSITORY_ENV} "
            "to a reachable Maven mirror, then retry."
        ) from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        if own:
            http.close()
    got = digest.hexdigest()
    if got != artifact.sha256 or size != artifact.size:
        partial.unlink(missing_ok=True)
        raise InfrastructureError(
            f"refused {artifact.file_name} from {url}: its SHA-256 is {got} ({size} bytes) "
            f"but the checked-in list expects {artifact.sha256} ({artifact.size} bytes). "
            "The download was not kept. A proxy or mirror may have altered it; retry, or "
            "fetch from another mirror. If the versions changed on purpose, regenerate the "
            "list with `citeplus infra lock`."
        )
    partial.replace(dest)
    return dest


def download_all(artifacts: list[Artifact], into: Path, what: str) -> None:
    """Fetch every artifact into the flat directory ``into``, reporting progress."""
    total = sum(a.size for a in artifacts)
    log.info(
        "downloading %s: %d files, %.0f MB (first run only)...", what, len(artifacts), total / 1e6
    )
    started = time.monotonic()
    done = 0
    with httpx.Client(timeout=_TIMEOUT, follow_redirects=True) as client:
        for number, artifact in enumerate(artifacts, start=1):
            download(artifact, into / artifact.file_name, client)
            done += artifact.size
            if number == len(artifacts) or number % 10 == 0:
                log.info(
                    "  %s: %d/%d files, %.0f/%.0f MB",
                    what,
                    number,
                    len(artifacts),
                    done / 1e6,
                    total / 1e6,
                )
    log.info("%s downloaded and verified in %.1f s", what, time.monotonic() - started)


def hash_file(path: Path, repository_path: str) -> Artifact:
    """The list entry for ``path``, a file found at ``repository_path`` in a Maven repository."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return Artifact(path=repository_path, sha256=digest.hexdigest(), size=path.stat().st_size)


STAMP = ".artifacts.lock.sha256"


def cache_is_current(directory: Path, lock: Path) -> bool:
    """Whether ``directory`` was filled from exactly this list (a changed list refetches)."""
    try:
        return (directory / STAMP).read_text(encoding="ascii").strip() == lock_digest(lock)
    except OSError:
        return False


def mark_current(directory: Path, lock: Path) -> None:
    """Record which list filled ``directory``; written last, once everything is in place."""
    (directory / STAMP).write_text(lock_digest(lock) + "\n", encoding="ascii")


def adopt_if_identical(directory: Path, artifacts: list[Artifact], lock: Path) -> bool:
    """Mark ``directory`` current if it already holds exactly the listed files, byte for byte.

    A cache filled before the lists existed (or by another checkout) is then
    kept instead of being downloaded again and swapped under a running server.
    """
    if not directory.is_dir():
        return False
    present = {p.name for p in directory.iterdir() if p.is_file() and p.name != STAMP}
    if present != {a.file_name for a in artifacts}:
        return False
    for artifact in artifacts:
        if hash_file(directory / artifact.file_name, artifact.path) != artifact:
            return False
    mark_current(directory, lock)
    return True


def require_listed(artifacts: list[Artifact], file_name: str, lock: Path) -> Artifact:
    """The entry named ``file_name``; a list for another version is a clear error."""
    for artifact in artifacts:
        if artifact.file_name == file_name:
            return artifact
    raise InfrastructureError(
        f"{lock} does not list {file_name}: the version in the pom beside it changed but "
        "the list did not. Regenerate it with `citeplus infra lock` (needs Maven) and commit it."
    )
