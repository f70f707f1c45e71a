"""Idempotency keys shared by the node's ingest workers, through ingest.state.v1.

Several ingest workers share one port (SO_REUSEPORT): a client's retry may reach
another worker than its first attempt. Every worker already writes each keyed
batch's first answer to the state topic in the batch's own transaction; a
:class:`KeyFollower` reads that topic (``read_committed``) for as long as the worker
runs, so each worker learns the answers the others committed.

Exactly once, not "usually": before a keyed request is landed as a first attempt,
the worker notes the topic's end (the high watermark, transactions still open
included, read by a ``read_uncommitted`` probe) and waits until its follower has
read past it. A first attempt already handed to Kafka by another worker is then
either committed (its answer is replayed) or aborted (nothing landed: this attempt
lands). A worker whose follower cannot catch up within the bound (a killed
worker's open transaction holds the topic until the broker aborts it) answers 503
with Retry-After rather than risk landing the batch twice.

What is not covered: a first attempt that another worker is still *parsing* (its
records not yet handed to Kafka) when the retry arrives. A client retries after a
timeout, long after a batch is parsed; two copies of one batch sent at the same
instant to two workers may both land.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.runtime.config import NodeConfig
from services.runtime.kafka import consumer_settings

log = logging.getLogger(__name__)

CATCH_UP_S = 15.0


class KeyFollower:
    """Follows the state topic from ``start`` offsets (where the start-up restore
    ended) and hands each committed record to ``apply``, on the event loop's thread."""

    def __init__(
        self,
        node: NodeConfig,
        topic: str,
        start: dict[int, int],
        decode: Callable[[bytes], dict[str, Any]],
        apply: Callable[[dict[str, Any], int], None],
    ):
        self.topic = topic
        self.catch_up_s = CATCH_UP_S  # how long a first attempt waits for the others
        self.decode = decode
        self.apply = apply
        self._start = dict(start)
        group = f"citeplus.follow.{uuid.uuid4().hex}"
        self._consumer = Consumer(consumer_settings(node, group_id=group))
        self._probe = Consumer(
            consumer_settings(node, group_id=group, **{"isolation.level": "read_uncommitted"})
        )
        self._seen = dict(start)  # partition -> the offset read up to
        self._records: deque[tuple[dict[str, Any], int]] = deque()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-follower", daemon=True)

    def start(self) -> KeyFollower:
        self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in self._start.items()])
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._consumer.close()
        self._probe.close()

    def drain(self) -> None:
        """Apply what the follower read so far (on the caller's thread: the loop's)."""
        while self._records:
            record, partition = self._records.popleft()
            self.apply(record, partition)

    async def caught_up(self, timeout_s: float | None = None) -> bool:
        """Wait until everything written to the topic before this call is read (and
        applied); False when that took longer than ``timeout_s`` (``catch_up_s``)."""
        timeout_s = self.catch_up_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            self._waiters.append((loop, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return False
        finally:
            self.drain()

    # -- the follower's thread -----------------------------------------------------------
    def _run(self) -> None:
        target: dict[int, int] | None = None
        serving: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        while not self._stop.is_set():
            try:
                self._read()
                if target is None:
                    with self._lock:
                        serving, self._waiters = self._waiters, []
                    target = self._ends() if serving else None
                if target is not None and all(self._seen.get(p, 0) >= o for p, o in target.items()):
                    for loop, future in serving:
                        loop.call_soon_threadsafe(_settle, future)
                    target, serving = None, []
            except KafkaException as exc:  # the broker away: waiters time out (503)
                log.warning("idempotency follower: %s", exc)
                self._stop.wait(0.5)

    def _read(self) -> None:
        for message in self._consumer.consume(1000, 0.05):
            if message.error() is None:
                self._records.append((self.decode(message.value()), message.partition()))
        for tp in self._consumer.position(self._consumer.assignment()):
            if tp.offset >= 0:
                self._seen[tp.partition] = max(self._seen.get(tp.partition, 0), tp.offset)

    def _ends(self) -> dict[int, int]:
        """Each partition's end, open transactions included (what was written so far)."""
        return {
            p: self._probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)[1]
            for p in self._start
        }


def _settle(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)
