"""Notifications of the common API: throughput and latency from the public topic.

The world is testkit/notify_world.py: lyon's federation server on this machine's
broker and the real ``api`` service reading through it; receivers are HTTP servers
on loopback in this process (one server, one path per subscription: "100 receivers"
are 100 endpoints). Records are written to the public topic as publish writes them.

- throughput to 1 receiver: --backlog records published, then the time until the
  receiver has all of them (notifications/s and entities/s);
- throughput to 100 receivers: 100 subscriptions of the same data, --backlog / 10
  records each delivered to all of them;
- latency at a steady --rate readings/s for --seconds: from the time each record was
  produced to the public topic to its arrival at the receiver, p50 and p99, and how
  many never arrived. Goal (issue 20): p99 <= 500 ms at 1,000 readings/s, 0 lost.

The load generator and the receivers share the machine with the api and the node:
figures are a floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx

from services.api.keys import KeyStore, keys_path
from services.runtime.config import load_node_config
from testkit.notify_world import AIR, SUBSCRIPTIONS, answering, notify_world, subscribe, until
from testkit.ports import free_port
from testkit.receiver import Receiver

GOAL_P99_MS = 500.0
GOAL_RATE = 1000.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def distinct(receiver: Receiver, path: str) -> int:
    return len({e["id"] for _, e in receiver.entities(path)})


def throughput(world, node, receiver, url, token, receivers: int, records: int, first: int):
    paths = [f"t{first}-{i}" for i in range(receivers)]
    made = [subscribe(url, token, receiver.url(path), (AIR,)) for path in paths]
    time.sleep(2.0)  # the feeds are attached
    started = time.perf_counter()
    world.publish(node, "air", first, records)
    until(
        lambda: all(distinct(receiver, p) >= records for p in paths),
        f"{records} records at {receivers} receivers",
        bound=600,
    )
    seconds = time.perf_counter() - started
    notifications = sum(len(receiver.at(p)) for p in paths)
    entities = sum(len(receiver.entities(p)) for p in paths)
    print(
        f"to {receivers:>3} receiver(s): {records:,} records each, {notifications:,} "
        f"notifications ({entities:,} entities) in {seconds:.1f} s = "
        f"{notifications / seconds:,.0f} notifications/s, {entities / seconds:,.0f} entities/s"
    )
    for sub_id in made:  # out of the way of the next run
        httpx.delete(f"{url}/{sub_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def latency(world, node, receiver, url, token, rate: float, seconds: float, first: int):
    path = "latency"
    subscribe(url, token, receiver.url(path), (AIR,))
    time.sleep(2.0)
    produced: dict[str, float] = {}

    def note(record: dict) -> None:
        produced[f"urn:ngsi-ld:{AIR}:lyon:{record['entity_pseudonym']}"] = time.time()

    count = int(rate * seconds)
    per_tick = max(1, int(rate / 20))  # 20 bursts a second
    writer = world.writer(node)
    start = time.perf_counter()
    sent = 0
    while sent < count:
        due = start + sent / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        n = min(per_tick, count - sent)
        world.publish(node, "air", first + sent, n, on_produce=note, writer=writer)
        sent += n
    achieved = sent / (time.perf_counter() - start)
    try:
        until(lambda: distinct(receiver, path) >= count, "every record", bound=120)
    except AssertionError:
        pass
    arrived: dict[str, float] = {}
    for got in receiver.at(path):
        for entity in got.body["data"]:
            arrived.setdefault(entity["id"], got.at)
    delays = [(arrived[k] - t) * 1000 for k, t in produced.items() if k in arrived]
    lost = len(produced) - len(delays)
    p50, p99 = percentile(delays, 0.50), percentile(delays, 0.99)
    print(
        f"latency at {achieved:,.0f} readings/s for {seconds:g} s: p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms ({p99 / GOAL_P99_MS:.2f} of the {GOAL_P99_MS:.0f} ms goal), "
        f"{lost} lost of {len(produced):,}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000, help="records for 1 receiver")
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="readings/s (latency)")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency run length")
    args = parser.parse_args(argv)
    node = load_node_config()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    root = Path(tempfile.mkdtemp(prefix="citeplus-bench-notify-"))
    world = notify_world(node, root)
    world.start_lyon()
    receiver = Receiver().start()
    (root / "api").mkdir(exist_ok=True)
    keys = KeyStore(keys_path(root / "api"))
    _, token = keys.create("bench", rate=10_000, burst=10_000, max_subscriptions=500)
    port = free_port()
    url = f"http://127.0.0.1:{port}{SUBSCRIPTIONS}"
    api = world.start_api(root / "api", port)
    try:
        answering(api, url, token)
        throughput(world, node, receiver, url, token, 1, args.backlog, 0)
        throughput(world, node, receiver, url, token, 100, args.backlog // 10, 10**6)
        latency(world, node, receiver, url, token, args.rate, args.seconds, 2 * 10**6)
    finally:
        api.kill()
        api.wait(60)
        receiver.stop()
        world.lyon.stop()
        threading.Event().wait(0.1)
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
