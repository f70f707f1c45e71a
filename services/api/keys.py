"""API keys of this node: who they were issued to, what they may see, hashed at rest.

Keys are issued per node (a peer trusts the node's certificate, never a key) and
kept in ``<state>/api/keys.json``, written atomically at mode 0600 and refused when
wider (services/runtime/private_files.py). A key reads ``<key_id>.<secret>``: the
id names the record and may be shown in logs and metrics; the secret is 32 random
bytes, shown once at creation and stored as its SHA-256 only.

Why SHA-256 and not a slow hash like the SQL users' scrypt: a slow hash protects
secrets people choose, whose few bits an attacker holding the file can enumerate.
A secret of 256 random bits cannot be enumerated whatever the hash costs, so a
single SHA-256 is as safe and keeps checking a key at every request to a
microsecond. The comparison is constant-time all the same (hmac.compare_digest).

The running service re-reads the file when its modification time, size or inode
changes, looking at most every ``reload_s`` seconds: a key created or revoked
with ``citeplus api keys`` is honoured within that bound, without a restart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from services.runtime.errors import ConfigError
from services.runtime.private_files import refuse_wide_mode, write_private

KEYS_FILE = "keys.json"
SECRET_BYTES = 32
APPLICATION = re.compile(r"^[\w][\w .@:/+-]{0,79}$")
KEY_ID = re.compile(r"^k[0-9a-f]{16}$")
RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*s)?\s*$")


def keys_path(state_dir: Path) -> Path:
    return state_dir / "api" / KEYS_FILE


def secret_digest(secret: str) -> str:
    """The stored form of a secret (see the module docstring for why SHA-256 suffices)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_rate(text: str) -> float:
    """``10``, ``10/s`` or ``2.5/s`` -> requests per second (above 0)."""
    match = RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"a rate is requests per second above 0, like 10/s; got {text!r}")
    return float(match.group(1))


@dataclass(frozen=True)
class ApiKey:
    """One issued key, as stored (the secret's digest, never the secret)."""

    key_id: str
    application: str
    partner: str | None
    digest: str
    created_at: str
    rate: float | None = None  # requests/s; None: the node's api.key_rate
    burst: int | None = None  # None: the node's api.key_burst
    revoked_at: str | None = None
    max_subscriptions: int | None = None  # None: the node's api.subscriptions.per_key

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def split_token(token: str) -> tuple[str, str] | None:
    """``<key_id>.<secret>`` -> (key_id, secret), or None when it cannot be a key."""
    key_id, sep, secret = token.strip().partition(".")
    if not sep or not KEY_ID.match(key_id) or not secret or len(secret) > 256:
        return None
    return key_id, secret


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class KeyStore:
    """The keys file of one node: issued, listed and revoked by the CLI, checked by the
    service at every request (re-read when it changes, see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        reload_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = path
        self.reload_s = reload_s
        self._clock = clock
        self._checked_at: float | None = None
        self._seen: tuple[int, int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    def keys(self) -> dict[str, ApiKey]:
        """Key id -> record, revoked ones included. Raises ConfigError when the file is
        unsafe (wider than 0600) or not a keys file."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.reload_s:
            return self._keys
        self._checked_at = now
        if not self.path.exists():
            self._keys, self._seen = {}, None
            return self._keys
        refuse_wide_mode(self.path)
        stat = self.path.stat()
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if seen != self._seen:
            self._keys, self._seen = self._read(), seen
        return self._keys

    def _read(self) -> dict[str, ApiKey]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            return {key_id: ApiKey(**entry) for key_id, entry in document["keys"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"not an API keys file ({exc}); restore it from a backup or move it away and "
                "issue keys again with `citeplus api keys create`",
                source=str(self.path),
            ) from exc

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key whose secret ``token`` carries, else None (malformed, unknown,
        wrong secret or revoked: the caller answers 401 in every case)."""
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        digest = secret_digest(secret)
        key = self.keys().get(key_id)
        expected = key.digest if key is not None else secret_digest("")
        if not hmac.compare_digest(digest, expected) or key is None or not key.active:
            return None
        return key

    def create(
        self,
        application: str,
        partner: str | None = None,
        rate: float | None = None,
        burst: int | None = None,
        max_subscriptions: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key; returns its record and the token ``<key_id>.<secret>``, which is
        never stored and cannot be shown again."""
        if not APPLICATION.match(application):
            raise ConfigError(
                "an application name is 1-80 letters, digits, spaces or '.@:/+-_', starting "
                f"with a letter or digit; got {application!r}"
            )
        if burst is not None and burst < 1:
            raise ConfigError(f"a burst is at least 1 request; got {burst}")
        if max_subscriptions is not None and max_subscriptions < 0:
            raise ConfigError(f"--max-subscriptions is 0 or more; got {max_subscriptions}")
        with self._writing():
            keys = dict(self._fresh())
            key_id = "k" + secrets.token_hex(8)
            while key_id in keys:
                key_id = "k" + secrets.token_hex(8)
            secret = secrets.token_urlsafe(SECRET_BYTES)
            key = ApiKey(
                key_id,
                application,
                partner,
                secret_digest(secret),
                _now_iso(),
                rate,
                burst,
                max_subscriptions=max_subscriptions,
            )
            keys[key_id] = key
            self._save(keys)
        return key, f"{key_id}.{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Mark ``key_id`` revoked (kept, so that `list` shows it and its id is never
        reissued); raises ConfigError for an unknown id."""
        with self._writing():
            return self._revoke(key_id)

    def _revoke(self, key_id: str) -> ApiKey:
        keys = dict(self._fresh())
        key = keys.get(key_id)
        if key is None:
            raise ConfigError(
                f"no API key {key_id!r} on this node (see `citeplus api keys list`)",
                source=str(self.path),
            )
        if key.active:
            keys[key_id] = key = replace(key, revoked_at=_now_iso())
            self._save(keys)
        return key

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time (two operators' commands at once would otherwise each
        rewrite the file from what they read, and one key would be lost)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _fresh(self) -> dict[str, ApiKey]:
        self._checked_at = None
        return self.keys()

    def _save(self, keys: dict[str, ApiKey]) -> None:
        document = {"keys": {key_id: asdict(key) for key_id, key in sorted(keys.items())}}
        write_private(self.path, json.dumps(document, indent=1, sort_keys=True) + "\n")
        self._checked_at = None
