"""Idempotent pushes: a request carrying an ``Idempotency-Key`` header lands once.

Every HTTP client retries after a timeout, and a retried batch used to land again
with a new lineage id (for sources coarsened to the day, the warehouse then held
every retry). With a key, ingest remembers the FIRST answer of (city, source, key)
and answers a retry with it, byte for byte, landing nothing new.

Exactly once with the batch: the remembered answer is a ``StateEntry`` on a
compacted state topic (``ingest.state.v1``) produced in the SAME Kafka transaction
as the batch's RawRecords and dead letters. Either both are visible to
``read_committed`` readers or neither is: a crash after the commit leaves the
answer on the topic (a restarted ingest restores it), a failed commit leaves
neither (the retry is a first attempt). Answers without a commit (401, 404, 413,
429, 503) are not remembered: nothing landed, the retry must be tried again.

The key is never the body: a meter whose index does not move sends identical
frames, and requests without a key behave as before. A key sent again with a
different body is refused (422) rather than answered with the old answer; the
same key arriving while its first request is still being committed waits for
that request's outcome (so one lands, never both).

Bounds: a key is remembered for ``retention_s`` (24 h by default, never less);
the topic's ``retention.ms`` (48 h, ``compact,delete``) removes older records
without tombstones. In memory a key costs ~430 bytes plus its answer (~210
bytes without errors; 643 bytes in all, measured with tracemalloc); past
``max_bytes`` the oldest keys are forgotten early, counted
(``citeplus_idempotency_evicted``) and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from services.runtime.codec import TopicCodec
from services.runtime.group_commit import OutgoingMessage
from services.runtime.metrics import ServiceMetrics
from services.runtime.topics import TopicName, companion

if TYPE_CHECKING:
    from services.ingest.core import IngestCore
    from services.ingest.idempotency_follow import KeyFollower
    from services.runtime.cities import SourceConfig

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
STORE = "ingest-idempotency"
STATE_TOPIC = TopicName.INGEST_STATE
MIN_RETENTION_S = 24 * 3600
DEFAULT_RETENTION_S = 24 * 3600
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_KEY_LENGTH = 255
_ENTRY_OVERHEAD = 430  # bytes of Python objects around one answer (measured: 643 B per key)


class KeyRefused(Exception):
    """A keyed request that cannot be served: ``status`` and a message saying what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    """What a keyed request was (or is again) told: status and the exact body."""

    status: int
    body: str
    replayed: bool = False


StateRecords = Callable[[Answer], list[OutgoingMessage]]  # the answer's records, for the batch
Land = Callable[[StateRecords], Awaitable[Answer]]  # commits a batch with those records


@dataclass(frozen=True)
class _Entry:
    expires_s: float
    fingerprint: str
    status: int
    body: str

    @property
    def size(self) -> int:
        return _ENTRY_OVERHEAD + len(self.body)


def state_topic_beside(raw_topic: str) -> str:
    """The state topic that goes with a raw topic (``test.x.raw.v1`` or
    ``test.x.raw.v2`` -> ``test.x.ingest.state.v1``), so prefixed copies of the
    topics stay together."""
    declared = TopicName.RAW_V2 if raw_topic.endswith(TopicName.RAW_V2) else TopicName.RAW
    return companion(raw_topic, declared, STATE_TOPIC, fallback=".ingest.state")


def check_key(key: str) -> str:
    """The key as sent, or KeyRefused(400): 1 to 255 visible ASCII characters."""
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all(" " < c <= "~" for c in key):
        raise KeyRefused(
            400,
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (a UUID is "
            "a good key); send the same key with every retry of one batch",
        )
    return key


def scope_of(city: str, source: str, key: str) -> str:
    """Keys are per source (its token): two sources may use the same key."""
    return hashlib.sha256(f"{city}\x1f{source}\x1f{key}".encode()).hexdigest()[:32]


def fingerprint_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:32]


class IdempotencyStore:
    """First answers by scope, in arrival order (so the oldest expire first)."""

    def __init__(
        self,
        topic: str,
        codec: TopicCodec | None,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        metrics: ServiceMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if retention_s < MIN_RETENTION_S:
            raise ValueError(f"idempotency retention must be at least {MIN_RETENTION_S} s")
        self.name = STORE
        self.topic = topic
        self.available = codec is not None
        self._codec = codec
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Future[None]] = {}
        # Set when several ingest workers share the keys (idempotency_follow).
        self.follower: KeyFollower | None = None
        registry = (metrics or ServiceMetrics("ingest")).registry
        self.evicted = Counter(
            "citeplus_idempotency_evicted",
            "Idempotency keys forgotten before their retention (memory bound reached)",
            registry=registry,
        )
        self.replays = Counter(
            "citeplus_idempotency_replays", "Keyed retries answered again", registry=registry
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- what is known ------------------------------------------------------------
    def lookup(self, scope: str, fingerprint: str) -> Answer | None:
        """The first answer of this key, None if unknown; KeyRefused(422) for another body."""
        self._expire()
        entry = self._entries.get(scope)
        if entry is None or entry.expires_s <= self._clock():
            return None
        if entry.fingerprint != fingerprint:
            raise KeyRefused(
                422,
                f"this {HEADER} was already used for a different body within the last "
                f"{self.retention_s / 3600:g} h; a retry must resend exactly the same bytes, "
                "and new data needs a new key",
            )
        self.replays.inc()
        return Answer(entry.status, entry.body, replayed=True)

    def remember(self, scope: str, fingerprint: str, answer: Answer, at_s: float) -> None:
        if scope in self._entries:
            return  # first answer wins
        entry = _Entry(at_s + self.retention_s, fingerprint, answer.status, answer.body)
        self._entries[scope] = entry
        self._bytes += entry.size
        self._expire()
        while self._bytes > self.max_bytes and self._entries:
            self._drop_oldest()
            self.evicted.inc()
            log.warning(
                "idempotency keys forgotten early: memory bound reached",
                extra={"max_bytes": self.max_bytes},
            )

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.expires_s > now:
                return
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self._bytes -= entry.size

    # -- the state topic --------------------------------------------------------------
    def message(self, scope: str, fingerprint: str, answer: Answer, at_s: float) -> OutgoingMessage:
        """The state record that commits with the batch."""
        assert self._codec is not None
        value = json.dumps(
            {"f": fingerprint, "s": answer.status, "b": answer.body}, separators=(",", ":")
        )
        record = {"store": STORE, "key": scope, "value": value, "updated_at": int(at_s * 1e6)}
        return (self.topic, f"{STORE}|{scope}", self._codec.encode(record))

    def apply(self, record: dict[str, Any], partition: int) -> None:
        """One state record read back at start."""
        if record["store"] != STORE or record["value"] is None:
            return
        value = json.loads(record["value"])
        at_s = _seconds(record["updated_at"])
        if at_s + self.retention_s > self._clock():
            self.remember(record["key"], value["f"], Answer(value["s"], value["b"]), at_s)

    # -- one keyed request --------------------------------------------------------------
    async def serve(
        self,
        scope: str,
        fingerprint: str,
        land: Land,
    ) -> Answer:
        """The stored answer, or ``land``'s (given the state records to commit with the
        batch); a request arriving while the same key is being committed waits for it."""
        if not self.available:
            raise KeyRefused(
                503,
                f"idempotency keys are unavailable on this node: its state topic {self.topic} "
                "is missing (run `citeplus topics apply`); retry, or send without the key",
            )
        await self._settle_first(scope, fingerprint)
        known = self.lookup(scope, fingerprint)
        if known is not None:
            return known
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[scope] = done
        # Shielded: a client that disconnects cancels its handler, but a batch already
        # handed to Kafka may still commit, and its answer must then be remembered.
        return await asyncio.shield(
            asyncio.ensure_future(self._land(scope, fingerprint, land, done))
        )

    async def _settle_first(self, scope: str, fingerprint: str) -> None:
        """Return once no earlier attempt of the key is in flight here, and (with
        other workers) once every answer they committed before now has been read."""
        followed = self.follower is None
        while True:
            if self.follower is not None:
                self.follower.drain()
            if self.lookup(scope, fingerprint) is not None:
                return
            pending = self._inflight.get(scope)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            if followed:
                return
            assert self.follower is not None
            if not await self.follower.caught_up():
                raise KeyRefused(
                    503,
                    "another ingest worker of this node may still be committing a batch "
                    f"with this {HEADER}; retry in a few seconds with the same key",
                )
            followed = True

    async def _land(
        self,
        scope: str,
        fingerprint: str,
        land: Land,
        done: asyncio.Future[None],
    ) -> Answer:
        at_s = self._clock()
        try:
            answer = await land(lambda a: [self.message(scope, fingerprint, a, at_s)])
            self.remember(scope, fingerprint, answer, at_s)
            return answer
        finally:
            del self._inflight[scope]
            done.set_result(None)


async def push_keyed(core: IngestCore, source: SourceConfig, key: str, payload: bytes) -> Answer:
    """A keyed push: the first answer of (source, key), landing the batch at most once."""
    store = core.keys
    if store is None:
        raise KeyRefused(503, f"this ingest was started without {HEADER} support; retry later")
    scope = scope_of(source.city, source.id, check_key(key))

    async def land(state: StateRecords) -> Answer:
        answers: list[Answer] = []

        def with_batch(result: Any) -> list[OutgoingMessage]:
            answers.append(Answer(result.status, json.dumps(result.answer())))
            return state(answers[0])

        await core.ingest(source, payload, with_batch=with_batch)
        return answers[0]

    return await store.serve(scope, fingerprint_of(payload), land)


def push_keyed_blocking(
    core: IngestCore, source: SourceConfig, key: str, payload: bytes
) -> tuple[Answer, Any]:
    """The same for one command-line process (no concurrent requests): the answer,
    and the IngestResult when the batch landed now (None when answered from the store)."""
    store = core.keys
    if store is None or not store.available:
        raise KeyRefused(503, f"idempotency keys are unavailable ({STATE_TOPIC} missing)")
    scope, fingerprint = scope_of(source.city, source.id, check_key(key)), fingerprint_of(payload)
    known = store.lookup(scope, fingerprint)
    if known is not None:
        return known, None
    at_s = store._clock()
    answers: list[Answer] = []

    def with_batch(result: Any) -> list[OutgoingMessage]:
        answers.append(Answer(result.status, json.dumps(result.answer())))
        return [store.message(scope, fingerprint, answers[0], at_s)]

    result = core.ingest_blocking(source, payload, with_batch=with_batch)
    store.remember(scope, fingerprint, answers[0], at_s)
    return answers[0], result


def _seconds(updated_at: Any) -> float:
    """``updated_at`` as decoded (a datetime for timestamp-micros, or micros)."""
    if isinstance(updated_at, int):
        return updated_at / 1e6
    return updated_at.timestamp()
