"""Per-city pseudonymisation secrets and the epoch keys derived from them.

Where a city's secret comes from, first match wins:

1. ``CITEPLUS_PSEUDONYM_SECRET_<CITY>`` (city code upper-cased, ``-`` -> ``_``):
   either one secret (at least 32 characters), or a rotation list
   ``YYYY-MM:secret,YYYY-MM:secret`` (each secret effective from its epoch);
2. the keyring file ``<keys dir>/<city>.json`` (default keys dir:
   ``<node state dir>/secrets/keys``, outside the repository), mode 0600::

       {"format": 1, "city": "lyon",
        "secrets": [{"from_epoch": "1970-01", "created_at": "...", "secret": "..."},
                    {"from_epoch": "2026-03", "created_at": "...", "secret": "..."}]}

An epoch is a month of the city's calendar (``2025-11``, in its city file's
``timezone``) of each row's reading time (see ``epochs.py``; rows without a
time: of the record's ``received_at``), so one meter in one day has one
pseudonym whenever it is sent — a day re-sent in the next month is not counted
twice by energy-analytics — and a replay of the same raw records gives the same
pseudonyms. Local months because energy-analytics' days are the city's local
days (:mod:`services.runtime.localday`): a local month never splits one, where a
UTC month split the first local day of every month (in Paris it starts at 22:00
or 23:00 UTC of the previous month) and counted its meters twice. The key of an epoch is
``HMAC-SHA-256(secret in effect, "citeplus-pseudonym/v1|<city>|<epoch>")``: keys
of two epochs or two cities are unrelated, so linking pseudonyms across them
needs the secret. Rotation adds a new secret effective from an epoch; earlier
epochs keep theirs. The earliest secret also covers every earlier epoch.

A secret shorter than 32 characters or under 128 bits of estimated entropy
(``services.privacy.entropy``: repeated characters, words, sequences, small
alphabets score low) is refused at load, naming the variable or the keyring
file and key: with a guessable secret anyone computes the pseudonym of every
meter number. Generated secrets (``citeplus keys init|rotate``, the dev node's
keyrings, ``deploy/compose/make_secrets.py``) are 256 random bits and pass.

Secrets are never logged, written to Kafka, printed or returned: objects here
hide them in ``repr`` and errors never quote them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.privacy import entropy
from services.privacy.pseudonym import Pseudonymiser
from services.runtime import localday
from services.runtime.errors import ConfigError

ENV_PREFIX = "CITEPLUS_PSEUDONYM_SECRET_"
FIRST_EPOCH = "1970-01"
KEYRING_FORMAT = 1
MIN_SECRET_CHARS = 32
_EPOCH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_ROTATION_ITEM = re.compile(r"(\d{4}-(?:0[1-9]|1[0-2])):(.+)")
_CONTEXT = b"citeplus-pseudonym/v1"
# The month that begins first anywhere (UTC+14): "now" for key rotation, so a
# rotation never starts from a month some city has already begun.
EARLIEST_ZONE = "Pacific/Kiritimati"
_ADVICE = "; generate one with `citeplus keys init` or 32 random bytes (`openssl rand -base64 32`)"


def keys_dir_of(state_dir: Path) -> Path:
    """Where a node keeps its keyrings by default."""
    return Path(state_dir) / "secrets" / "keys"


def env_variable(city: str) -> str:
    return ENV_PREFIX + city.upper().replace("-", "_")


def epoch_of(time_us: int, timezone: str) -> str:
    """The key epoch of a time in epoch microseconds: its month in the city's
    ``timezone``, whose local days energy-analytics counts (cached, cheap)."""
    return localday.month_of(time_us, timezone)


def current_epoch(now: float | None = None, timezone: str = EARLIEST_ZONE) -> str:
    """The epoch now; by default the latest any city may be in (see EARLIEST_ZONE)."""
    return epoch_of(int((time.time() if now is None else now) * 1_000_000), timezone)


def next_epoch(epoch: str) -> str:
    year, month = int(epoch[:4]), int(epoch[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def check_epoch(text: str, *, where: str = "--from-epoch") -> str:
    if not isinstance(text, str) or not _EPOCH.fullmatch(text):
        raise ConfigError(
            f"expected an epoch YYYY-MM (a month of the city's calendar), got {text!r}",
            source=where,
        )
    return text


def check_secret(value: str, *, source: str, key: str | None = None, item: str = "") -> None:
    """Refuse a secret shorter than 32 characters or under 128 bits of estimated entropy.

    The error names where the secret came from (``source``: the variable or the
    keyring file; ``key``: where in the file; ``item``: which one of a rotation
    list) and never quotes it, nor any part of it.
    """
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{item}a secret must have at least {MIN_SECRET_CHARS} characters{_ADVICE}",
            source=source,
            key=key,
        )
    bits = entropy.estimate_bits(value)
    if bits < entropy.MIN_BITS:
        raise ConfigError(
            f"{item}the secret is too guessable: about {bits:.0f} bits of estimated entropy, "
            f"under the {entropy.MIN_BITS} required (repeated characters, a word, a sequence "
            f"or too small an alphabet){_ADVICE}",
            source=source,
            key=key,
        )


@dataclass(frozen=True)
class Secret:
    from_epoch: str
    value: str
    created_at: str = ""

    def __repr__(self) -> str:
        return f"Secret(from_epoch={self.from_epoch!r}, value=<hidden>)"


class Keyring:
    """A city's secrets in effect order. Holds secrets: never printed."""

    def __init__(self, city: str, secrets_: Iterable[Secret], origin: str):
        self.city = city
        self.secrets = sorted(secrets_, key=lambda s: s.from_epoch)
        self.origin = origin  # the file path or the variable name, for messages
        if not self.secrets:
            raise ConfigError("the keyring holds no secret", source=origin)

    def __repr__(self) -> str:
        epochs = [s.from_epoch for s in self.secrets]
        return f"Keyring(city={self.city!r}, origin={self.origin!r}, from_epochs={epochs})"

    def secret_for(self, epoch: str) -> Secret:
        chosen = self.secrets[0]
        for secret in self.secrets:
            if secret.from_epoch <= epoch:
                chosen = secret
        return chosen

    def epoch_key(self, epoch: str) -> bytes:
        secret = self.secret_for(epoch)
        message = b"|".join((_CONTEXT, self.city.encode(), epoch.encode()))
        return hmac.new(secret.value.encode("utf-8"), message, hashlib.sha256).digest()

    @property
    def epochs(self) -> list[str]:
        return [s.from_epoch for s in self.secrets]


# -- reading -------------------------------------------------------------------------------
def keyring_path(keys_dir: Path, city: str) -> Path:
    return Path(keys_dir) / f"{city}.json"


def read_keyring(path: Path, city: str) -> Keyring:
    """A keyring file, refused if others may read it or if it is malformed."""
    where = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"no pseudonymisation keyring for city {city!r}; create it with "
            f"`citeplus keys init --city {city}` or set {env_variable(city)}",
            source=where,
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the keyring is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {where}",
            source=where,
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the keyring: {type(exc).__name__}", source=where) from None
    if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
        raise ConfigError(f"expected a keyring document of format {KEYRING_FORMAT}", source=where)
    if document.get("city") != city:
        raise ConfigError(f"this keyring is not the one of city {city!r}", source=where, key="city")
    items = document.get("secrets")
    if not isinstance(items, list):
        raise ConfigError("expected a list of secrets", source=where, key="secrets")
    found: list[Secret] = []
    for i, item in enumerate(items):
        key = f"secrets[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("expected a mapping", source=where, key=key)
        epoch = item.get("from_epoch")
        value = item.get("secret")
        if not isinstance(epoch, str) or not _EPOCH.fullmatch(epoch):
            raise ConfigError("expected from_epoch YYYY-MM", source=where, key=f"{key}.from_epoch")
        if not isinstance(value, str):
            raise ConfigError("expected a secret (a text)", source=where, key=f"{key}.secret")
        check_secret(value, source=where, key=f"{key}.secret")
        found.append(Secret(epoch, value, str(item.get("created_at", ""))))
    if len({s.from_epoch for s in found}) != len(found):
        raise ConfigError(
            "two secrets take effect from the same epoch", source=where, key="secrets"
        )
    return Keyring(city, found, where)


def keyring_from_env(city: str, environ: dict[str, str] | None = None) -> Keyring | None:
    """The city's keyring from its environment variable, or None if it is not set."""
    name = env_variable(city)
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        return None
    items = [item.strip() for item in value.split(",")]
    found: list[Secret] = []
    if len(items) == 1 and not _ROTATION_ITEM.fullmatch(items[0]):
        found.append(Secret(FIRST_EPOCH, items[0]))
    else:
        for i, item in enumerate(items):
            match = _ROTATION_ITEM.fullmatch(item)
            if match is None:
                raise ConfigError(
                    f"item {i + 1}: expected YYYY-MM:secret (the epoch it takes effect from), "
                    "or the whole value one secret",
                    source=name,
                )
            found.append(Secret(match.group(1), match.group(2)))
    for i, secret in enumerate(found):
        check_secret(secret.value, source=name, item=f"item {i + 1}: " if len(found) > 1 else "")
    if len({s.from_epoch for s in found}) != len(found):
        raise ConfigError("two secrets take effect from the same epoch", source=name)
    return Keyring(city, found, name)


class KeyStore:
    """Epoch keys of every city, derived on first use and cached.

    A cache miss (a new city-epoch) reads the city's keyring again, so a rotation
    scheduled for a future epoch takes effect without restarting the service.
    """

    def __init__(self, keys_dir: Path, environ: dict[str, str] | None = None):
        self.keys_dir = Path(keys_dir)
        self._environ = environ
        self._cache: dict[tuple[str, str], Pseudonymiser] = {}

    def __repr__(self) -> str:
        return f"KeyStore(keys_dir={str(self.keys_dir)!r})"

    def keyring(self, city: str) -> Keyring:
        from_env = keyring_from_env(city, self._environ)
        if from_env is not None:
            return from_env
        return read_keyring(keyring_path(self.keys_dir, city), city)

    def check(self, cities: Iterable[str]) -> dict[str, str]:
        """Load every city's keyring once (at start); returns where each comes from."""
        return {city: self.keyring(city).origin for city in cities}

    def pseudonymiser(self, city: str, epoch: str) -> Pseudonymiser:
        found = self._cache.get((city, epoch))
        if found is None:
            key = self.keyring(city).epoch_key(epoch)
            found = self._cache[(city, epoch)] = Pseudonymiser(key, epoch)
        return found


# -- writing (keys init / rotate) ----------------------------------------------------------
def new_secret() -> str:
    """256 random bits, base64url: 43 characters, that the entropy guard accepts.

    Drawn again in the (never observed: 0 in 50,000 draws, lowest score 179 bits)
    case where a draw would score under the guard's threshold, so that a keyring
    this command writes always loads.
    """
    while True:
        value = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
        if entropy.estimate_bits(value) >= entropy.MIN_BITS:
            return value


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_private(path: Path, document: dict) -> None:
    """Write atomically, readable by the owner only, in a directory only the owner enters."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _document(keyring_city: str, secrets_: list[Secret]) -> dict:
    return {
        "format": KEYRING_FORMAT,
        "city": keyring_city,
        "secrets": [
            {"from_epoch": s.from_epoch, "created_at": s.created_at, "secret": s.value}
            for s in sorted(secrets_, key=lambda s: s.from_epoch)
        ],
    }


def init_keyring(keys_dir: Path, city: str) -> tuple[Path, bool]:
    """Create the city's keyring if it is missing; returns (path, created)."""
    path = keyring_path(keys_dir, city)
    if path.exists():
        read_keyring(path, city)  # an existing keyring must at least be valid
        return path, False
    _write_private(path, _document(city, [Secret(FIRST_EPOCH, new_secret(), _now_iso())]))
    return path, True


def ensure_dev_keyrings(state_dir: Path, cities: Iterable[str]) -> Path:
    """Give every city a keyring (``<state>/secrets/keys/<city>.json``, mode 0600)
    unless the environment provides its secret; returns the keys folder.

    What ``citeplus up`` does for a node started on a laptop, beside the
    development tokens of :mod:`services.runtime.dev_secrets`."""
    keys_dir = keys_dir_of(state_dir)
    for code in sorted(cities):
        if keyring_from_env(code) is None:
            init_keyring(keys_dir, code)
    return keys_dir


def rotate_keyring(
    keys_dir: Path, city: str, from_epoch: str | None = None, *, now: float | None = None
) -> tuple[Path, str]:
    """Add a new secret effective from ``from_epoch`` (default: next month).

    Refused for a past epoch (records of it were already pseudonymised and a
    replay must give the same pseudonyms) and when a rotation from that epoch
    or a later one already exists.
    """
    if keyring_from_env(city) is not None:
        raise ConfigError(
            f"city {city!r} takes its secret from {env_variable(city)}; rotate it in the secret "
            "store by appending YYYY-MM:<new secret> to that variable's value",
            source=env_variable(city),
        )
    path = keyring_path(keys_dir, city)
    keyring = read_keyring(path, city)
    current = current_epoch(now)
    epoch = check_epoch(from_epoch) if from_epoch else next_epoch(current)
    if epoch < current:
        raise ConfigError(
            f"epoch {epoch} is in the past (current epoch {current}); its records already "
            "have pseudonyms and a replay must give the same ones: rotate from "
            f"{current} or later",
            source="--from-epoch",
        )
    later = [s.from_epoch for s in keyring.secrets if s.from_epoch >= epoch]
    if later:
        raise ConfigError(
            f"a secret already takes effect from {later[0]}; nothing to do",
            source=str(path),
        )
    keyring.secrets.append(Secret(epoch, new_secret(), _now_iso()))
    _write_private(path, _document(city, keyring.secrets))
    return path, epoch
