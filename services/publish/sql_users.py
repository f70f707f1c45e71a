"""Who may query the warehouse: users and salted secret hashes in one file of the
state directory.

Kept free of HTTP and ClickHouse so that every door to the warehouse checks the
same users: publish's ClickHouse HTTP interface (services/publish/clickhouse_http).
The file (``<state>/sql/users.json``) holds scrypt hashes only, never a secret,
and must be readable by the node's account alone (0600): a wider mode is refused
rather than fixed, since someone may already have read it.

A user may be bound to a partner (``partners`` in the file: user -> partner code):
that analyst reads only what the city files share with its partner (the views of
``partner_<code>``, services/publish/partner_views.py), enforced by
services/publish/sql_access.py. A user without a partner is the node's own
(internal) analyst and reads everything. Files written before partners existed
have no ``partners`` key and keep working: all their users are internal.

The node's own operator gets a user on first start (``operator``), whose secret is
kept beside the file in ``credentials`` (0600) so that ``citeplus sql`` and the
demo work on the machine that runs the node, as the one who runs it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from services.runtime.errors import ConfigError
from services.runtime.private_files import refuse_wide_mode, write_private

USERS_FILE = "users.json"
CREDENTIALS_FILE = "credentials"
OPERATOR = "operator"
NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
PARTNER = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # a city code (services/policy/sharing.py)
# scrypt at n=2^14, r=8: ~16 MiB and some tens of ms per check, which is what makes
# a stolen users.json slow to guess from; a person querying does not notice.
_N, _R, _P, _LEN = 2**14, 8, 1, 32
_PREFIX = "scrypt"


def sql_dir(state_dir: Path) -> Path:
    return state_dir / "sql"


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash``, salt and hash in base64: one line per user."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LEN)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return "$".join([_PREFIX, str(_N), str(_R), str(_P), *encoded])


def secret_matches(secret: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _decoy() -> str:
    """Checked when the user is unknown, so that a wrong name costs as long as a wrong
    secret. Hashed once per process when the first store is made, not at import: every
    ``citeplus`` command imports this module and most never check a password."""
    return hash_secret("decoy")


@dataclass(frozen=True)
class Credentials:
    user: str
    secret: str


class UserStore:
    """The users file; re-read when it changes, so `citeplus sql-users` needs no restart."""

    def __init__(self, state_dir: Path):
        self.path = sql_dir(state_dir) / USERS_FILE
        self._seen: tuple[int, int] | None = None
        self._users: dict[str, str] = {}
        self._partners: dict[str, str] = {}
        # Secrets already checked against the current file, kept as a keyed digest
        # so that each query does not pay scrypt again (a wrong secret always does).
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._decoy = _decoy()  # paid here, before any login can be timed

    def exists(self) -> bool:
        return self.path.exists()

    def users(self) -> dict[str, str]:
        """Name -> stored hash. Raises ConfigError when the file is unsafe or unreadable."""
        if not self.path.exists():
            return {}
        refuse_wide_mode(self.path)
        seen = self.path.stat()
        key = (seen.st_mtime_ns, seen.st_size)
        if key != self._seen:
            try:
                document = json.loads(self.path.read_text(encoding="utf-8"))
                users = dict(document["users"])
                partners = dict(document.get("partners", {}))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConfigError(
                    f"not a users file ({exc}); recreate it with citeplus sql-users add",
                    source=str(self.path),
                ) from exc
            self._users, self._partners = users, _valid_partners(partners, users, self.path)
            self._seen, self._verified = key, {}
        return dict(self._users)

    def partner(self, user: str) -> str | None:
        """The partner code ``user`` reads for, or None for the node's own analysts."""
        self.users()
        return self._partners.get(user)

    def partners(self) -> dict[str, str]:
        """User -> partner code, for the users bound to a partner."""
        self.users()
        return dict(self._partners)

    def recognised(self, user: str, secret: str) -> bool:
        """True when ``secret`` is one this store already verified for ``user`` (no slow
        hash: a keyed digest). False says nothing: ask ``check``."""
        stored = self.users().get(user)
        known = self._verified.get(user)
        if stored is None or known is None:
            return False
        digest = hmac.new(self._key, f"{stored}\n{secret}".encode(), hashlib.sha256).digest()
        return hmac.compare_digest(known, digest)

    def check(self, user: str, secret: str) -> bool:
        """True when ``user`` exists and ``secret`` is its secret."""
        stored = self.users().get(user)
        if stored is None:
            secret_matches(secret, self._decoy)
            return False
        digest = hmac.new(self._key, f"{stored}\n{secret}".encode(), hashlib.sha256).digest()
        known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        if not secret_matches(secret, stored):
            return False
        self._verified[user] = digest
        return True

    def add(self, user: str, secret: str | None = None, *, partner: str | None = None) -> str:
        """Add or replace ``user``; returns its secret (generated unless given).

        ``partner`` binds the user to a partner; None keeps the binding a replaced
        user had, so that a new secret never turns a partner's analyst into an
        internal one (remove the user first to change what it reads).
        """
        if not NAME.match(user):
            raise ConfigError(f"a user name is lowercase letters, digits, '._-'; got {user!r}")
        if partner is not None and not PARTNER.match(partner):
            raise ConfigError(f"a partner code is lowercase letters, digits, '-'; got {partner!r}")
        secret = secret or secrets.token_urlsafe(24)
        users = self.users()
        partners = dict(self._partners)
        users[user] = hash_secret(secret)
        if partner is not None:
            partners[user] = partner
        self._save(users, partners)
        return secret

    def remove(self, user: str) -> bool:
        users = self.users()
        if users.pop(user, None) is None:
            return False
        partners = {u: p for u, p in self._partners.items() if u != user}
        self._save(users, partners)
        return True

    def _save(self, users: dict[str, str], partners: dict[str, str]) -> None:
        document: dict[str, object] = {"users": users}
        if partners:  # absent otherwise: the file stays what older nodes read
            document["partners"] = partners
        write_private(self.path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def _valid_partners(
    partners: dict[str, object], users: dict[str, str], path: Path
) -> dict[str, str]:
    """The file's partner bindings, refused when one is not a partner code: a user
    whose binding cannot be read must not fall back to reading everything."""
    for user, code in partners.items():
        if not isinstance(code, str) or not PARTNER.match(code):
            raise ConfigError(
                f"user {user!r} has partner {code!r}, not a partner code; fix it with "
                "citeplus sql-users remove and add --partner",
                source=str(path),
            )
    return {user: str(code) for user, code in partners.items() if user in users}


def ensure_operator(state_dir: Path) -> None:
    """On a node's first start, create the operator's user and its local credentials.

    Only when there is no users file yet: an operator user removed on purpose is
    not brought back. Both files are checked for their mode at every start.
    """
    store = UserStore(state_dir)
    credentials = sql_dir(state_dir) / CREDENTIALS_FILE
    if not store.exists():
        secret = store.add(OPERATOR)
        write_private(credentials, f"{OPERATOR}:{secret}\n")
    store.users()
    if credentials.exists():
        refuse_wide_mode(credentials)


def local_credentials(state_dir: Path) -> Credentials | None:
    """What ``citeplus sql`` sends: CITEPLUS_SQL_USER and CITEPLUS_SQL_SECRET, else the
    operator's credentials file of the state directory, else None."""
    user, secret = os.environ.get("CITEPLUS_SQL_USER"), os.environ.get("CITEPLUS_SQL_SECRET")
    if user and secret:
        return Credentials(user, secret)
    path = sql_dir(state_dir) / CREDENTIALS_FILE
    if not path.exists():
        return None
    refuse_wide_mode(path)
    user, _, secret = path.read_text(encoding="utf-8").strip().partition(":")
    return Credentials(user, secret) if user and secret else None


def basic_authorization(credentials: Credentials) -> str:
    token = base64.b64encode(f"{credentials.user}:{credentials.secret}".encode()).decode()
    return f"Basic {token}"


def parse_basic(header: str | None) -> Credentials | None:
    """The user and secret of an ``Authorization: Basic`` header (as ClickHouse's HTTP
    interface takes them), or None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, secret = decoded.partition(":")
    return Credentials(user, secret) if sep and user else None
