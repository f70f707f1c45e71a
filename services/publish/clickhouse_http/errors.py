"""ClickHouse's error codes and error text, as its HTTP interface answers them.

Clients read the code from the ``X-ClickHouse-Exception-Code`` header and show the
body; both must look like a ClickHouse server's so that a client's own error
handling (retries, "wrong password" dialogs) does the right thing.
"""

from __future__ import annotations

import re

# code -> ClickHouse's name for it (the part a person reads in parentheses)
NAMES: dict[int, str] = {
    36: "BAD_ARGUMENTS",
    47: "UNKNOWN_IDENTIFIER",
    60: "UNKNOWN_TABLE",
    62: "SYNTAX_ERROR",
    73: "UNKNOWN_FORMAT",
    81: "UNKNOWN_DATABASE",
    115: "UNKNOWN_SETTING",
    159: "TIMEOUT_EXCEEDED",
    164: "READONLY",
    194: "REQUIRED_PASSWORD",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    210: "NETWORK_ERROR",
    241: "MEMORY_LIMIT_EXCEEDED",
    271: "CANNOT_DECOMPRESS",
    396: "TOO_MANY_ROWS_OR_BYTES",
    452: "SETTING_CONSTRAINT_VIOLATION",
    456: "UNKNOWN_QUERY_PARAMETER",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
    1001: "STD_EXCEPTION",
}
BAD_ARGUMENTS = 36
SYNTAX_ERROR = 62
UNKNOWN_FORMAT = 73
UNKNOWN_SETTING = 115
READONLY = 164
REQUIRED_PASSWORD = 194
TOO_MANY_SIMULTANEOUS_QUERIES = 202
CANNOT_DECOMPRESS = 271
SETTING_CONSTRAINT_VIOLATION = 452
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
UNEXPECTED = 1001

# HTTP status per code, as ClickHouse maps them; anything the engine refuses about
# the query itself is the client's mistake (400), never a 5xx.
_STATUS = {
    REQUIRED_PASSWORD: 401,
    AUTHENTICATION_FAILED: 401,
    READONLY: 403,
    ACCESS_DENIED: 403,
    60: 404,
    81: 404,
    TOO_MANY_SIMULTANEOUS_QUERIES: 503,
    UNEXPECTED: 500,
}

_ENGINE = re.compile(r"Code:\s*(\d+)\.\s*(?:DB::Exception:\s*)?(.*)", re.DOTALL)


class ClickHouseError(Exception):
    """A refusal with ClickHouse's code; ``str()`` is the message without the prefix."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code

    @property
    def status(self) -> int:
        return http_status(self.code)

    def text(self) -> str:
        return error_text(self.code, str(self))


def http_status(code: int) -> int:
    return _STATUS.get(code, 400)


def error_text(code: int, message: str) -> str:
    """``Code: N. DB::Exception: message. (NAME)``, a ClickHouse server's wording."""
    message = message.strip().rstrip(".")
    name = NAMES.get(code, "UNKNOWN_EXCEPTION")
    if message.endswith(f"({name})"):
        return f"Code: {code}. DB::Exception: {message}\n"
    return f"Code: {code}. DB::Exception: {message}. ({name})\n"


def from_engine(error: BaseException) -> ClickHouseError:
    """chDB's RuntimeError text is ClickHouse's own: keep its code and message."""
    text = str(error).strip()
    found = _ENGINE.search(text)
    if not found:
        return ClickHouseError(UNEXPECTED, text or type(error).__name__)
    return ClickHouseError(int(found.group(1)), found.group(2).strip())
