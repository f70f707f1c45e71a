"""Files only the node's account may read: written atomically at mode 0600, refused when wider.

Secret-bearing files of the state directory (the warehouse's SQL users, the common
API's keys) share these two rules, so they live in the runtime where every layer
may reach them: a reader never sees a half-written file (write then rename), no
other account can read it at any instant (created 0600, never chmod-ed later), and
a file found wider is refused rather than fixed, since someone may already have
read it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from services.runtime.errors import ConfigError


def refuse_wide_mode(path: Path) -> None:
    """Refuse a file others may read or write (group or other bits set)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"mode {mode:03o} lets other accounts read it; it must be 600. Run "
            f"`chmod 600 {path}` (and rotate the secrets it held if others could read them)",
            source=str(path),
        )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` so that no other account can read it, at any instant."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(partial, path)
