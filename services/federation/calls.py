"""What every federation call goes through: who is calling, an audit line, and a
clear gRPC status for anything that goes wrong (never a stack trace to the caller).

The caller's identity is the common name of its client certificate, which the TLS
layer has already verified against the federation's authority. A node asking on
behalf of one of its own callers names it in ``citeplus-on-behalf-of``; such a call
sees only what both identities may see, so the header can narrow access, never
widen it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.policy import access
from services.policy.federation import CODE
from services.policy.sharing import SharingPolicy

ON_BEHALF_OF = "citeplus-on-behalf-of"
audit = logging.getLogger("citeplus.federation.audit")
log = logging.getLogger(__name__)


class FederationError(Exception):
    """An answer the caller should get as it is: a status code and a plain sentence."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field_name: str, message: str) -> FederationError:
    return FederationError(grpc.StatusCode.INVALID_ARGUMENT, f"{field_name}: {message}")


@dataclass(frozen=True)
class Caller:
    identity: str
    on_behalf_of: str | None = None

    def may_see(self, policy: SharingPolicy, home: str) -> bool:
        """Open data, or shared data naming the caller; internal data never. The node
        itself (``home``, its operators' certificate) sees what it shares with anyone.
        The rule is services/policy/access.py's, the one every door uses."""
        return access.may_see(policy, self.identity, home, self.on_behalf_of)

    def may_read_entities(self, policy: SharingPolicy, home: str, *, personal: bool) -> bool:
        """Entity-level data (QueryEntities, QueryTemporal): beyond ``may_see``, a personal
        source only for partners the city names, or the node itself (access.py)."""
        return access.may_read_entities(
            policy, self.identity, home, self.on_behalf_of, personal=personal
        )

    def __str__(self) -> str:
        return self.identity + (f" for {self.on_behalf_of}" if self.on_behalf_of else "")


@dataclass
class CallRecord:
    """Filled in by the handler; written as one audit line when the call ends."""

    method: str
    caller: Caller  # Caller("?") until the certificate is read: a call without one
    peer: str
    datasets: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def certified_identity(context: grpc.ServicerContext) -> str:
    """The common name of the caller's certificate, which TLS has already verified."""
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or []
    identity = names[0].decode("utf-8", "replace") if names else ""
    if not identity or not CODE.match(identity):
        raise FederationError(
            grpc.StatusCode.UNAUTHENTICATED,
            "a client certificate of the federation naming a node or partner code is required",
        )
    return identity


def on_behalf_of(context: grpc.ServicerContext, identity: str) -> str | None:
    """The partner code a node relays for, if any; a malformed header is refused
    (the caller is already known, so the audit still names it)."""
    relayed = None
    for key, value in context.invocation_metadata() or ():
        if key == ON_BEHALF_OF:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            if not CODE.match(text):
                raise invalid(ON_BEHALF_OF, f"expected a partner code, got {text[:40]!r}")
            relayed = None if text == identity else text
    return relayed


def _identify(context: grpc.ServicerContext, record: CallRecord) -> None:
    """Fill ``record.caller`` step by step, so that a refusal of the on-behalf-of
    header is audited under the certified caller, with the header marked malformed."""
    identity = certified_identity(context)
    record.caller = Caller(identity)
    try:
        record.caller = Caller(identity, on_behalf_of(context, identity))
    except FederationError:
        record.details["on_behalf_of_malformed"] = True
        raise


def _ended(context: grpc.ServicerContext) -> str:
    """How a stream that stopped without an error ended: OK, or cut by the client."""
    if context.is_active():
        return "OK"
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"


class CallMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry or CollectorRegistry()
        self.calls = Counter(
            "citeplus_federation_calls",
            "Federation API calls by method and status",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "citeplus_federation_call_seconds",
            "Duration of federation API calls",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )


def _finish(record: CallRecord, metrics: CallMetrics, started: float, code: str, message: str):
    elapsed = time.perf_counter() - started
    metrics.calls.labels(record.method, code).inc()
    metrics.seconds.labels(record.method).observe(elapsed)
    audit.info(
        "federation call",
        extra={
            "caller": record.caller.identity,
            "on_behalf_of": record.caller.on_behalf_of,
            "method": record.method,
            "dataset": ",".join(record.datasets) or None,
            "status": code,
            "error": message or None,
            "ms": round(elapsed * 1000, 1),
            "peer": record.peer,
            **record.details,
        },
    )


def _status(exc: BaseException, record: CallRecord) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, FederationError):
        return exc.code, exc.message
    reference = uuid.uuid4().hex[:12]
    log.error(
        "federation call failed",
        exc_info=exc,
        extra={"method": record.method, "reference": reference},
    )
    return grpc.StatusCode.INTERNAL, f"internal error (reference {reference} in the node's logs)"


def handled(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a servicer method ``(self, request, context, call)``: unary or streaming."""

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started = time.perf_counter()
                record = CallRecord(method, Caller("?"), context.peer())
                failure: tuple[grpc.StatusCode, str] | None = None
                code, message = "OK", ""
                try:
                    _identify(context, record)
                    yield from handler(self, request, context, record)
                    code = _ended(context)  # a handler that saw the client leave returns
                except GeneratorExit:
                    code = _ended(context)
                    code = "CANCELLED" if code == "OK" else code
                    raise
                except Exception as exc:
                    failure = _status(exc, record)
                    code, message = failure[0].name, failure[1]
                finally:
                    _finish(record, self.call_metrics, started, code, message)
                if failure is not None:
                    context.abort(*failure)

            return stream

        @functools.wraps(handler)
        def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            record = CallRecord(method, Caller("?"), context.peer())
            failure: tuple[grpc.StatusCode, str] | None = None
            code, message = "OK", ""
            try:
                _identify(context, record)
                return handler(self, request, context, record)
            except Exception as exc:
                failure = _status(exc, record)
                code, message = failure[0].name, failure[1]
            finally:
                _finish(record, self.call_metrics, started, code, message)
            context.abort(*failure)

        return unary

    return wrap
