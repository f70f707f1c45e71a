"""Process and port helpers shared by the Kafka broker and the registry.

Servers are started in the background and outlive the command that started them,
so everything here works from a pid file and ``/proc`` rather than from a
``Popen`` object.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def parse_pid(text: str) -> int | None:
    """The pid in a pid file's text, or None when it is empty or garbled."""
    text = text.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


def read_pid(path: Path) -> int | None:
    """The pid stored in ``path``, or None when the file is missing or unreadable."""
    try:
        return parse_pid(path.read_text(encoding="ascii", errors="replace"))
    except (FileNotFoundError, NotADirectoryError):
        return None


def write_pid(path: Path, pid: int) -> None:
    """Write ``pid`` atomically, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(path)


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child, so it stops being a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie, dead but not yet reaped, counts as dead)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3, after the parenthesised command name, is the state letter.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def command_line(pid: int) -> list[str]:
    """The argv of ``pid`` from /proc, empty when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def runs_with(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and ``marker`` is exactly one of its arguments.

    A pid file can outlive its process and the pid be reused by an unrelated one;
    the marker (an argument naming our state directory, which only our server
    is given) tells the two apart, and tells two state directories apart.
    """
    return is_alive(pid) and marker in command_line(pid)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on, or holds, ``host:port``.

    A connect catches listeners; a bind (with SO_REUSEADDR, so the TIME_WAIT
    leftovers of a server we just stopped do not count) catches sockets that are
    bound but not listening, which would still make our server fail to start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.5,
    give_up: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass.

    ``give_up`` ends the wait early (say, the server process died), so a failed
    start is reported at once instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if give_up is not None and give_up():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def stop_process(pid: int, grace: float = 30.0) -> bool:
    """SIGTERM, wait up to ``grace`` seconds for a clean exit, then SIGKILL.

    Returns True when the process exited by itself, False when it had to be
    killed. Brokers flush and close their logs on SIGTERM, so the grace period
    is what keeps the next start from a slow log recovery.
    """
    if not is_alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not is_alive(pid), grace, interval=0.2):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_alive(pid), 10.0, interval=0.1)
    return False


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so two commands never start one server twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.1`` so the tail shown on failure is this run's."""
    if path.exists() and path.stat().st_size > 0:
        path.replace(path.with_name(path.name + ".1"))


def progress_to_stderr() -> None:
    """Make the infra loggers' INFO progress visible when nobody set up logging.

    Fetching jars or starting a JVM takes seconds to minutes; a library caller
    that configured no logging would otherwise see nothing until it ends. When
    the application (or pytest) has handlers of its own, they are left alone.
    """
    infra = logging.getLogger("services.infra")
    if logging.getLogger().handlers or infra.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("citeplus infra: %(message)s"))
    infra.addHandler(handler)
    infra.setLevel(logging.INFO)
