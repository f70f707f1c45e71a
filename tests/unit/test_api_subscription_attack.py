"""Hostile subscribers: what one caller's subscription must not be able to do to the
node (hang delivery for everyone, reach what its audience may not read)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from services.api.ngsi.params import id_pattern
from services.api.ngsi.problems import NgsiError
from services.api.subscriptions.notifier import Notifier, Outcome, pinned_check
from services.api.subscriptions.targets import (
    TargetPolicy,
    TargetRefused,
    check_addresses,
    check_target,
    parse_target,
)

# The id of a station with a long key; the pattern backtracks exponentially in a
# backtracking engine (Python's re) on any id that does not end with "!".
EVIL = ".*(.|.)*!"
LONG_ID = "urn:ngsi-ld:AirQualityObserved:lyon:" + "s" * 60

MATCH_ONCE = f"""
from services.api.ngsi.names import load_names
from services.api.subscriptions.matching import Matcher
from services.api.subscriptions.model import EntitySelector, Subscription
sub = Subscription(
    id="urn:ngsi-ld:Subscription:evil", owner="k1", audience="public",
    endpoint_uri="http://127.0.0.1:9/n", created_at="2026-01-01T00:00:00.000Z",
    entities=(EntitySelector("AirQualityObserved", id_pattern={EVIL!r}),),
)
print(Matcher.of(sub, load_names()).selects("AirQualityObserved", {LONG_ID!r}))
"""


def test_an_id_pattern_cannot_hang_the_delivery_engine() -> None:
    """Matching runs in the engine's thread for every record: a pattern that takes
    exponential time would stop every subscriber's notifications. Failed before
    (Python's re: never returned; the bound below is generous, a linear engine answers
    in milliseconds)."""
    assert id_pattern(EVIL)[0] == EVIL  # the routes accept it
    done = subprocess.run(
        [sys.executable, "-c", MATCH_ONCE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("pattern", [".*(a)\\1", ".*a(?=b)", ".*\\bx(?P<n>y)(?P=n)"])
def test_patterns_the_nodes_cannot_run_are_refused(pattern: str) -> None:
    with pytest.raises(NgsiError):
        id_pattern(pattern)


HUGE = 256 << 20  # what a hostile receiver announces and tries to send


def _huge_answer(server: socket.socket, written: list[int]) -> None:
    """Take one request, answer 200 with a HUGE body, count the bytes the node took."""
    conn, _ = server.accept()
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(rest) < length:
            rest += conn.recv(65536)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n".encode())
        chunk = b"x" * (1 << 20)
        total = 0
        try:
            while total < HUGE:
                conn.sendall(chunk)
                total += len(chunk)
        except OSError:  # the node hung up: what we want
            pass
        written.append(total)


def test_a_receiver_answering_a_huge_body_is_not_read() -> None:
    """The notifier only needs the status: reading a receiver's body would let it fill
    the node's memory (or trickle for ever). Failed before: all 256 MiB were read."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    written: list[int] = []
    thread = threading.Thread(target=_huge_answer, args=(server, written), daemon=True)
    thread.start()
    notifier = Notifier(pinned_check(TargetPolicy.parse("127.0.0.1")))
    try:
        outcome = notifier.send(f"http://127.0.0.1:{port}/n", {"id": "n1"}, {})
    finally:
        notifier.close()
    thread.join()
    server.close()
    assert outcome.ok
    assert written and written[0] < HUGE


def test_a_refused_host_name_does_not_tell_what_it_resolves_to() -> None:
    """A key holder may try any host name as a receiver: naming the address it resolved
    to would make the node an oracle of its private DNS (db.internal -> 10.1.2.3).
    The kind of address says what to do. Failed before: '127.0.0.1 is loopback'."""
    with pytest.raises(TargetRefused) as refused:
        asyncio.run(check_target("http://localhost:8/", TargetPolicy()))
    message = str(refused.value)
    assert "loopback" in message and "localhost" in message
    assert "127.0.0.1" not in message and "::1" not in message


def _trickle(server: socket.socket, stop: threading.Event) -> None:
    """Take one request, then answer one byte of a status line at a time, each well
    within the per-read timeout, until the node hangs up."""
    conn, _ = server.accept()
    with conn:
        conn.recv(65536)
        try:
            while not stop.wait(0.2):
                conn.sendall(b"H")
        except OSError:
            pass


def test_a_receiver_trickling_its_answer_cannot_hold_the_notifier() -> None:
    """Each read of httpx has its own timeout: a receiver sending a byte just before
    each ran out held the attempt (and one of the notifier's shared connections) for
    ever, so enough such receivers starved every other subscriber. An attempt now
    has a total time. Failed before: send never returned (bounded here at 60 s; the
    attempt's time is 1 s)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()
    threading.Thread(target=_trickle, args=(server, stop), daemon=True).start()
    notifier = Notifier(pinned_check(TargetPolicy.parse("127.0.0.1")), timeout_s=1.0)
    outcomes: list[object] = []
    sender = threading.Thread(
        target=lambda: outcomes.append(notifier.send(f"http://127.0.0.1:{port}/n", {}, {})),
        daemon=True,
    )
    sender.start()
    sender.join(60)
    stop.set()
    server.close()
    assert outcomes, "the attempt was still held by the receiver"
    notifier.close()
    assert not outcomes[0].ok and "in time" in outcomes[0].reason


def test_a_patch_turning_on_change_into_periodic_gets_a_periodic_delivery() -> None:
    """The engine kept a running on-change delivery whenever the audience was the
    same, so a PATCH adding timeInterval left it on change and the periodic
    notifications never came. Failed before (the delivery was kept)."""
    from services.api.subscriptions.engine import keeps_delivery
    from services.api.subscriptions.model import Subscription

    on_change = Subscription(
        "urn:ngsi-ld:Subscription:p", "k1", "public", "http://127.0.0.1:9/n", "2026-01-01"
    )
    periodic = replace(on_change, time_interval_s=60.0)
    assert keeps_delivery(on_change, replace(on_change, throttling_s=5.0))
    assert not keeps_delivery(on_change, periodic)
    assert not keeps_delivery(on_change, replace(on_change, audience="partner-a"))


@pytest.mark.parametrize("port", [22, 25, 110, 143, 389, 587, 636, 993])
def test_a_public_host_cannot_be_sent_to_on_the_ports_of_other_services(port: int) -> None:
    """A notification is an HTTP POST with a body the subscriber partly shapes: sent to
    port 25 of any public host it makes the node a relay talking to mail servers (and
    the failure reasons a scanner of those services). Web ports and unprivileged ones
    stay open. Failed before: every port was accepted."""
    address = ipaddress.ip_address("93.184.215.14")
    target = parse_target(f"http://93.184.215.14:{port}/n")
    with pytest.raises(TargetRefused, match="port"):
        check_addresses(target, [address], TargetPolicy())
    for fine in (80, 443, 8080, 8443):
        check_addresses(parse_target(f"http://93.184.215.14:{fine}/n"), [address], TargetPolicy())
    # An address the operator allowed stays allowed on any port (tests, a lab).
    allowed = TargetPolicy.parse("93.184.215.14")
    check_addresses(target, [address], allowed)


class _HeldReceiver:
    """A notifier whose one attempt is in flight until released."""

    def __init__(self) -> None:
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def send(self, uri: str, body: dict, headers: dict) -> Outcome:
        self.in_flight.set()
        self.release.wait(60)
        return Outcome(True, 204)


def test_a_deleted_subscriptions_last_attempt_saves_no_state() -> None:
    """A subscription deleted while an attempt is in flight (up to request_timeout_s)
    saved its state when the attempt returned: were the id (a client-chosen one) created
    again meanwhile, by this key or another, the new subscription would carry the old
    one's positions and failure reasons. Failed before: the state was saved after stop."""
    from services.api.ngsi.names import load_names
    from services.api.subscriptions.delivery import Delivery, DeliverySettings
    from services.api.subscriptions.entity_from_record import record_entity
    from services.api.subscriptions.feeds import Item
    from services.api.subscriptions.matching import Matcher
    from services.api.subscriptions.model import DeliveryState, Subscription

    sub = Subscription(
        "urn:ngsi-ld:Subscription:chosen", "k1", "public", "http://127.0.0.1:9/n", "2026-01-01"
    )
    record = {
        "city": "lyon", "domain": "environment", "metric": "no2", "unit": "µg/m3",
        "entity_pseudonym": "s1", "entity_type": "AirQualityObserved", "zone": "69381",
        "position": {"lat": 45.76, "lon": 4.83}, "start": 1_780_000_000_000_000,
        "step_seconds": 600, "times": [], "values": [1.0, 42.0], "quality": [],
        "source": "air", "dataset": "air-quality-observed", "lineage_id": "x",
    }  # fmt: skip
    saved: list[DeliveryState] = []
    receiver = _HeldReceiver()
    delivery = Delivery(
        sub,
        Matcher.of(sub, load_names()),
        DeliveryState(),
        lambda _id, state: saved.append(state),
        receiver,  # type: ignore[arg-type]
        "http://127.0.0.1:8010/context.jsonld",
        DeliverySettings(linger_s=0.0),
        lambda _d: None,
        lambda _s: True,
    ).start()
    feed = ("lyon", "public.observations.v1")
    item = Item(0, 7, record_entity(record, {}), 0)
    assert delivery.offer(feed, [item], {0: 8})
    assert receiver.in_flight.wait(60)
    before = len(saved)  # the batch's id and end, saved before the attempt
    stopping = threading.Thread(target=delivery.stop, daemon=True)
    stopping.start()
    while not delivery._stopped:  # the engine's remove() on DELETE
        time.sleep(0.01)
    receiver.release.set()
    delivery._thread.join(60)
    stopping.join(60)
    assert not delivery._thread.is_alive()
    assert len(saved) == before
