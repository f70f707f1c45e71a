"""Send payloads to a node's HTTP edge the way a city system would.

Each source pushes with its own bearer token (resolved from the city file's
reference, never printed). A 503 means the node kept nothing of the batch and
asks for a retry, so 503/429/502/504 and connection errors are retried with
exponential back-off (honouring ``Retry-After``); anything else is final.
A 401/403/404 says every later batch of that source would fail the same way,
so that source is skipped from then on instead of failing thousands of times;
so is a source whose token cannot be resolved here (the others still go).

Every payload carries an ``Idempotency-Key`` (this run's id and the payload's
number), the same on each of its retries: a push whose answer was lost (a
timeout after the node committed it) is answered again, not landed twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from services.runtime.cities import SourceConfig, resolve_secret
from services.runtime.errors import CiteplusError, ConfigError
from services.runtime.progress import Progress
from services.simulate.generator import Payload

RETRY_STATUSES = frozenset({429, 502, 503, 504})
SOURCE_FATAL_STATUSES = frozenset({401, 403, 404})
MAX_DELAY_S = 30.0


class PushError(CiteplusError):
    """The node could not be reached, or kept refusing, after every retry."""


@dataclass
class SourceTotals:
    """What one source sent and what the node said about it."""

    payloads: int = 0
    readings: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0  # payloads the node refused as a whole (or never got)
    skipped: int = 0  # payloads not sent after a fatal answer for the source


@dataclass
class PushReport:
    totals: dict[tuple[str, str], SourceTotals] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def of(self, city: str, source: str) -> SourceTotals:
        return self.totals.setdefault((city, source), SourceTotals())

    @property
    def ok(self) -> bool:
        return not self.errors and all(t.rejected == 0 for t in self.totals.values())


class Pusher:
    """Posts payloads to ``{base_url}/v1/cities/{city}/sources/{source}/records``."""

    def __init__(
        self,
        base_url: str,
        sources: Iterable[SourceConfig],
        *,
        client: httpx.Client | None = None,
        attempts: int = 6,
        backoff_s: float = 0.5,
        timeout_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self._tokens: dict[tuple[str, str], str] = {}
        self.unusable: dict[tuple[str, str], str] = {}  # sources without a token, and why
        for source in sources:
            try:
                self._tokens[(source.city, source.id)] = resolve_secret(source.token)
            except ConfigError as exc:
                self.unusable[(source.city, source.id)] = str(exc)
        if self.unusable and not self._tokens:
            # Nothing could be sent: say why now rather than after generating everything.
            first = next(iter(self.unusable.values()))
            raise ConfigError(
                f"no source token is available: {first} "
                "(a local node started with `citeplus up` provides them)"
            )
        self._client = client or httpx.Client(timeout=timeout_s)
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._run = uuid.uuid4().hex  # keys: this run's id and the payload's number
        self._sent = 0

    def close(self) -> None:
        self._client.close()

    def push(self, payloads: Iterable[Payload], progress: Progress | None = None) -> PushReport:
        report = PushReport()
        stopped: set[tuple[str, str]] = set()
        for payload in payloads:
            key = (payload.city, payload.source)
            totals = report.of(*key)
            totals.payloads += 1
            totals.readings += payload.readings
            if key in self.unusable and key not in stopped:
                stopped.add(key)
                report.errors.append(f"{key[0]}/{key[1]}: not sent: {self.unusable[key]}")
            if key in stopped:
                totals.skipped += 1
            else:
                self._push_one(payload, totals, report, stopped)
            if progress is not None:
                progress.advance(1, _note(report))
        return report

    def _push_one(
        self,
        payload: Payload,
        totals: SourceTotals,
        report: PushReport,
        stopped: set[tuple[str, str]],
    ) -> None:
        url = f"{self.base_url}/v1/cities/{payload.city}/sources/{payload.source}/records"
        response = self._post(url, payload)
        answer = _json(response)
        if response.status_code in (200, 422) and "accepted" in answer:
            totals.accepted += int(answer.get("accepted", 0))
            totals.rejected += int(answer.get("rejected", 0))
            return
        totals.failed += 1
        message = answer.get("error") or response.text[:200]
        report.errors.append(
            f"{payload.city}/{payload.source}: HTTP {response.status_code}: {message}"
        )
        if response.status_code in SOURCE_FATAL_STATUSES:
            stopped.add((payload.city, payload.source))

    def _post(self, url: str, payload: Payload) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self._tokens[(payload.city, payload.source)]}",
            "Content-Type": payload.content_type,
            "Idempotency-Key": f"simulate-{self._run}-{self._sent}",
        }
        self._sent += 1
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            wait = delay
            try:
                response = self._client.post(url, content=payload.body, headers=headers)
            except httpx.TransportError as exc:
                problem = f"cannot reach {url}: {exc or type(exc).__name__}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"{url} answered HTTP {response.status_code}"
                wait = max(delay, _retry_after(response))
            if attempt == self._attempts:
                raise PushError(
                    f"{problem}, still after {self._attempts} attempts; "
                    "is the ingest service running (citeplus service ingest)?"
                )
            self._sleep(min(wait, MAX_DELAY_S))
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _note(report: PushReport) -> str:
    readings = sum(t.readings for t in report.totals.values())
    accepted = sum(t.accepted for t in report.totals.values())
    rejected = sum(t.rejected for t in report.totals.values())
    return f"{readings:,} readings sent, {accepted:,} accepted, {rejected:,} rejected"
