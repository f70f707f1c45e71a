"""A Kafka client call bounded from outside, for the calls librdkafka does not bound.

``send_offsets_to_transaction`` takes a timeout, but its request to the group
coordinator never checks it (librdkafka issues 5456 and 5511, open against 2.14 and
still in the 2.15 line this project pins): when the coordinator moves or its broker
goes away, as in a roll restart, the call can block forever. A stage worker blocked
there stops polling, leaves its group after ``max.poll.interval.ms`` and holds its
transaction: its input waits until someone kills it. Run on a thread of its own, the
call is given up on after its own timeout and a grace: the error is fatal, the
process exits, the supervisor restarts it, and its new producer fences the open
transaction (the batch is read again from the committed offsets).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")

# Beyond the call's own timeout: a call that has not returned by then never will.
GRACE_S = 5.0


def bounded(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """``call()``'s result or exception; a fatal ``KafkaException`` when it has not
    returned ``GRACE_S`` after ``timeout_s`` (the thread left blocked is a daemon: it
    does not keep the exiting process alive)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the caller's thread as it is
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"bounded {what}", daemon=True)
    worker.start()
    worker.join(timeout_s + GRACE_S)
    if worker.is_alive():
        raise KafkaException(
            KafkaError(
                KafkaError._TIMED_OUT,
                f"{what} did not return {timeout_s + GRACE_S:g} s after it was called (its "
                f"own timeout is {timeout_s:g} s): the client is wedged; the process "
                "restarts with a new producer, which fences the open transaction",
                fatal=True,
            )
        )
    if failure:
        raise failure[0]
    return outcome[0]
