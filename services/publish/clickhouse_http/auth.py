"""Who is asking: the SQL users of the node (services/publish/sql_users.py), checked
with their slow hash behind a small gate."""

from __future__ import annotations

import logging
import threading

from services.publish.clickhouse_http.errors import (
    AUTHENTICATION_FAILED,
    REQUIRED_PASSWORD,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    UNEXPECTED,
    ClickHouseError,
)
from services.publish.sql_users import Credentials, UserStore
from services.runtime.errors import ConfigError

log = logging.getLogger(__name__)


class Gate:
    """A secret check costs tens of ms of CPU on purpose; at most two run at once, so
    that a flood of guesses slows the guessers, not the sink that shares this process
    (a secret already verified is cheap: UserStore keeps a keyed digest)."""

    def __init__(self, users: UserStore, at_once: int = 2, wait_s: float = 5.0):
        self.users = users
        self._checking = threading.BoundedSemaphore(at_once)
        self._wait_s = wait_s

    def user(self, credentials: Credentials | None) -> str:
        """The user's name, or a ClickHouseError: 194 without credentials, 516 for a
        wrong user or secret (the same answer for both, as ClickHouse gives)."""
        if credentials is None:
            raise ClickHouseError(
                REQUIRED_PASSWORD,
                "a user and password are required (X-ClickHouse-User/X-ClickHouse-Key or "
                "Basic); the node's operator creates users with `citeplus sql-users add NAME`",
            )
        if self._recognised(credentials):  # no slot: guesses must not queue it
            return credentials.user
        if not self._checking.acquire(timeout=self._wait_s):
            raise ClickHouseError(
                TOO_MANY_SIMULTANEOUS_QUERIES, "too many logins at once; retry in a moment"
            )
        try:
            known = self.users.check(credentials.user, credentials.secret)
        except ConfigError as exc:
            log.error("SQL users file refused", extra={"error": str(exc)})
            raise ClickHouseError(
                UNEXPECTED, "the node's SQL users file is unsafe; see the node's log"
            ) from exc
        finally:
            self._checking.release()
        if not known:
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                f"{credentials.user}: Authentication failed: password is incorrect, or there "
                "is no user with such name",
            )
        return credentials.user

    def _recognised(self, credentials: Credentials) -> bool:
        try:
            return self.users.recognised(credentials.user, credentials.secret)
        except ConfigError:
            return False  # the slow path says why
