"""What an analyst's query may read: the one check every SQL door calls.

MINIMAL VERSION, to be replaced by the per-partner access rules (partner views,
parser-based refusal of other databases, table functions and dictionaries): today
every user is an internal analyst who reads everything, read-only. The contract
the ClickHouse HTTP interface relies on stays: ``authorize(user, sql, database)``
returns the statement to run (without the limits' SETTINGS clause, which the door
appends) or raises ``Refusal`` carrying a ClickHouse error code.
"""

from __future__ import annotations

from services.runtime.errors import CiteplusError
from services.warehouse.query import ensure_read_only

# ClickHouse's own error codes, so that every client shows a refusal as it would
# show a ClickHouse server's.
SYNTAX_ERROR = 62
READONLY = 164
ACCESS_DENIED = 497


class Refusal(CiteplusError):
    """A query this user may not run; ``code`` is ClickHouse's error code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def authorize(user: str, sql: str, database: str | None) -> str:
    """The statement ``user`` may run for ``sql`` in ``database``, or a Refusal."""
    try:
        return ensure_read_only(sql)
    except CiteplusError as exc:
        text = str(exc)
        code = SYNTAX_ERROR if ("one statement" in text or "unterminated" in text) else READONLY
        raise Refusal(code, text) from exc
