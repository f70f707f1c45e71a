"""aiohttp's server logger for the node's HTTP services (ingest, the common API).

A client's fault (malformed HTTP, a request line or header beyond the parser's
ceiling, a connection gone) is one INFO line, not an ERROR with a traceback: any
client could otherwise fill the logs at will. Anything else keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

MAX_SHOWN = 200


class ClientErrorsInOneLine(logging.LoggerAdapter):
    """Pass as AppRunner's ``logger``: aiohttp logs request failures through it."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, (HttpProcessingError, ConnectionError)):
            text = str(getattr(exc, "message", "") or exc).strip()
            first = text.splitlines()[0] if text else ""
            if len(first) > MAX_SHOWN:
                first = f"{first[:MAX_SHOWN]}… [{len(first):,} characters]"
            where = str(msg) % args if args else str(msg)
            self.logger.info("%s: %s: %s", where, type(exc).__name__, first)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def server_logger() -> ClientErrorsInOneLine:
    return ClientErrorsInOneLine(logging.getLogger("aiohttp.server"), {})
