"""Many small writers, one Kafka transaction: group commit for edge services.

Ingest receives concurrent HTTP batches and must acknowledge only what Kafka
has durably accepted, all of a batch or none of it. A transaction per batch
gives all-or-none; sharing one transaction among the batches that arrive
together keeps the per-commit cost (a few milliseconds) off each request.
A batch whose transaction fails is aborted, invisible to ``read_committed``
readers, and its caller is told so: retrying it cannot create a duplicate.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from services.runtime.config import NodeConfig
from services.runtime.errors import BrokerUnavailable
from services.runtime.kafka import make_producer, produce_bytes

log = logging.getLogger(__name__)

# (topic, key, value) goes where the producer's partitioner puts the key; a fourth
# item, the partition, places a message carrying many keys (a v2 batch) explicitly.
OutgoingMessage = tuple[str, str | bytes | None, bytes] | tuple[str, str | bytes | None, bytes, int]

# How long (in commit timeouts) a commit whose outcome is unknown is asked again
# before the batch is answered 503 anyway (see GroupCommitProducer._finish).
COMMIT_RETRY_FACTOR = 3
ABORT_TIMEOUT_S = 5.0


@dataclass
class _Job:
    messages: list[OutgoingMessage]
    future: Future[int] = field(default_factory=Future)


class GroupCommitProducer:
    """A background thread that commits queued batches together, transactionally."""

    def __init__(
        self,
        node: NodeConfig,
        transactional_id: str,
        *,
        timeout_s: float = 10.0,
        max_messages_per_commit: int = 50_000,
    ):
        self.node = node
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self.max_messages = max_messages_per_commit
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._producer: Producer | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="group-commit")
        self._closed = threading.Event()
        self.commits = 0
        self.failures = 0

    def start(self) -> GroupCommitProducer:
        self._thread.start()
        return self

    def submit(self, messages: list[OutgoingMessage]) -> Future[int]:
        """Queue a batch; the future resolves to its size once committed, or raises
        BrokerUnavailable once it is certain none of it is visible."""
        if self._closed.is_set():
            raise BrokerUnavailable("the producer is shutting down; retry on another instance")
        job = _Job(list(messages))
        if not job.messages:
            job.future.set_result(0)
        else:
            self._jobs.put(job)
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop, the producer too: left open it would keep
        reaching for the broker as long as the process lives. Not while the commit
        thread still runs (past ``timeout``): closing under it would fail its batch
        in a way nobody answers."""
        self._closed.set()
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._producer is not None and not self._thread.is_alive():
            producer, self._producer = self._producer, None
            producer.flush(5)
            producer.purge()  # what 5 s did not deliver would hold close() until it timed out
            close_producer(producer)

    # -- the commit thread ---------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            jobs, size = [first], len(first.messages)
            while size < self.max_messages:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                jobs.append(more)
                size += len(more.messages)
            self._commit(jobs)

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            producer = make_producer(
                self.node,
                transactional_id=self.transactional_id,
                **{"message.timeout.ms": int(self.timeout_s * 1000), "socket.timeout.ms": 5000},
            )
            try:
                producer.init_transactions(self.timeout_s)
            except KafkaException as exc:
                close_producer(producer)  # it would go on asking for an id (see _discard_producer)
                raise BrokerUnavailable(f"Kafka is unreachable ({exc.args[0]})") from exc
            self._producer = producer
        return self._producer

    def _commit(self, jobs: list[_Job]) -> None:
        started = time.monotonic()
        try:
            producer = self._ensure_producer()
            producer.begin_transaction()
            for job in jobs:
                for message in job.messages:
                    produce_outgoing(producer, message)
            self._finish(producer)
        except Exception as exc:  # whatever it is, the callers are answered (_failed)
            self._failed(jobs, exc)
            return
        self.commits += 1
        for job in jobs:
            job.future.set_result(len(job.messages))
        log.debug(
            "committed",
            extra={"batches": len(jobs), "seconds": round(time.monotonic() - started, 4)},
        )

    def _failed(self, jobs: list[_Job], exc: Exception) -> None:
        """Abort the batch's transaction and answer its callers 503.

        An error nobody foresaw (not Kafka's) is answered the same way rather than
        let through: it would end the commit thread, and every request after it would
        wait for ever. The abort makes the 503 true: nothing of the batch is visible."""
        self.failures += 1
        if not isinstance(exc, KafkaException | BrokerUnavailable):
            log.exception("batch failed unexpectedly; aborted")
        self._abandon(exc)
        if isinstance(exc, BrokerUnavailable):
            error = exc
        else:
            error = BrokerUnavailable(
                f"Kafka did not accept the batch ({_describe(exc)}); nothing of it was kept, "
                "retry later"
            )
        for job in jobs:
            job.future.set_exception(error)

    def _finish(self, producer: Producer) -> None:
        """Commit the transaction, retrying while its outcome is unknown.

        A commit that times out goes on in the background (librdkafka's retriable
        error): the coordinator may already have decided to commit. Aborting then
        fails and a fresh producer would complete that commit, so a batch answered
        503 would land anyway and the client's retry land twice. Calling commit
        again until it succeeds, or fails in a way that requires an abort, keeps the
        promise that a 503 means nothing of the batch is visible. The first call may
        take longer than a message's delivery timeout, so that undeliverable
        messages (brokers down, too few replicas in sync) fail as such (abortable),
        not as a commit timeout."""
        deadline = time.monotonic() + self.timeout_s * COMMIT_RETRY_FACTOR
        wait = self.timeout_s + 5.0
        while True:
            try:
                producer.commit_transaction(wait)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                unknown = (
                    isinstance(error, KafkaError)
                    and error.retriable()
                    and not error.txn_requires_abort()
                    and not error.fatal()
                )
                if not unknown or time.monotonic() >= deadline:
                    raise
                log.warning("commit not confirmed yet; asking again", extra={"error": str(exc)})
                wait = self.timeout_s

    def _abandon(self, exc: Exception) -> None:
        """Abort the open transaction; if even that fails, drop the producer so the
        next batch starts from a fresh one (which fences this one's transaction)."""
        log.warning("transaction failed", extra={"error": str(exc)})
        if self._producer is None:
            return
        try:
            # Bounded apart from the commit's: when the coordinator cannot be reached the
            # abort cannot succeed, and dropping the producer is safe (its successor
            # fences and aborts this transaction), so the 503 need not wait for it.
            self._producer.abort_transaction(min(self.timeout_s, ABORT_TIMEOUT_S))
        except KafkaException as abort_error:
            log.warning("abort failed; recreating producer", extra={"error": str(abort_error)})
            self._discard_producer()

    def _discard_producer(self) -> None:
        """Close the producer, not merely forget it.

        A producer whose transaction failed keeps bumping its epoch in the background
        (librdkafka retries InitProducerId until the coordinator answers). Left alive,
        it may do so after its successor's ``init_transactions`` once the broker is
        back, fencing the successor: a client's retry is answered 503 again. Dropping
        our reference was not enough: the failed call's exception, still referenced
        from the client's C code, kept the producer alive. Closing stops its threads
        before a successor starts."""
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer)


def close_producer(producer: Producer) -> None:
    """Close a producer the group commit is done with, whatever error it still holds.

    ``Producer.close()`` serves the client's pending events before it returns, and a
    fatal error among them (a producer fenced by another instance of its
    transactional id) is raised from there, after the producer was destroyed. Let
    through, it ended the commit thread: the failed batch was never answered and no
    later batch was committed. The producer is gone either way, so the error is only
    logged."""
    started = time.monotonic()
    try:
        producer.close()
    except KafkaException as exc:
        log.warning("producer closed on its error", extra={"error": str(exc)})
    log.info("producer closed", extra={"seconds": round(time.monotonic() - started, 3)})


def produce_outgoing(producer: Producer, message: OutgoingMessage) -> None:
    """Produce one outgoing message, to its own partition when it names one."""
    topic, key, value, *partition = message
    if partition:
        produce_bytes(producer, topic, key, value, partition=partition[0])
    else:
        produce_bytes(producer, topic, key, value)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].str()
    return str(exc)
