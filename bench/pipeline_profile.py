"""Sampling profiles of a whole node's services while bench/pipeline.py loads it.

py-spy samples each service's Python stacks from outside (no change to the
service, the GIL not taken: ``--nonblocking``) and writes collapsed stacks, one
file per service and load; :func:`summary` reads them back into the few functions
where a service spends its time, counted two ways: *self* (the sample's innermost
frame of our code or of a library call, i.e. where the CPU is) and *inclusive*
(any frame on the stack). py-spy samples only threads that are running (not
``--idle``), so a service's sample count is its CPU time: comparing counts across
services says which one the node's cores were busy with. Samples whose innermost
frame is still a wait are counted apart, so that shares are of working time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Innermost frames that mean "waiting for work", not working.
IDLE = (
    "poll (cimpl",
    "consume (cimpl",
    "select (selectors",
    "wait (threading",
    "_wait_for_tstate_lock",
    "sleep (",
    "accept (socket",
    "epoll",
    "_worker (concurrent",
    "run (uvicorn",
    "serve_forever",
    "_run_once (asyncio",
)


def py_spy() -> list[str]:
    """The py-spy command: on the PATH, else run as a uv tool (the uv the Makefile
    installs is ``~/.local/bin/uv``, without ``uvx`` beside it)."""
    found = shutil.which("py-spy")
    if found:
        return [found]
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    return [uv, "tool", "run", "py-spy"]


@dataclass
class Recording:
    """py-spy recording one service into ``output`` (collapsed stacks)."""

    service: str
    output: Path
    process: subprocess.Popen

    def stop(self) -> None:
        """Ask py-spy to write its file (SIGINT, as Ctrl-C), then wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def record(pids: dict[str, int], directory: Path, phase: str, rate: int = 50) -> list[Recording]:
    """Start one py-spy per Python service of ``pids``; stop them with ``stop``."""
    directory.mkdir(parents=True, exist_ok=True)
    recordings = []
    for service, pid in pids.items():
        if service in ("kafka broker", "schema registry"):
            continue
        output = directory / f"{phase}-{service}.txt"
        command = [*py_spy(), "record", "--pid", str(pid), "--rate", str(rate)]
        command += ["--format", "raw", "--nonblocking", "--subprocesses", "-o", str(output)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        recordings.append(Recording(service, output, process))
    return recordings


def _frames(stack: str) -> list[str]:
    """Frames of one collapsed stack, outermost first, without line numbers."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        file = where.split(":")[0].rstrip(")")
        out.append(f"{name} ({_short(file)})")
    return out


def _short(file: str) -> str:
    """A file as a reader finds it: from the package root, site-packages cut."""
    for marker in ("site-packages/", "/services/", "/lib/python3"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return ("services/" + tail) if marker == "/services/" else tail
    return file


# Where a working sample is charged: the innermost frame matching a rule decides.
CATEGORIES = (
    ("avro decode", ("decode (services/runtime/wire.py)",)),
    ("avro encode", ("encode (services/runtime/wire.py)",)),
    ("kafka produce", ("produce_bytes (", "GroupCommitProducer")),
    ("state changelog", ("ChangelogStore", "JSONEncoder")),
    ("chDB insert", ("insert_arrow (",)),
    (
        "stage transform",
        (
            "services/ingest/",
            "services/anonymise/",
            "services/normalise/",
            "services/energy/",
            "services/publish/",
            "services/privacy/",
        ),
    ),
    ("runtime loop", ("services/runtime/",)),
)


# Threads beside the pipeline, charged whatever their innermost frame.
THREADS = (
    ("SQL door (the bench's own polling)", "clickhouse_http/"),
    ("gRPC server threads", "grpc/_server.py"),
)


def category(frames: list[str]) -> str:
    """The category of one working sample (``frames`` outermost first)."""
    for name, mark in THREADS:
        if any(mark in frame for frame in frames):
            return name
    for frame in reversed(frames):
        for name, marks in CATEGORIES:
            if any(mark in frame for mark in marks):
                return name
    return "other"


@dataclass
class Profile:
    """Where one service spent its samples."""

    service: str
    samples: int
    idle: int
    self_time: Counter[str]
    inclusive: Counter[str]
    categories: Counter[str]

    @property
    def busy(self) -> int:
        return self.samples - self.idle


def read(path: Path, service: str) -> Profile:
    """A py-spy ``raw`` file (``stack count`` per line) as a :class:`Profile`."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    samples = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        if any(mark in stack.rsplit(";", 1)[-1] for mark in IDLE):
            idle += count
            continue
        frames = _frames(stack)
        self_time[frames[-1]] += count
        categories[category(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
    return Profile(service, samples, idle, self_time, inclusive, categories)


def summary(profile: Profile, top: int = 12) -> list[str]:
    """Lines: the service's busy share, then its top functions by self and by
    inclusive share of its busy samples."""
    busy = max(1, profile.busy)
    share = profile.busy / max(1, profile.samples)
    lines = [f"{profile.service}: {profile.samples:,} samples, busy {share:.0%}"]
    lines.append(
        "  by kind: "
        + ", ".join(f"{name} {n / busy:.0%}" for name, n in profile.categories.most_common())
    )
    lines.append("  self (innermost frame):")
    for frame, count in profile.self_time.most_common(top):
        lines.append(f"    {count / busy:6.1%}  {frame}")
    lines.append("  inclusive (on the stack):")
    ours = [
        (frame, count)
        for frame, count in profile.inclusive.most_common()
        if "services/" in frame and count < 0.95 * busy  # our code, below the main loop
    ]
    lines.extend(f"    {count / busy:6.1%}  {frame}" for frame, count in ours[:top])
    return lines
