"""Downloading by a checksummed list: what a tampered mirror gets (nothing kept), and the lists.

The mirror is a real HTTP server on loopback serving whatever bytes the test
gives it, standing for a compromised Maven mirror or a rewriting proxy.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.infra import kafka_broker, registry_server
from services.infra.artifacts import (
    REPOSITORY_ENV,
    Artifact,
    adopt_if_identical,
    cache_is_current,
    download,
    download_all,
    format_lock,
    mark_current,
    read_lock,
    require_listed,
)
from services.runtime.errors import InfrastructureError

GOOD = b"PK\x03\x04 the real jar bytes" * 100
PATH = "org/example/demo/1.0/demo-1.0.jar"


def _entry(content: bytes = GOOD) -> Artifact:
    return Artifact(PATH, hashlib.sha256(content).hexdigest(), len(content))


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    """A loopback Maven mirror: ``served[path] = bytes`` decides what it answers."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(REPOSITORY_ENV, f"http://127.0.0.1:{server.server_address[1]}/")
    yield served
    server.shutdown()
    server.server_close()


def test_a_tampered_download_is_refused_and_not_cached(
    mirror: dict[str, bytes], tmp_path: Path
) -> None:
    mirror[PATH] = GOOD.replace(b"real", b"evil")  # same size, other bytes
    dest = tmp_path / "libs" / "demo-1.0.jar"
    with pytest.raises(InfrastructureError, match=r"refused demo-1\.0\.jar.*SHA-256.*not kept"):
        download(_entry(), dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file either


def test_a_truncated_download_is_refused(mirror: dict[str, bytes], tmp_path: Path) -> None:
    mirror[PATH] = GOOD[:-10]
    with pytest.raises(InfrastructureError, match="refused"):
        download(_entry(), tmp_path / "demo-1.0.jar")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_artifact_names_the_url(mirror: dict[str, bytes], tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="HTTP 404"):
        download(_entry(), tmp_path / "demo-1.0.jar")
    assert list(tmp_path.iterdir()) == []


def test_a_faithful_download_is_kept(mirror: dict[str, bytes], tmp_path: Path) -> None:
    mirror[PATH] = GOOD
    download_all([_entry()], tmp_path, "demo")
    assert (tmp_path / "demo-1.0.jar").read_bytes() == GOOD


def test_the_cache_stamp_follows_the_list(tmp_path: Path) -> None:
    lock = tmp_path / "artifacts.lock"
    lock.write_text(format_lock([_entry()], "demo"))
    cache = tmp_path / "cache"
    cache.mkdir()
    assert not cache_is_current(cache, lock)
    mark_current(cache, lock)
    assert cache_is_current(cache, lock)
    lock.write_text(format_lock([_entry(b"another version")], "demo"))
    assert not cache_is_current(cache, lock)


def test_lock_round_trip_and_bad_lines(tmp_path: Path) -> None:
    lock = tmp_path / "artifacts.lock"
    lock.write_text(format_lock([_entry()], "header line\nsecond"))
    assert read_lock(lock) == [_entry()]
    lock.write_text(f"{PATH}  not-a-sha  12\n")
    with pytest.raises(InfrastructureError, match=r"artifacts.lock:1: expected"):
        read_lock(lock)
    lock.write_text("# only comments\n")
    with pytest.raises(InfrastructureError, match="lists no artifact"):
        read_lock(lock)


@pytest.mark.parametrize(
    ("lock", "file_name"),
    [
        (kafka_broker.LOCK, f"kafka_2.13-{kafka_broker.kafka_version()}.jar"),
        (
            registry_server.LOCK,
            f"{registry_server.ARTIFACT}-{registry_server.registry_version()}-all.tar.gz",
        ),
    ],
)
def test_checked_in_lists_match_the_pinned_versions(lock: Path, file_name: str) -> None:
    """A version bump in a pom without `citeplus infra lock` fails here, not on a newcomer's box."""
    artifacts = read_lock(lock)
    require_listed(artifacts, file_name, lock)
    assert len({a.file_name for a in artifacts}) == len(artifacts), "two files share a name"


def test_a_stale_list_says_how_to_regenerate(tmp_path: Path) -> None:
    lock = tmp_path / "artifacts.lock"
    lock.write_text(format_lock([_entry()], "demo"))
    with pytest.raises(InfrastructureError, match="citeplus infra lock"):
        require_listed(read_lock(lock), "kafka_2.13-9.9.9.jar", lock)


def test_uv_is_pinned_to_one_version_everywhere() -> None:
    """The Makefile, the stdlib installer (with its checksums) and the image agree on uv."""
    repo = Path(__file__).resolve().parents[2]
    makefile = (repo / "Makefile").read_text()
    installer = (repo / "deploy" / "dev" / "install_uv.py").read_text()
    dockerfile = (repo / "Dockerfile").read_text()
    version = makefile.split("UV_VERSION := ", 1)[1].split()[0]
    assert f'VERSION = "{version}"' in installer
    assert installer.count(f"uv-{version}-py3-none-") == 4
    assert f"ghcr.io/astral-sh/uv:{version}" in dockerfile


def test_a_cache_filled_before_the_lists_is_adopted_only_if_identical(tmp_path: Path) -> None:
    lock = tmp_path / "artifacts.lock"
    lock.write_text(format_lock([_entry()], "demo"))
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "demo-1.0.jar").write_bytes(GOOD.replace(b"real", b"evil"))
    assert not adopt_if_identical(libs, [_entry()], lock)
    (libs / "demo-1.0.jar").write_bytes(GOOD)
    (libs / "stray-2.0.jar").write_bytes(b"not on the list")
    assert not adopt_if_identical(libs, [_entry()], lock)
    (libs / "stray-2.0.jar").unlink()
    assert adopt_if_identical(libs, [_entry()], lock)
    assert cache_is_current(libs, lock)
