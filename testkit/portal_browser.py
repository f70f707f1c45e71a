"""The developer portal in a headless Chromium, for its tests: the DOM the page drew
(``--dump-dom``) and what the page wrote on the browser's console.

The page reports on itself in ``<body>`` attributes (``data-state``, ``data-datasets``,
``data-errors``; the chart's ``data-points``) so a test reads the outcome from the
DOM; Chromium's own log (``--enable-logging=stderr``) adds the console messages the
page did not catch (a script that failed to load, a policy violation).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=20000",  # let the page fetch the catalogue, values, and draw
]
CONSOLE = re.compile(r"CONSOLE\(\d+\)\]?\s*\"?(.*)|:CONSOLE:.*|Refused to .*")


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]

    def attribute(self, name: str, tag: str = "body") -> str | None:
        """An attribute of the first ``<tag ...>`` of the DOM (None when absent)."""
        found = re.search(rf"<{tag}\b[^>]*\b{name}=\"([^\"]*)\"", self.dom)
        return found.group(1) if found else None

    def example(self, kind: str) -> str:
        """The text of an example block (``curl``, ``python``...) as a reader copies it."""
        found = re.search(
            rf'<pre[^>]*data-example="{kind}"[^>]*>\s*<code>(.*?)</code>', self.dom, re.DOTALL
        )
        assert found, f"no {kind} example in the page"
        return html.unescape(found.group(1))

    def loaded(self) -> list[str]:
        """Every address the page loads by itself (scripts, styles, images, frames)."""
        tags = r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*"
        found = []
        for tag in re.findall(tags, self.dom):
            found += re.findall(r"\b(?:src|href|data)=\"([^\"]*)\"", tag)
        return found


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is missing: `make setup` installs it (deploy/dev/system-packages.sh)"
    return found


def render(url: str, profile: Path, timeout_s: float = 120) -> Rendered:
    """The page at ``url`` once its scripts settled (Chromium's virtual time)."""
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        timeout=timeout_s,
        check=True,
    )
    log = done.stderr.decode(errors="replace").splitlines()
    console = [line for line in log if "CONSOLE" in line or "Refused to" in line]
    return Rendered(done.stdout.decode(errors="replace"), console)
