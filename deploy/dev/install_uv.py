"""Install uv, the Python package manager the Makefile drives, with the standard library only.

A fresh Debian or Ubuntu has Python but often no pip, and where pip exists it
refuses to install into the system (PEP 668). So the uv wheel is fetched from
PyPI, checked against the SHA-256 pinned below (a tampered or truncated wheel
is refused), and its single binary is copied to ~/.local/bin/uv.

    python3 deploy/dev/install_uv.py [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import io
import platform
import stat
import sys
import urllib.request
import zipfile
from pathlib import Path

VERSION = "0.13.9"  # the Makefile and the Dockerfile say the same
INDEX = "https://pypi.org/simple/uv/"
WHEELS = {
    ("Linux", "x86_64"): (
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    ("Linux", "aarch64"): (
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
    ("Darwin", "x86_64"): (
        "uv-0.13.9-py3-none-macosx_10_12_x86_64.whl",
        "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5",
    ),
    ("Darwin", "arm64"): (
        "uv-0.13.9-py3-none-macosx_11_0_arm64.whl",
        "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63",
    ),
}


class _Links(html.parser.HTMLParser):
    """The href of each wheel on PyPI's simple index page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def _wheel_url(file_name: str) -> str:
    links = _Links()
    links.feed(_fetch(INDEX).decode("utf-8"))
    for href in links.hrefs:
        if href.split("#", 1)[0].endswith("/" + file_name):
            return href.split("#", 1)[0]
    raise SystemExit(f"install_uv: {file_name} is not on {INDEX}; check the network or the pin.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path.home() / ".local" / "bin")
    args = parser.parse_args()
    wanted = WHEELS.get((platform.system(), platform.machine()))
    if wanted is None:
        print(
            f"install_uv: no pinned uv wheel for {platform.system()} {platform.machine()}; "
            f"install uv {VERSION} yourself (https://docs.astral.sh/uv/) and retry.",
            file=sys.stderr,
        )
        return 1
    file_name, sha256 = wanted
    print(f"==> installing uv {VERSION} from PyPI into {args.dest}", file=sys.stderr)
    wheel = _fetch(_wheel_url(file_name))
    got = hashlib.sha256(wheel).hexdigest()
    if got != sha256:
        print(
            f"install_uv: refused {file_name}: SHA-256 {got}, expected {sha256}; "
            "nothing was installed. Retry, or check the proxy between you and PyPI.",
            file=sys.stderr,
        )
        return 1
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        binary = archive.read(f"uv-{VERSION}.data/scripts/uv")
    args.dest.mkdir(parents=True, exist_ok=True)
    target = args.dest / "uv"
    partial = target.with_name("uv.partial")
    partial.write_bytes(binary)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)
    print(f"uv {VERSION} installed: {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
