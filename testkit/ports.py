"""Free loopback ports for servers a test starts on its own."""

from __future__ import annotations

import socket

from services.infra.process import port_in_use


def free_port(pair: bool = False) -> int:
    """A free loopback port (and, with ``pair``, the next one free too: Kafka's controller)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65535 and not (pair and port_in_use(port + 1)):
            return port
    raise RuntimeError("no free port pair found")
