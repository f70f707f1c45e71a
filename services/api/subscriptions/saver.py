"""Delivery states of many subscriptions confirmed by one wait for Kafka.

Each delivery must know its state is on the broker before it goes on (a position is
saved only after the receiver's 2xx; a pending id before the first attempt), and a
flush per state made a hundred receivers wait on a hundred flushes in a row. Here
every state handed in while a round is being written goes out in the next round,
all of them with one ``store.save_states``: each caller still returns only once its
own state is confirmed (or raises what the store raised).
"""

from __future__ import annotations

import threading

from services.api.subscriptions.model import DeliveryState
from services.api.subscriptions.store import SubscriptionStore


class GroupSaver:
    def __init__(self, store: SubscriptionStore):
        self.store = store
        self._lock = threading.Condition()
        self._waiting: dict[str, DeliveryState] = {}
        self._started = 0  # rounds taken by the writer
        self._done = 0  # rounds confirmed (or failed)
        self._errors: dict[int, Exception] = {}
        self._stopped = False
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)
        self._thread.start()

    def save(self, sub_id: str, state: DeliveryState) -> None:
        """Returns once ``state`` is confirmed; raises the store's error otherwise."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the delivery engine is stopping")
            self._waiting[sub_id] = state
            mine = self._started + 1
            self._lock.notify_all()
            while self._done < mine and not self._stopped:
                self._lock.wait(1.0)
            error = self._errors.get(mine)
            if self._done < mine:
                raise RuntimeError("the delivery engine stopped before the state was saved")
        if error is not None:
            raise error

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopped:
                    self._lock.wait(1.0)
                if self._stopped and not self._waiting:
                    return
                batch, self._waiting = self._waiting, {}
                self._started += 1
                current = self._started
            error: Exception | None = None
            try:
                self.store.save_states(batch)
            except Exception as exc:  # told to every caller of the round
                error = exc
            with self._lock:
                if error is not None:
                    self._errors[current] = error
                self._errors.pop(current - 100, None)
                self._done = current
                self.rounds += 1
                self._lock.notify_all()
