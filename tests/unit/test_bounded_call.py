"""A client call that does not keep its own timeout (librdkafka's
``send_offsets_to_transaction`` when the group coordinator moves) is given up on from
outside, as a fatal error the process restarts on; one that returns, or fails on its
own, is passed through unchanged."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.runtime import bounded as bounded_module
from services.runtime.bounded import bounded


def test_a_call_that_never_returns_becomes_fatal_after_its_timeout_and_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bounded_module, "GRACE_S", 0.2)
    released = threading.Event()
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        bounded(lambda: released.wait(60), 0.3, "send_offsets_to_transaction")
    took = time.monotonic() - started
    released.set()
    error = raised.value.args[0]
    assert error.fatal() and error.code() == KafkaError._TIMED_OUT
    assert "send_offsets_to_transaction did not return" in error.str()
    assert 0.5 <= took < 30  # waited for the timeout and the grace, then gave up


def test_a_result_and_the_call_s_own_error_pass_through() -> None:
    assert bounded(lambda: 42, 1.0, "call") == 42

    def fails() -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "own timeout", retriable=True))

    with pytest.raises(KafkaException) as raised:
        bounded(fails, 1.0, "call")
    assert not raised.value.args[0].fatal() and raised.value.args[0].retriable()
