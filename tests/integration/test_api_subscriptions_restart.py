"""A subscription the api answered 201 for survives a SIGKILL of the api process: the
restarted service reads it back from Kafka, with its definition and its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from services.api.keys import KeyStore, keys_path
from services.federation.certs import ensure_dev_certificates
from services.runtime.paths import REPO_ROOT
from testkit.ports import free_port

BOUND_S = 120.0  # generous: a loaded machine starts Python slowly
PATH = "/ngsi-ld/v1/subscriptions"


def start(state: Path, port: int, prefix: str, metrics: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "CITEPLUS_NODE_STATE_DIR": str(state),
        "CITEPLUS_NODE_ID": "testnode",
        "CITEPLUS_API_PORT": str(port),
        "CITEPLUS_API_SUBSCRIPTIONS_ALLOW_TARGETS": "127.0.0.1",
    }
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "services.cli", "service", "api"),
            *("--metrics-port", str(metrics), "--topic-prefix", prefix),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def until_answering(process: subprocess.Popen, url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the api exited"
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not answering within {BOUND_S} s")


def test_a_created_subscription_survives_sigkill(tmp_path: Path) -> None:
    ensure_dev_certificates(tmp_path / "federation" / "certs", ["testnode"])
    _, token = KeyStore(keys_path(tmp_path)).create("restart-test")
    headers = {"Authorization": f"Bearer {token}"}
    prefix, port, metrics = f"test.{uuid.uuid4().hex[:8]}.", free_port(), free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    document = {
        "type": "Subscription",
        "entities": [{"type": "WeatherObserved"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
    }
    process = start(tmp_path, port, prefix, metrics)
    try:
        until_answering(process, url, headers)
        created = httpx.post(url, json=document, headers=headers, timeout=60)
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        process.send_signal(signal.SIGKILL)  # right after the 201: no orderly shutdown
        process.wait(BOUND_S)
        process = start(tmp_path, port, prefix, metrics)
        until_answering(process, url, headers)
        back = httpx.get(f"http://127.0.0.1:{port}{location}", headers=headers, timeout=60)
        assert back.status_code == 200, back.text
        assert back.json()["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/n"
        assert [s["id"] for s in httpx.get(url, headers=headers, timeout=60).json()] == [
            location.rsplit("/", 1)[1]
        ]
        exposition = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=60).text
        assert "citeplus_api_subscriptions 1.0" in exposition
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(BOUND_S)
