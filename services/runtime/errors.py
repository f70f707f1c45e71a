"""One exception family for the whole project.

Every error a person may see derives from :class:`CiteplusError`, so the CLI can
print its message (which says what to do) instead of a stack trace.
"""

from __future__ import annotations


class CiteplusError(Exception):
    """Base of every error Cité+ raises on purpose."""


class ConfigError(CiteplusError):
    """A configuration file or environment variable is missing or wrong.

    The message names the file (or variable), the key and what is expected.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key = key


class SchemaError(CiteplusError):
    """An Avro schema cannot be loaded, registered or is incompatible."""


class WireFormatError(CiteplusError):
    """Bytes on a topic are not a valid Confluent wire-format Avro message."""


class InfrastructureError(CiteplusError):
    """A local server (Kafka, registry) could not be fetched, started or reached."""


class RejectedInput(CiteplusError):
    """Input a stage cannot process; it goes to the dead-letter topic with this reason.

    ``reason`` is a short machine-friendly code (``"bad-checksum"``), the message
    says in plain words what was wrong and, where possible, what to do.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class OversizedBatch(CiteplusError):
    """A batch holding an entity whose rows could not fit in one message: the sender
    must split it (not retry it as it is, and not lose it silently)."""

    def __init__(self, message: str, *, entity: str, rows: int, size: int, limit: int):
        super().__init__(message)
        self.entity, self.rows, self.size, self.limit = entity, rows, size, limit


class BrokerUnavailable(InfrastructureError):
    """Kafka did not durably accept a batch; nothing of it is visible to readers.

    Callers answer "retry later" (HTTP 503) rather than acknowledging.
    """
